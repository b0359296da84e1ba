"""No npm engine warnings on Node 20: every package `npm ci` installs (web/, node/ and the
example pages and agents, Vite and Next.js) accepts Node 20.19, the oldest Node the example
page's Vite supports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = [
    ROOT / "web" / "package-lock.json",
    ROOT / "examples" / "web" / "package-lock.json",
    ROOT / "examples" / "nextjs" / "package-lock.json",
    ROOT / "node" / "package-lock.json",
    ROOT / "examples" / "node" / "package-lock.json",
]
NODE = (20, 19, 0)

_CMP = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?")


def _version(parts: tuple[str | None, ...]) -> tuple[tuple[int, ...], int]:
    """The version and how many of its parts were given (`x`/`*` ends it)."""
    nums: list[int] = []
    for p in parts:
        if p is None or not p.isdigit():
            break
        nums.append(int(p))
    return tuple(nums + [0] * (3 - len(nums))), len(nums)


def _satisfies(version: tuple[int, int, int], comparator: str) -> bool:
    m = _CMP.match(comparator.strip())
    assert m is not None, f"cannot read the engine range {comparator!r}"
    op = m.group(1) or "="
    bound, given = _version(m.groups()[1:])
    if op == ">=":
        return version >= bound
    if op == ">":
        return version > bound
    if op == "<=":
        return version <= bound
    if op == "<":
        return version < bound
    if op == "^":
        first = next((i for i, n in enumerate(bound) if n), min(given, 2))
        upper = list(bound[: first + 1])
        upper[-1] += 1
        return bound <= version < tuple(upper + [0] * (3 - len(upper)))
    if op == "~":
        keep = max(1, min(given, 2))
        upper = list(bound[:keep])
        upper[-1] += 1
        return bound <= version < tuple(upper + [0] * (3 - len(upper)))
    return version[:given] == bound[:given]


def accepts(range_text: str, version: tuple[int, int, int]) -> bool:
    """Whether an npm `engines.node` range accepts `version` (the forms npm packages use)."""
    for alternative in range_text.split("||"):
        alternative = re.sub(r"^\s*(\S+)\s+-\s+(\S+)\s*$", r">=\1 <=\2", alternative)
        comparators = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", alternative).split()
        if not comparators or comparators == ["*"]:
            return True
        if all(_satisfies(version, c) for c in comparators):
            return True
    return False


def test_the_range_reader() -> None:
    assert accepts(">=18", NODE) and accepts("^18.0.0 || ^20.0.0 || >=22.0.0", NODE)
    assert accepts("^20.19.0 || >=22.12.0", NODE) and accepts(">=v12.22.7", NODE)
    assert not accepts(">=22.22", NODE) and not accepts("^22.20 || ^24.12 || >=25", NODE)
    assert not accepts("^20.20.0", NODE) and accepts("~20.19", NODE) and accepts("*", NODE)
    assert accepts(">= 10", NODE) and accepts("18 - 21", NODE) and not accepts("< 20", NODE)


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_installed_package_wants_a_newer_node(lock: Path) -> None:
    packages = json.loads(lock.read_text())["packages"]
    wanting = {
        name: info["engines"]["node"]
        for name, info in packages.items()
        if name  # the root package itself
        and not info.get("optional")  # npm skips optional packages it cannot use, silently
        and isinstance(info.get("engines"), dict)
        and "node" in info["engines"]
        and not accepts(info["engines"]["node"], NODE)
    }
    assert wanting == {}, f"these packages warn (EBADENGINE) on Node 20.19: {wanting}"
