"""docs/architecture.md stays true: every module it names exists, and every module of a wing is
named in that wing's paragraph."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from endcall import protocol

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "py" / "endcall"
WINGS = ("protocol", "agent", "reports", "server")
#: backticked words in a wing's paragraph that are not modules
NOT_MODULES = {"prewarm"}


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _paragraph(wing: str) -> str:
    match = re.search(rf"\*\*`endcall\.{wing}`:.*?(?=\n\n)", _text(), re.S)
    assert match, f"docs/architecture.md has no paragraph for endcall.{wing}"
    return match.group(0)


def _modules(wing: str) -> dict[str, Path]:
    """Module and package names of a wing (bare, e.g. `writes`, `outbox`) → their file."""
    found = {p.stem: p for p in (PACKAGE / wing).rglob("*.py") if p.stem != "__init__"}
    found.update({p.parent.name: p for p in (PACKAGE / wing).rglob("*/__init__.py")})
    return found


def _exists(dotted: str) -> bool:
    """`endcall.a.b` is a module or package, or an attribute of one (`endcall.outbox`)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj: object = importlib.import_module(module)
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_dotted_module_named_exists() -> None:
    named = set(re.findall(r"`(endcall(?:\.[a-z_]+)+)`", _text()))
    assert named, "docs/architecture.md names no module"
    missing = sorted(n for n in named if not _exists(n))
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_file_path_named_exists() -> None:
    paths = re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)`", _text())
    wings_paths = [p for p in paths if (PACKAGE / "reports" / p).exists() or (ROOT / p).exists()]
    assert paths and wings_paths == paths, f"missing: {sorted(set(paths) - set(wings_paths))}"


@pytest.mark.parametrize("wing", WINGS)
def test_each_wing_paragraph_names_only_its_own_modules(wing: str) -> None:
    words = set(re.findall(r"`([a-z_]+)`", _paragraph(wing))) - NOT_MODULES
    unknown = sorted(words - set(_modules(wing)))
    assert not unknown, f"the endcall.{wing} paragraph names modules it does not have: {unknown}"


@pytest.mark.parametrize("wing", WINGS)
def test_each_module_of_a_wing_is_named_in_its_paragraph(wing: str) -> None:
    text = _paragraph(wing)
    unnamed = sorted(
        name
        for name, path in _modules(wing).items()
        if f"`{name}`" not in text and f"`{path.relative_to(PACKAGE / wing)}`" not in text
    )
    assert not unnamed, f"docs/architecture.md does not say what these are: {unnamed}"


def test_the_diagram_matches_the_rules() -> None:
    """Each arrow of the mermaid diagram is an import the rules test allows."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "rules"))
    try:
        from test_module_rules import ALLOWED
    finally:
        sys.path.pop(0)
    arrows = re.findall(r"^\s+(\w+) --> (\w+)$", _text(), re.M)
    assert arrows
    for source, target in arrows:
        allowed = ALLOWED[f"endcall.{source}"]
        assert f"endcall.{target}" in allowed, f"the diagram's {source} --> {target} is not allowed"


#: `endcall.*` names in the docs that are not Python: the agent attributes and the ping event on
#: the wire, the `proc.userdata` key and logger names
WIRE_NAMES = {
    *(value for name, value in vars(protocol).items() if name.startswith("ATTR_")),
    protocol.PING_TYPE,
    "endcall.relay",
    "endcall.delivery",
    "endcall.reconcile",
}


def test_every_python_name_the_readme_and_docs_give_imports() -> None:
    """Each `endcall.…` a reader may copy from README.md or docs/ resolves."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "protocol.md"]
    named = {
        (path.name, name)
        for path in texts
        for name in re.findall(r"`{1,2}(endcall(?:\.[A-Za-z_]+)+)", path.read_text("utf-8"))
        if name not in WIRE_NAMES
    }
    assert named
    missing = sorted(f"{doc}: {name}" for doc, name in named if not _exists(name))
    assert not missing, "names in the docs that do not import:\n  " + "\n  ".join(missing)


def test_the_readme_python_imports_run() -> None:
    """Every `import endcall…` / `from endcall… import …` line of README.md's examples."""
    lines = re.findall(
        r"^\s*((?:from endcall[\w.]* import [\w, ]+)|(?:import endcall[\w.]*))\s*$",
        (ROOT / "README.md").read_text("utf-8"),
        re.M,
    )
    assert lines
    for line in lines:
        exec(line, {})


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_every_example_imports(path: Path) -> None:
    """The examples name the kit's modules as users will: each one still imports."""
    import importlib.util
    import sys

    name = f"example_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
