"""Every shared vector (tests/vectors/ plus $ENDCALL_EXTRA_VECTORS) through the Python codec."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from endcall import protocol

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"


def vector_dirs() -> list[Path]:
    dirs = [VECTOR_DIR]
    extra = os.environ.get("ENDCALL_EXTRA_VECTORS", "")
    dirs += [Path(p) for p in extra.split(":") if p]
    return dirs


def load_cases() -> list[Any]:
    cases = []
    for directory in vector_dirs():
        for path in sorted(directory.glob("*.json")):
            for case in json.loads(path.read_text(encoding="utf-8")):
                cases.append(pytest.param(case, id=f"{path.stem}:{case['name']}"))
    return cases


def raw_input(case: dict[str, Any]) -> bytes:
    if "input_b64" in case:
        return base64.b64decode(case["input_b64"])
    return str(case["input"]).encode("utf-8", "surrogatepass")


def decode(case: dict[str, Any], raw: str | bytes) -> Any:
    kind = case["kind"]
    if kind == "request":
        return protocol.parse_request(raw, origin=case["origin"]).to_dict()
    if kind == "ack":
        return protocol.parse_ack(raw).to_dict()
    if kind == "error":
        return protocol.parse_error(raw).to_dict()
    if kind == "report":
        return protocol.parse_report(raw).to_dict()
    if kind == "missing":
        return protocol.parse_missing(raw).to_dict()
    if kind == "supersede":
        incoming = protocol.parse_report(raw)
        return protocol.report_supersedes(incoming, protocol.parse_report(case["stored"]))
    raise AssertionError(f"unknown vector kind {kind!r}")


def encode(case: dict[str, Any], raw: str | bytes) -> str | bytes:
    kind = case["kind"]
    if kind == "request":
        return protocol.encode_request(protocol.parse_request(raw, origin=case["origin"]))
    if kind == "ack":
        return protocol.encode_ack(protocol.parse_ack(raw))
    if kind == "error":
        return protocol.encode_error(protocol.parse_error(raw))
    if kind == "missing":
        return protocol.encode_missing(protocol.parse_missing(raw))
    return protocol.encode_report(protocol.parse_report(raw))


def test_there_are_enough_vectors() -> None:
    assert len(load_cases()) >= 60


@pytest.mark.parametrize("case", load_cases())
def test_vector(case: dict[str, Any]) -> None:
    raw = raw_input(case)
    expect = case["expect"]
    if expect["ok"]:
        value = decode(case, raw)
        assert value == expect["value"]
        again = decode(case, encode(case, raw))
        assert again == expect["value"], "encode → parse must round-trip"
        # str input behaves like bytes input
        assert decode(case, raw.decode("utf-8")) == expect["value"]
    else:
        with pytest.raises(protocol.ProtocolError) as info:
            decode(case, raw)
        assert info.value.code == expect["code"], info.value.message
