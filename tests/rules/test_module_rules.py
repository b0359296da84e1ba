"""The module rules, held by walking the package's imports (ast, no import is executed).

1. `endcall.protocol` does no I/O: it (and whatever it imports) imports none of `IO_MODULES`
   and calls no `open()`.
2. The outbox and delivery modules (`DELIVERY`) import nothing of agents or rooms: no
   `livekit` package, none of the agent modules (`AGENT`).
3. The fallback server (`endcall.server`) never imports the agent modules, nor livekit-agents
   or the rtc SDK.
4. Nothing in the library (`py/endcall` outside `endcall.testing`) imports `endcall.testing`.

Imports are followed transitively, including imports inside functions (they run sooner or
later); imports under `if TYPE_CHECKING:` are not (they never run). Importing `a.b.c` also
imports the packages `a.b` and `a`. A failure names the offending import, its file and line,
and the chain of imports that leads to it.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "py" / "endcall"

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

#: the agent side: EndCall and its parts, and what only they use
AGENT = (
    "endcall.endcall",
    "endcall.agentends",
    "endcall.annotations",
    "endcall.attributes",
    "endcall.call",
    "endcall.channels",
    "endcall.checkpoints",
    "endcall.decisions",
    "endcall.drain",
    "endcall.ending",
    "endcall.endpath",
    "endcall.jobhooks",
    "endcall.journal",
    "endcall.lifecycle",
    "endcall.misuse",
    "endcall.presence",
    "endcall.signals",
    "endcall.silence",
    "endcall.timers",
    "endcall.tool",
    "endcall.transcript",
)

DELIVERY = (
    "endcall.outbox",
    "endcall.delivery",
    "endcall.webhook",
    "endcall.relay",
    "endcall.storage",
    "endcall.pipeline",
)


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
    where = f"{path.relative_to(PACKAGE.parents[1])}"
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
                # `from . import pipeline` imports a module; `from .x import Name` a name
                target = full if full in modules else stem
                found.append(Import(name, target, f"{where}:{node.lineno}"))
    return found


def import_graph() -> dict[str, list[Import]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def _with_parents(target: str) -> list[str]:
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _matches(target: str, names: tuple[str, ...]) -> str | None:
    for name in names:
        if target == name or target.startswith(name + "."):
            return name
    return None


def violations(
    graph: dict[str, list[Import]], start: str, forbidden: tuple[str, ...], *, subtree: bool = True
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


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    return import_graph()


def _check(found: list[str], rule: str) -> None:
    assert not found, f"module rule broken — {rule}:\n  " + "\n  ".join(found)


def test_protocol_does_no_io(graph: dict[str, list[Import]]) -> None:
    _check(violations(graph, "endcall.protocol", IO_MODULES), "endcall.protocol does no I/O")
    tree = ast.parse((PACKAGE / "protocol.py").read_text(encoding="utf-8"))
    opens = [
        f"py/endcall/protocol.py:{node.lineno} calls open()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
    ]
    _check(opens, "endcall.protocol does no I/O")


@pytest.mark.parametrize("module", DELIVERY)
def test_outbox_and_delivery_import_nothing_of_agents_or_rooms(
    graph: dict[str, list[Import]], module: str
) -> None:
    found = violations(graph, module, ("livekit", *AGENT))
    _check(found, f"{module} imports nothing of agents or rooms")


def test_the_server_never_imports_the_agent(graph: dict[str, list[Import]]) -> None:
    found = violations(graph, "endcall.server", ("livekit.agents", "livekit.rtc", *AGENT))
    _check(found, "endcall.server never imports the agent modules")


def test_the_library_never_imports_endcall_testing(graph: dict[str, list[Import]]) -> None:
    found = [
        message
        for module in graph
        if not module.startswith("endcall.testing")
        for message in violations(graph, module, ("endcall.testing",), subtree=False)
    ]
    _check(sorted(set(found)), "nothing in the library imports endcall.testing")


def test_every_agent_module_exists(graph: dict[str, list[Import]]) -> None:
    missing = [m for m in (*AGENT, *DELIVERY) if m not in graph]
    assert not missing, f"the rules name modules that do not exist: {missing}"


def test_a_broken_rule_names_the_offending_import() -> None:
    fake = {
        "endcall.server.app": [Import("endcall.server.app", "endcall.relay", "app.py:3")],
        "endcall.relay": [Import("endcall.relay", "endcall.endcall", "relay.py:9")],
        "endcall.endcall": [],
    }
    found = violations(fake, "endcall.server", AGENT)
    assert found == [
        "endcall.relay imports endcall.endcall (relay.py:9; forbidden: endcall.endcall; via "
        "endcall.server.app -> endcall.relay -> endcall.endcall)"
    ]


def test_the_stream_doubles_do_not_import_the_loopback_back() -> None:
    """`testing/_streams.py` is imported by `testing/loopback.py`; importing back (even for
    types only) would make a circle."""
    path = PACKAGE / "testing" / "_streams.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    back = [
        f"py/endcall/testing/_streams.py:{node.lineno} imports {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("loopback")
    ]
    _check(back, "endcall.testing._streams does not import endcall.testing.loopback")
