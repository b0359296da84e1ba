"""The package's public names: each one in `endcall.__all__` resolves, lazily, to the object
its module defines."""

from __future__ import annotations

import importlib

import pytest

import endcall
from endcall import _EXPORTS


@pytest.mark.parametrize("name", sorted(endcall.__all__))
def test_every_public_name_resolves_to_its_module(name: str) -> None:
    module = importlib.import_module(f"endcall.{_EXPORTS[name]}")
    assert getattr(endcall, name) is getattr(module, name)


def test_all_and_the_lazy_table_agree() -> None:
    assert sorted(endcall.__all__) == sorted(_EXPORTS)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        endcall.Nope  # noqa: B018


def test_initiator_is_public_for_end_calls() -> None:
    who = endcall.Initiator("server", "scheduler")
    assert who.to_dict() == {"kind": "server", "identity": "scheduler"}
