"""Every environment variable the kit's code (the package, the examples, the npm packages — the
browser's and the Node agent's — and the example page's scripts) reads is in the README's
Configuration table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *sorted((ROOT / "py" / "endcall").rglob("*.py")),
    *sorted((ROOT / "examples").glob("*.py")),
    *sorted((ROOT / "web" / "src").rglob("*.ts")),
    *sorted((ROOT / "web" / "scripts").glob("*.mjs")),
    *sorted((ROOT / "examples" / "web" / "src").rglob("*.ts*")),
    *sorted((ROOT / "examples" / "web" / "scripts").glob("*.mjs")),
    *sorted((ROOT / "examples" / "nextjs" / "app").rglob("*.ts*")),
    *sorted((ROOT / "examples" / "nextjs" / "scripts").glob("*.mjs")),
    *sorted((ROOT / "node" / "src").rglob("*.ts")),
    *sorted((ROOT / "examples" / "node").glob("*.ts")),
]
NAME = r"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"
READS = [
    re.compile(r"(?:environ|getenv|\benv)\s*(?:\.get\s*)?[\[(]\s*[\"']" + NAME + r"[\"']"),
    re.compile(r"envvar\s*=\s*[\"']" + NAME + r"[\"']"),
    re.compile(r"[\"']" + NAME + r"[\"']\s+in\s+(?:os\.environ|env)\b"),
    re.compile(r"_ENV\s*=\s*[\"']" + NAME + r"[\"']"),
    re.compile(r"(?:process|import\.meta)\.env\.(\w+)"),
]
#: the kit's own prefixes, wherever they are spelled (e.g. a table of variables to read),
#: unless the file defines a constant of that name (a name in `__all__`)
PREFIXED = re.compile(r"[\"']((?:ENDCALL|LIVEKIT)_[A-Z0-9_]+)[\"']")


def variables_read() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in SOURCES:
        text = path.read_text()
        names = [name for pattern in READS for name in pattern.findall(text)]
        names += [
            name
            for name in PREFIXED.findall(text)
            if not re.search(rf"^{name}\s*(?::[^=\n]*)?=", text, re.M)
        ]
        for name in names:
            found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    table = table[: table.index("\n## ", 1)]
    return {
        name
        for line in table.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`" + NAME + r"`", line.split("|")[1])
    }


def test_the_scan_finds_what_it_should() -> None:
    read = variables_read()
    assert {"ENDCALL_OUTBOX", "LIVEKIT_URL", "ENDCALL_RELAY_POLL", "CHROMIUM_PATH"} <= read.keys()
    # the Next.js example's route handlers (LIVEKIT_*, ENDCALL_URL, AGENT_NAME) are read too
    assert ROOT / "examples" / "nextjs" / "app" / "api" / "token" / "route.ts" in SOURCES


def test_every_variable_read_is_in_the_readme_table() -> None:
    missing = {name: where for name, where in variables_read().items() if name not in documented()}
    assert missing == {}, f"read by the code but not in README's Configuration table: {missing}"
