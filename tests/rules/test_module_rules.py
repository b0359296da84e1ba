"""The wings and their rules, held by walking the package's imports (ast; nothing is executed).

The package is four wings (docs/architecture.md): `endcall.protocol` (pure) ← `endcall.agent`
→ `endcall.reports` ← `endcall.server`, plus `endcall.cli` and `endcall.testing`.

1. Each wing imports only the wings it may (`ALLOWED`): protocol nothing of the kit; reports
   protocol; agent protocol and reports; server protocol and reports, never agent.
2. `endcall.protocol` does no I/O: it (and whatever it imports) imports none of `IO_MODULES`
   and calls no `open()`.
3. The reports wing imports nothing of LiveKit (no `livekit` package at all); the server wing
   nothing of livekit-agents or the rtc SDK (it talks to LiveKit through `livekit.api`).
4. Nothing in the library (outside `endcall.testing`) imports `endcall.testing`.
5. No import circles anywhere in the package.
6. Sizes that fit in a head: no class over `MAX_CLASS_LINES`, no module over
   `MAX_MODULE_LINES` (in the package, bench/, examples/ and tests/; `SIZE_EXEMPT` lists the
   data files).

Imports are followed including those inside functions (they run sooner or later); imports
under `if TYPE_CHECKING:` are not (they never run). Importing `a.b.c` also imports the packages
`a.b` and `a`. A failure names the offending import, its file and line, and how it is reached.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "py" / "endcall"

#: the kit's wings, and what else of the kit each one may import
ALLOWED: dict[str, tuple[str, ...]] = {
    "endcall.protocol": (),
    "endcall.reports": ("endcall.protocol",),
    "endcall.agent": ("endcall.protocol", "endcall.reports"),
    "endcall.server": ("endcall.protocol", "endcall.reports"),
    # the agent wing only for `outbox deliver --ask-livekit` (the agent's LiveKit "gone" check)
    "endcall.cli": ("endcall.protocol", "endcall.reports", "endcall.agent", "endcall.server"),
    "endcall.__main__": ("endcall.cli",),
    # the public name `endcall.outbox` (re-exports `endcall.reports.outbox`)
    "endcall.outbox": ("endcall.reports",),
    # the package itself: the log filter; its public names load lazily (importlib)
    "endcall": ("endcall.reports",),
    "endcall.testing": ("endcall.protocol", "endcall.reports", "endcall.agent", "endcall.server"),
}

#: what a wing may not import from outside the kit
FORBIDDEN_OUTSIDE: dict[str, tuple[str, ...]] = {
    "endcall.reports": ("livekit",),
    "endcall.server": ("livekit.agents", "livekit.rtc"),
}

IO_MODULES = (
    "asyncio",
    "socket",
    "ssl",
    "select",
    "selectors",
    "subprocess",
    "threading",
    "multiprocessing",
    "os",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "glob",
    "fcntl",
    "mmap",
    "sqlite3",
    "http",
    "urllib.request",
    "httpx",
    "httpcore",
    "psycopg",
    "psycopg_pool",
    "aiohttp",
    "requests",
    "starlette",
    "uvicorn",
    "platformdirs",
    "livekit",
)

MAX_CLASS_LINES = 400
MAX_MODULE_LINES = 800
#: data, not code: the shared vectors' source tables
SIZE_EXEMPT = ("tests/vectors/build_vectors.py",)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module, absolute
    where: str  # file:line


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        skipped.add(inner.lineno)
    return skipped


def imports_of(path: Path, modules: set[str]) -> list[Import]:
    """Every import in `path` (but `if TYPE_CHECKING:`), resolved to absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = _type_checking_lines(tree)
    where = f"{path.relative_to(ROOT)}"
    found: list[Import] = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(name, alias.name, f"{where}:{node.lineno}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            for alias in node.names:
                full = f"{stem}.{alias.name}"
                # `from endcall.reports import pipeline` imports a module; `from .x import Name`
                # a name
                target = full if full in modules else stem
                found.append(Import(name, target, f"{where}:{node.lineno}"))
    return found


Graph = Mapping[str, list[Import]]


def import_graph() -> dict[str, list[Import]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def _with_parents(target: str) -> list[str]:
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _matches(target: str, names: Iterable[str]) -> str | None:
    for name in names:
        if target == name or target.startswith(name + "."):
            return name
    return None


def wing_of(module: str) -> str | None:
    """The wing `module` belongs to: the longest `ALLOWED` key that is it or contains it (the
    package `endcall` itself contains nothing)."""
    best = None
    for wing in ALLOWED:
        inside = module == wing or (wing != "endcall" and module.startswith(wing + "."))
        if inside and (best is None or len(wing) > len(best)):
            best = wing
    return best


def wing_violations(graph: Graph) -> list[str]:
    """Direct imports of the kit that cross into a wing the importer may not use."""
    found: list[str] = []
    for module, imports in graph.items():
        wing = wing_of(module)
        if wing is None:
            found.append(f"{module} belongs to no wing: put it in one (docs/architecture.md)")
            continue
        for imp in imports:
            if not (imp.target == "endcall" or imp.target.startswith("endcall.")):
                continue
            target_wing = wing_of(imp.target)
            if target_wing == wing or target_wing in ALLOWED[wing]:
                continue
            allowed = ", ".join(ALLOWED[wing]) or "nothing else of the kit"
            found.append(
                f"{module} imports {imp.target} ({imp.where}): the {wing} wing may import {allowed}"
            )
    return found


def violations(
    graph: Graph, start: str, forbidden: tuple[str, ...], *, subtree: bool = True
) -> list[str]:
    """The imports reachable from `start` (a module; with `subtree`, a package's modules too)
    that are `forbidden` (or inside a forbidden package), each with the chain to it."""
    roots = [m for m in graph if m == start or (subtree and m.startswith(start + "."))]
    came_from: dict[str, Import | None] = {m: None for m in roots}
    queue = deque(roots)
    found: list[str] = []
    while queue:
        module = queue.popleft()
        for imp in graph.get(module, []):
            for target in _with_parents(imp.target):
                rule = _matches(target, forbidden)
                if rule is not None and target == imp.target:
                    found.append(_describe(imp, came_from, rule))
                if target in graph and target not in came_from:
                    came_from[target] = imp
                    queue.append(target)
    return found


def _describe(imp: Import, came_from: dict[str, Import | None], rule: str) -> str:
    chain = [imp]
    step = came_from.get(imp.source)
    while step is not None:
        chain.append(step)
        step = came_from.get(step.source)
    path = " -> ".join([chain[-1].source, *(i.target for i in reversed(chain))])
    return f"{imp.source} imports {imp.target} ({imp.where}; forbidden: {rule}; via {path})"


def circles(graph: Graph) -> list[str]:
    """Every import circle between the package's modules, each as `a -> b -> a` with the
    file:line of each arrow (explicit imports only; a package's `__init__` importing its own
    modules is not a circle when they don't import it back)."""
    edges: dict[str, dict[str, str]] = {}
    for module, imports in graph.items():
        for imp in imports:
            if imp.target in graph and imp.target != module:
                edges.setdefault(module, {}).setdefault(imp.target, imp.where)
    found: list[str] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                loop = [*stack[stack.index(nxt) :], nxt]
                key = frozenset(loop)
                if key not in seen:
                    seen.add(key)
                    arrows = [f"{a} -> {b} ({edges[a][b]})" for a, b in itertools.pairwise(loop)]
                    found.append("; ".join(arrows))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def oversized(paths: Iterable[Path]) -> list[str]:
    """Modules over `MAX_MODULE_LINES` and classes over `MAX_CLASS_LINES`."""
    found: list[str] = []
    for path in paths:
        rel = str(path.relative_to(ROOT))
        if rel in SIZE_EXEMPT:
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            found.append(f"{rel}: {lines} lines (at most {MAX_MODULE_LINES}): split it by concern")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    found.append(
                        f"{rel}:{node.lineno} class {node.name}: {size} lines "
                        f"(at most {MAX_CLASS_LINES}): it is several classes"
                    )
    return found


def _python_files() -> list[Path]:
    roots = [PACKAGE, ROOT / "bench", ROOT / "examples", ROOT / "tests", ROOT / "scripts"]
    return sorted(
        p for r in roots if r.exists() for p in r.rglob("*.py") if "node_modules" not in p.parts
    )


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    return import_graph()


def _check(found: list[str], rule: str) -> None:
    assert not found, f"module rule broken — {rule}:\n  " + "\n  ".join(found)


def test_each_wing_imports_only_the_wings_it_may(graph: Graph) -> None:
    _check(wing_violations(graph), "each wing imports only the wings it may")


def test_protocol_does_no_io(graph: Graph) -> None:
    _check(violations(graph, "endcall.protocol", IO_MODULES), "endcall.protocol does no I/O")
    opens = [
        f"{path.relative_to(ROOT)}:{node.lineno} calls open()"
        for path in sorted((PACKAGE / "protocol").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
    ]
    _check(opens, "endcall.protocol does no I/O")


@pytest.mark.parametrize("wing", sorted(FORBIDDEN_OUTSIDE))
def test_wings_keep_away_from_livekit(graph: Graph, wing: str) -> None:
    _check(violations(graph, wing, FORBIDDEN_OUTSIDE[wing]), f"{wing} and LiveKit")


def test_the_library_never_imports_endcall_testing(graph: Graph) -> None:
    found = [
        message
        for module in graph
        if not module.startswith("endcall.testing")
        for message in violations(graph, module, ("endcall.testing",), subtree=False)
    ]
    _check(sorted(set(found)), "nothing in the library imports endcall.testing")


def test_no_import_circles(graph: Graph) -> None:
    _check(circles(graph), "no import circles")


def test_sizes_fit_in_a_head() -> None:
    _check(oversized(_python_files()), "sizes that fit in a head")


def test_every_wing_exists(graph: Graph) -> None:
    missing = [wing for wing in ALLOWED if wing not in graph]
    assert not missing, f"the rules name wings that do not exist: {missing}"


# --------------------------------------------------------------------------- self-tests


def _fake(*arrows: tuple[str, str]) -> dict[str, list[Import]]:
    graph: dict[str, list[Import]] = {}
    for source, target in arrows:
        graph.setdefault(source, []).append(Import(source, target, f"{source}.py:1"))
        graph.setdefault(target, [])
    return graph


def test_a_planted_wing_violation_is_named() -> None:
    fake = _fake(
        ("endcall.server.app", "endcall.reports.relay"),
        ("endcall.server.app", "endcall.agent.end_call"),
    )
    assert wing_violations(fake) == [
        "endcall.server.app imports endcall.agent.end_call (endcall.server.app.py:1): the "
        "endcall.server wing may import endcall.protocol, endcall.reports"
    ]


def test_a_module_outside_every_wing_is_named() -> None:
    assert wing_violations(_fake(("endcall.stray", "endcall.protocol"))) == [
        "endcall.stray belongs to no wing: put it in one (docs/architecture.md)"
    ]


def test_the_protocol_may_import_nothing_of_the_kit() -> None:
    found = wing_violations(_fake(("endcall.protocol.codec", "endcall.reports.redact")))
    assert found == [
        "endcall.protocol.codec imports endcall.reports.redact (endcall.protocol.codec.py:1): "
        "the endcall.protocol wing may import nothing else of the kit"
    ]


def test_a_forbidden_import_is_named_with_its_chain() -> None:
    fake = _fake(
        ("endcall.server.app", "endcall.reports.relay"),
        ("endcall.reports.relay", "livekit.rtc"),
    )
    found = violations(fake, "endcall.server", ("livekit.rtc",))
    assert found == [
        "endcall.reports.relay imports livekit.rtc (endcall.reports.relay.py:1; forbidden: "
        "livekit.rtc; via endcall.server.app -> endcall.reports.relay -> livekit.rtc)"
    ]


def test_a_planted_circle_is_found() -> None:
    fake = _fake(
        ("endcall.reports.pipeline", "endcall.reports.relay"),
        ("endcall.reports.relay", "endcall.reports.pipeline"),
        ("endcall.reports.relay", "endcall.reports.webhook"),
    )
    assert circles(fake) == [
        "endcall.reports.pipeline -> endcall.reports.relay (endcall.reports.pipeline.py:1); "
        "endcall.reports.relay -> endcall.reports.pipeline (endcall.reports.relay.py:1)"
    ]
    assert circles(_fake(("a", "b"), ("b", "c"))) == []


def test_a_planted_oversized_class_and_module_are_found() -> None:
    big = ROOT / "tests" / "rules" / "_planted_big.py"
    body = "class Huge:\n" + "    x = 1\n" * MAX_CLASS_LINES + "\n" * (MAX_MODULE_LINES - 400)
    big.write_text(body, encoding="utf-8")
    try:
        found = oversized([big])
    finally:
        big.unlink()
    assert found == [
        f"tests/rules/_planted_big.py: {MAX_MODULE_LINES + 1} lines (at most "
        f"{MAX_MODULE_LINES}): split it by concern",
        f"tests/rules/_planted_big.py:1 class Huge: {MAX_CLASS_LINES + 1} lines "
        f"(at most {MAX_CLASS_LINES}): it is several classes",
    ]


def test_the_stream_doubles_do_not_import_the_loopback_back() -> None:
    """`testing/_streams.py` is imported by the loopback's modules (`loopback`, `_loopback_*`);
    importing any of them back (even for types only) would make a circle."""
    path = PACKAGE / "testing" / "_streams.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    back = [
        f"py/endcall/testing/_streams.py:{node.lineno} imports {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and ("loopback" in (node.module or "") or any("loopback" in a.name for a in node.names))
    ]
    _check(back, "endcall.testing._streams does not import endcall.testing.loopback")
