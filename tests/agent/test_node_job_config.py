"""Cross-language `job_config`: the Node port (`endcall-agent`'s `jobConfig`) reads the metadata
Python's `endcall.dispatch_metadata` makes with the same outcome as Python's `job_config`, and
refuses the same hostile inputs. One table of cases runs through both; they must agree on the
destination (URL, the secrets' key ids, the retry schedule), the annotations source and
report_meta, whether a claim verified, and how many refusals — or both fail the job.

Builds node/src into node/dist (`tsc -p tsconfig.build.json`) and runs
node/test/fixtures/job_config_cases.mjs over the table."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from endcall import JobConfigError, dispatch_metadata, job_config
from endcall.agent.job_config import CLAIM_AUDIENCE, CLAIM_KEY
from endcall.reports.webhook import key_id

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "node"
FIXTURE = NODE / "test" / "fixtures" / "job_config_cases.mjs"

DEFAULT_URL = "https://backend.example/session/end"
DEFAULT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ACME = ("whsec_" + "A" * 32, "whsec_" + "B" * 32)
GLOBEX = "whsec_" + "C" * 32
LEAKED = "whsec_" + "D" * 32
KEY = "k" * 40
ACME_URL = "https://acme.example/hooks/endcall"
ATTACKER = "https://attacker.example/collect"

ENV = {
    "ENDCALL_WEBHOOK_URL": DEFAULT_URL,
    "ENDCALL_WEBHOOK_SECRET": DEFAULT_SECRET,
    "ENDCALL_WEBHOOK_SECRETS": f"acme={ACME[0]}, acme={ACME[1]} globex={GLOBEX}",
    "ENDCALL_DISPATCH_KEY": KEY,
    "ENDCALL_WEBHOOK_URL_ALLOW": (
        "https://acme.example/hooks/, globex.example *.eu.example [::1]:8443"
    ),
}


def meta(**fields: Any) -> str:
    return json.dumps(fields)


def claim(key: str = KEY, **fields: Any) -> str:
    body: dict[str, Any] = {"aud": CLAIM_AUDIENCE, "exp": int(time.time()) + 600}
    body.update(fields)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="HS256")


def signed(**fields: Any) -> str:
    return dispatch_metadata(key=KEY, **fields)


def tampered() -> str:
    token = json.loads(signed(webhook_url=ACME_URL))[CLAIM_KEY]
    header, _payload, signature = token.split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps({"aud": CLAIM_AUDIENCE, "exp": 2**31, "webhook_url": ATTACKER}).encode()
    ).decode()
    return meta(**{CLAIM_KEY: f"{header}.{forged}.{signature}"})


def unsecured() -> str:
    def b64(value: object) -> str:
        return jwt.utils.base64url_encode(json.dumps(value).encode()).decode()

    body = {"aud": CLAIM_AUDIENCE, "exp": int(time.time()) + 600, "webhook_url": ATTACKER}
    return meta(**{CLAIM_KEY: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(body)}."})


def claim_over_plain() -> str:
    doc = json.loads(signed(webhook_url=ACME_URL, report_meta={"company_id": "c-7"}))
    doc.update(webhook_url=ATTACKER, webhook_schedule=[0], report_meta={"company_id": "x", "n": 1})
    return json.dumps(doc)


def merge_overflow() -> str:
    doc = json.loads(signed(report_meta={"company_id": "c-7", "pad": "y" * 3000}))
    doc["report_meta"] = {"note": "x" * 2000}
    return json.dumps(doc)


def case(name: str, metadata: str | None, **options: Any) -> dict[str, Any]:
    return {"name": name, "metadata": metadata, **options}


def url_case(url: str, **options: Any) -> dict[str, Any]:
    return case(f"url {url}", meta(webhook_url=url, webhook_secret_id="globex"), **options)


def cases() -> list[dict[str, Any]]:
    room = {"room": "interview-1"}
    return [
        # ---------------------------------------------------------------- plain metadata
        case("none", None),
        case("empty", ""),
        case("other fields only", meta(scenario={"a": 1})),
        case("secret id", meta(webhook_secret_id="acme")),
        case("unknown secret id", meta(webhook_secret_id="initech")),
        case("inherited secret id constructor", meta(webhook_secret_id="constructor")),
        case("inherited secret id toString", meta(webhook_secret_id="toString")),
        case("secret id __proto__", meta(webhook_secret_id="__proto__")),
        case("secret id not an id", meta(webhook_secret_id="../acme")),
        case("secret id a number", meta(webhook_secret_id=7)),
        case("leaked secret", meta(webhook_secret=LEAKED)),
        case(
            "leaked secret beside an allowed URL", meta(webhook_url=ACME_URL, webhook_secret=LEAKED)
        ),
        case("attacker URL", meta(webhook_url=ATTACKER, webhook_secret_id="acme")),
        case("allowed URL", meta(webhook_url=ACME_URL, webhook_secret_id="acme")),
        case("allowed URL, unknown id", meta(webhook_url=ACME_URL, webhook_secret_id="initech")),
        case("allowed URL, default secret", meta(webhook_url="https://globex.example/h")),
        case("the default URL", meta(webhook_url=DEFAULT_URL, webhook_secret_id="acme")),
        case(
            "allowUrls option",
            meta(webhook_url="http://127.0.0.1:8080/h"),
            allow_urls=["http://127.0.0.1:8080/h"],
        ),
        case("unsigned schedule", meta(webhook_url=ACME_URL, webhook_schedule=[31_536_000])),
        case("null fields", meta(webhook_url=None, webhook_secret_id=None, webhook_schedule=None)),
        url_case("https://acme.example/hooks/x"),
        url_case("https://ACME.example:443/hooks/x?y=1"),
        url_case("https://acme.example/hooks"),
        url_case("https://acme.example/hooks-evil"),
        url_case("https://acme.example/hooks/../admin"),
        url_case("https://acme.example/hooks/%2e%2e/admin"),
        url_case("https://acme.example/hooks/%2E./admin"),
        url_case("https://acme.example/hooks/a%2f..%2fb"),
        url_case("https://acme.example/hooks/./x"),
        url_case("https://acme.example/hooks\\..\\admin"),
        url_case("https://acme.example\\@attacker.example/hooks/"),
        url_case("https://acme%2eexample/hooks/x"),
        url_case("https://acme.example./hooks/x"),
        url_case("http://acme.example/hooks/x"),
        url_case("https://acme.example:8443/hooks/x"),
        url_case("https://acme.example.attacker.example/hooks/x"),
        url_case("https://user:pw@acme.example/hooks/x"),
        url_case("https://acme.example/hooks/x#frag"),
        url_case("https:acme.example/hooks/x"),
        url_case("https:///acme.example/hooks/x"),
        url_case(" https://acme.example/hooks/x"),
        url_case("ftp://acme.example/hooks/x"),
        url_case("https://globex.example/any"),
        url_case("http://globex.example/any"),
        url_case("https://sub.globex.example/any"),
        url_case("https://eu.eu.example/x"),
        url_case("https://eu.example/x"),
        url_case("https://evileu.example/x"),
        url_case("https://[::1]:8443/x"),
        url_case("https://[0:0:0:0:0:0:0:1]:8443/x"),
        case("url a number", meta(webhook_url=42)),
        # ---------------------------------------------------------------- report_meta
        case("plain report_meta", meta(report_meta={"company_id": "c-attacker"})),
        case("empty report_meta", meta(report_meta={})),
        case("report_meta not an object", meta(report_meta=[1])),
        case("report_meta too big", meta(report_meta={"k": "x" * 5000})),
        # {"k":"…"} is 8 bytes and 2 per é, 4 per 😀 (two UTF-16 units in JS): 4,096 at most
        case("report_meta at the limit", meta(report_meta={"k": "é" * 2044})),
        case("report_meta over the limit", meta(report_meta={"k": "é" * 2045})),
        case("report_meta at the limit, astral", meta(report_meta={"k": "😀" * 1022})),
        case("report_meta over the limit, astral", meta(report_meta={"k": "😀" * 1023})),
        case("report_meta empty key", meta(report_meta={"": 1})),
        case("report_meta lone surrogate", '{"report_meta": {"k": "\\ud800"}}'),
        case("report_meta NaN", '{"report_meta": {"k": NaN}}'),
        case("report_meta __proto__", '{"report_meta": {"__proto__": {"a": 1}}}'),
        case("__proto__ at the top", '{"__proto__": {"webhook_url": "https://attacker.example/"}}'),
        case("not JSON", "{"),
        case("not an object", "[1]"),
        case("a string", '"acme"'),
        # ---------------------------------------------------------------- dispatch claims
        case(
            "claim: everything",
            signed(
                webhook_url=ACME_URL,
                webhook_secret_id="acme",
                webhook_schedule=[0, 5, 10],
                report_meta={"company_id": "c-7"},
                room="interview-1",
                extra={"scenario": {"x": 1}},
            ),
            **room,
        ),
        case("claim: secret id only", signed(webhook_secret_id="globex")),
        case("claim: report_meta only", signed(report_meta={"company_id": "c-7"})),
        case(
            "claim: report_meta, plain URL allowed",
            json.dumps({**json.loads(signed(report_meta={"t": 1})), "webhook_url": ACME_URL}),
        ),
        case("claim: over plain fields", claim_over_plain()),
        case("claim: merge overflow", merge_overflow()),
        case("claim: other room", signed(webhook_url=ACME_URL, room="interview-other"), **room),
        case("claim: no room given", signed(webhook_url=ACME_URL, room="interview-1")),
        case("claim: expired", signed(webhook_url=ACME_URL, now=time.time() - 3600, ttl=60)),
        case("claim: from a clock ahead", signed(webhook_url=ACME_URL, now=time.time() + 300)),
        case("claim: wrong key", meta(**{CLAIM_KEY: claim("w" * 40, webhook_url=ATTACKER)})),
        case("claim: tampered", tampered()),
        case("claim: alg none", unsecured()),
        case("claim: no exp", meta(**{CLAIM_KEY: claim(exp=None, webhook_url=ATTACKER)})),
        case("claim: no aud", meta(**{CLAIM_KEY: claim(aud=None, webhook_url=ATTACKER)})),
        case("claim: other aud", meta(**{CLAIM_KEY: claim(aud="livekit", webhook_url=ATTACKER)})),
        case(
            "claim: aud list",
            meta(**{CLAIM_KEY: claim(aud=["x", CLAIM_AUDIENCE], webhook_url=ACME_URL)}),
        ),
        case(
            "claim: aud list with a number",
            meta(**{CLAIM_KEY: claim(aud=[CLAIM_AUDIENCE, 7], webhook_url=ATTACKER)}),
        ),
        case(
            "claim: nbf ahead",
            meta(**{CLAIM_KEY: claim(nbf=int(time.time()) + 3600, webhook_url=ATTACKER)}),
        ),
        case("claim: sub a number", meta(**{CLAIM_KEY: claim(sub=7, webhook_url=ATTACKER)})),
        case(
            "claim: leaked secret",
            meta(**{CLAIM_KEY: claim(webhook_url=ACME_URL, webhook_secret=LEAKED)}),
        ),
        case(
            "claim: unknown secret id",
            meta(**{CLAIM_KEY: claim(webhook_url=ACME_URL, webhook_secret_id="initech")}),
        ),
        case(
            "claim: bad schedule",
            meta(**{CLAIM_KEY: claim(webhook_url=ACME_URL, webhook_schedule=[-1])}),
        ),
        case("claim: bad report_meta", meta(**{CLAIM_KEY: claim(report_meta="x")})),
        case("claim: not a string", meta(**{CLAIM_KEY: 42})),
        case("claim: junk", meta(**{CLAIM_KEY: "not.a.jwt"})),
        case(
            "claim: no dispatch key",
            signed(webhook_url=ACME_URL),
            env={"ENDCALL_DISPATCH_KEY": None},
        ),
        # ---------------------------------------------------------------- failures
        case("strict with a refusal", meta(webhook_url=ATTACKER), strict=True),
        case("strict without one", meta(webhook_secret_id="acme"), strict=True),
        case("no default URL", meta(webhook_url=ATTACKER), env={"ENDCALL_WEBHOOK_URL": None}),
        case("no default secret", "", env={"ENDCALL_WEBHOOK_SECRET": None}),
        case(
            "no default, a claim",
            signed(webhook_url=ACME_URL, webhook_secret_id="acme"),
            env={"ENDCALL_WEBHOOK_URL": None, "ENDCALL_WEBHOOK_SECRET": None},
        ),
        case(
            "malformed named secrets",
            "",
            env={"ENDCALL_WEBHOOK_SECRETS": f"acme={ACME[0]} {GLOBEX}"},
        ),
        case("malformed allow-list", "", env={"ENDCALL_WEBHOOK_URL_ALLOW": "ftp://acme.example/"}),
        case(
            "allow entry with a path and no scheme",
            "",
            env={"ENDCALL_WEBHOOK_URL_ALLOW": "acme.example/path"},
        ),
        case("short dispatch key", "", env={"ENDCALL_DISPATCH_KEY": "k" * 31}),
        case("dispatch key is the LiveKit secret", "", env={"LIVEKIT_API_SECRET": KEY}),
    ]


def python_outcome(c: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    with monkeypatch.context() as m:
        for k in (*ENV, "LIVEKIT_API_SECRET"):
            m.delenv(k, raising=False)
        for k, v in {**ENV, **c.get("env", {})}.items():
            if v is not None:
                m.setenv(k, v)
        try:
            config = job_config(
                c["metadata"],
                room=c.get("room"),
                allow_urls=c.get("allow_urls", ()),
                strict=c.get("strict", False),
            )
        except JobConfigError:
            return {"name": c["name"], "error": "JobConfigError"}
    return {
        "name": c["name"],
        "error": None,
        "url": config.url,
        "keys": [key_id(s) for s in config.webhook.secrets],
        "schedule": [float(d) for d in config.webhook.schedule],
        "source": config.report_meta.source,
        "report_meta": dict(config.report_meta),
        "signed": config.signed,
        "default": config.default_destination,
        "refused": len(config.refused),
    }


@pytest.fixture(scope="module")
def node_dist() -> Path:
    if shutil.which("node") is None or shutil.which("npx") is None:
        pytest.skip("node is not installed")
    if not (NODE / "node_modules").is_dir():
        pytest.skip("node/node_modules is missing (npm ci in node/)")
    built = subprocess.run(
        ["npx", "tsc", "-p", "tsconfig.build.json"],
        cwd=NODE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # tsc emits despite type errors: another file's error (work in progress elsewhere in
    # node/src) does not stop this test, one in job_config*.ts does
    output = built.stdout + built.stderr
    assert "job_config" not in output, output
    assert (NODE / "dist" / "agent" / "job_config.js").is_file(), output
    return NODE / "dist"


def node_outcomes(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env = {k: v for k, v in ENV.items()}
    run = subprocess.run(
        ["node", str(FIXTURE)],
        input=json.dumps({"env": env, "cases": table}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    outcomes: list[dict[str, Any]] = json.loads(run.stdout)
    return outcomes


def test_node_and_python_agree_on_every_case(
    node_dist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = cases()
    names = [c["name"] for c in table]
    assert len(set(names)) == len(names)
    from_node = node_outcomes(table)
    assert [o["name"] for o in from_node] == names
    disagree = []
    for c, node in zip(table, from_node, strict=True):
        py = python_outcome(c, monkeypatch)
        node = {k: v for k, v in node.items() if k != "message"}
        if node.get("error") is None:
            node["schedule"] = [float(d) for d in node["schedule"]]
        if node != py:
            disagree.append(f"{c['name']}:\n  python {py}\n  node   {node}")
    assert not disagree, "\n".join(disagree)


def test_the_table_covers_what_matters(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table is not vacuous: it has accepted destinations of every kind, refusals, and
    failed jobs (checked on Python's side, which the Node side must then match)."""
    outcomes = [python_outcome(c, monkeypatch) for c in cases()]
    ok = [o for o in outcomes if o["error"] is None]
    assert any(o["signed"] and not o["default"] for o in ok)
    assert any(not o["signed"] and not o["default"] and o["url"] == ACME_URL for o in ok)
    assert any(o["keys"] == [key_id(s) for s in ACME] for o in ok)
    assert any(o["schedule"] == [0.0, 5.0, 10.0] for o in ok)
    assert {o["source"] for o in ok} == {"code", "signed", "unsigned"}
    assert sum(1 for o in ok if o["refused"]) >= 40
    assert sum(1 for o in outcomes if o["error"]) >= 8
    # no hostile case ever reaches the attacker
    assert not any(o["url"].startswith(ATTACKER) for o in ok)


def test_where_the_languages_differ_node_is_the_stricter(
    node_dist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known differences, pinned: Python's `json` reads NaN/Infinity (JavaScript's JSON.parse
    refuses the whole metadata: the job keeps its default destination), PyJWT reads a numeric
    string `exp` and ignores a malformed `iat` (jose refuses such a claim: only a key holder can
    make one), and integers past 2**53 lose digits in JavaScript. None lets metadata reach a
    destination Python would refuse."""

    def with_claim(**fields: Any) -> str:
        return meta(**{CLAIM_KEY: claim(webhook_url=ACME_URL, **fields)})

    table = [
        case("NaN beside a secret id", '{"webhook_secret_id": "acme", "x": NaN}'),
        case("exp a numeric string", with_claim(exp=str(int(time.time()) + 600))),
        case("iat not a number", with_claim(iat="x")),
    ]
    for c, node in zip(table, node_outcomes(table), strict=True):
        py = python_outcome(c, monkeypatch)
        assert py["error"] is None and py["refused"] == 0, py
        assert node["error"] is None and node["refused"] == 1, node
        assert node["url"] == DEFAULT_URL and node["default"] and not node["signed"], node
    big = case("big integer", '{"report_meta": {"n": 1000000000000000000000000000001}}')
    (node,) = node_outcomes([big])
    assert node["report_meta"] == {"n": 1e30}
    assert python_outcome(big, monkeypatch)["report_meta"] == {"n": 10**30 + 1}
