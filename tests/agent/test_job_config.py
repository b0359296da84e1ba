"""`endcall.job_config` (issue 19, part 5): secrets stay server-side, destinations are not the
caller's choice. Job metadata may come from the candidate's own browser (a token's dispatch
is readable by its holder, and settable through a token route that copies the client's
`room_config`), so each rule below has a test that fails without it."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import jwt
import pytest

import endcall
from endcall import JobConfigError, ReportMeta, dispatch_metadata, job_config
from endcall.agent.annotations import Annotations
from endcall.agent.end_machine import EndRecord, EndState
from endcall.agent.job_config import CLAIM_AUDIENCE, CLAIM_KEY, url_allowed
from endcall.agent.report import build_draft, build_report
from endcall.protocol import Initiator, parse_report
from endcall.reports.relay import secrets_from_env
from endcall.reports.webhook import DEFAULT_SCHEDULE, parse_named_secrets

DEFAULT_URL = "https://backend.example/session/end"
DEFAULT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ACME = ("whsec_" + "A" * 32, "whsec_" + "B" * 32)  # two: rotation
GLOBEX = "whsec_" + "C" * 32
LEAKED = "whsec_" + "D" * 32
KEY = "k" * 40
ACME_URL = "https://acme.example/hooks/endcall"
ATTACKER = "https://attacker.example/collect"


@pytest.fixture(autouse=True)
def worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker as the README deploys it: a default destination, named secrets, a dispatch
    key; no allow-list unless a test sets one."""
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL", DEFAULT_URL)
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRET", DEFAULT_SECRET)
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRETS", f"acme={ACME[0]}, acme={ACME[1]} globex={GLOBEX}")
    monkeypatch.setenv("ENDCALL_DISPATCH_KEY", KEY)
    monkeypatch.delenv("ENDCALL_WEBHOOK_URL_ALLOW", raising=False)
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)


def meta(**fields: Any) -> str:
    return json.dumps(fields)


def assert_default_destination(config: endcall.JobConfig) -> None:
    assert config.webhook.url == DEFAULT_URL
    assert config.webhook.secrets == (DEFAULT_SECRET,)
    assert config.webhook.schedule == DEFAULT_SCHEDULE
    assert config.default_destination


def errors(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


# ------------------------------------------------------------------ secrets


def test_a_secret_in_the_metadata_is_refused_and_never_used(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL_ALLOW", "https://acme.example/hooks/")
    with caplog.at_level(logging.ERROR, "endcall"):
        config = job_config(meta(webhook_url=ACME_URL, webhook_secret=LEAKED))
    assert LEAKED not in config.webhook.secrets
    # a secret in the metadata makes the whole destination the default, URL included
    assert_default_destination(config)
    (refusal,) = config.refused
    assert "webhook_secret" in refusal and "rotate" in refusal and LEAKED not in refusal
    assert "webhook_secret" in errors(caplog) and LEAKED not in caplog.text
    assert config.report_meta.config_refused == config.refused  # → the report's end
    with pytest.raises(JobConfigError, match="webhook_secret"):
        job_config(meta(webhook_secret=LEAKED), strict=True)


def test_a_secret_in_a_signed_claim_is_refused_too() -> None:
    """A JWT is signed, not encrypted: whoever holds the metadata reads its payload."""
    claim = {"aud": CLAIM_AUDIENCE, "exp": time.time() + 60, "webhook_secret": LEAKED}
    config = job_config(meta(**{CLAIM_KEY: jwt.encode(claim, KEY, algorithm="HS256")}))
    assert config.signed and LEAKED not in config.webhook.secrets
    assert_default_destination(config)
    assert any("dispatch claim carries a webhook_secret" in r for r in config.refused)


def test_a_secret_id_names_a_secret_of_the_worker() -> None:
    config = job_config(meta(webhook_secret_id="acme"))
    assert config.webhook.secrets == ACME and config.webhook.url == DEFAULT_URL
    assert config.refused == ()
    # a resolver in code instead of the environment: a mapping or a function
    assert job_config(meta(webhook_secret_id="x"), secrets={"x": GLOBEX}).webhook.secrets == (
        GLOBEX,
    )
    looked_up: list[str] = []

    def vault(secret_id: str) -> str | None:
        looked_up.append(secret_id)
        return GLOBEX if secret_id == "globex-2" else None

    assert job_config(meta(webhook_secret_id="globex-2"), secrets=vault).webhook.secrets == (
        GLOBEX,
    )
    assert looked_up == ["globex-2"]


def test_an_unknown_secret_id_is_refused(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL_ALLOW", ACME_URL)
    with caplog.at_level(logging.ERROR, "endcall"):
        config = job_config(meta(webhook_url=ACME_URL, webhook_secret_id="initech"))
    assert_default_destination(config)  # not the allowed URL signed with another secret
    (refusal,) = config.refused
    assert "'initech' is unknown" in refusal and "ENDCALL_WEBHOOK_SECRETS" in refusal
    assert "initech" in errors(caplog) and DEFAULT_URL in errors(caplog)
    failing = job_config(meta(webhook_secret_id="acme"), secrets=lambda _id: 1 / 0)
    assert_default_destination(failing)
    assert "could not be resolved" in failing.refused[0]
    with pytest.raises(JobConfigError, match="initech"):
        job_config(meta(webhook_secret_id="initech"), strict=True)


def test_the_worker_s_own_secrets_must_be_well_formed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's configuration fails every job alike, at its start (never silently)."""
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRETS", f"acme={ACME[0]} {GLOBEX}")
    with pytest.raises(JobConfigError, match="entry #2 is not id=whsec_") as raised:
        job_config("")
    assert GLOBEX not in str(raised.value)
    monkeypatch.setenv("ENDCALL_WEBHOOK_SECRETS", "acme=whsec_short")
    with pytest.raises(JobConfigError, match="'acme' is not usable"):
        job_config("")
    with pytest.raises(JobConfigError, match="'x'"):
        job_config(meta(webhook_secret_id="x"), secrets={"x": "not-a-secret"})


def test_relays_can_sign_what_named_secrets_signed() -> None:
    """A report signed with a per-customer secret and left in the outbox is relayed:
    `endcall.prewarm`, `endcall outbox deliver` and `endcall serve --outbox` know the ids'
    secrets (a relay without the right key would leave it undelivered)."""
    assert secrets_from_env() == (DEFAULT_SECRET, *ACME, GLOBEX)
    assert parse_named_secrets("a=" + GLOBEX + ",a=" + ACME[0]) == {"a": (GLOBEX, ACME[0])}


# ------------------------------------------------------------------ URLs


def test_a_url_not_allowed_goes_to_the_default_destination_loudly(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with caplog.at_level(logging.ERROR, "endcall"):
        config = job_config(
            meta(webhook_url=ATTACKER, webhook_secret_id="acme", report_meta={"k": "v"}),
            room="interview-1",
        )
    assert_default_destination(config)
    (refusal,) = config.refused
    assert ATTACKER in refusal and "ENDCALL_WEBHOOK_URL_ALLOW" in refusal
    assert "ENDCALL_DISPATCH_KEY" in refusal
    logged = errors(caplog)
    assert ATTACKER in logged and "interview-1" in logged
    assert f"goes to the default destination {DEFAULT_URL}" in logged
    assert config.report_meta.config_refused == (refusal,)
    with pytest.raises(JobConfigError, match=r"attacker\.example"):
        job_config(meta(webhook_url=ATTACKER), strict=True)
    # with no default destination there is nowhere safe: the job fails at its start
    monkeypatch.delenv("ENDCALL_WEBHOOK_URL")
    with pytest.raises(JobConfigError, match=r"ENDCALL_WEBHOOK_URL.*attacker\.example"):
        job_config(meta(webhook_url=ATTACKER))


def test_an_allowed_url_is_used_with_the_named_or_default_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL_ALLOW", "https://acme.example/hooks/, globex.example")
    config = job_config(meta(webhook_url=ACME_URL, webhook_secret_id="acme"))
    assert (config.webhook.url, config.webhook.secrets) == (ACME_URL, ACME)
    assert not config.default_destination and not config.signed and config.refused == ()
    other = job_config(meta(webhook_url="https://globex.example/h"))
    assert other.webhook.url == "https://globex.example/h"
    assert other.webhook.secrets == (DEFAULT_SECRET,)
    # allow_urls= adds to the environment's list
    extra = "http://127.0.0.1:8080/hook"
    assert job_config(meta(webhook_url=extra), allow_urls=[extra]).webhook.url == extra
    assert_default_destination(job_config(meta(webhook_url=extra)))


@pytest.mark.parametrize(
    ("entry", "url", "allowed"),
    [
        ("https://acme.example/hooks/", "https://acme.example/hooks/endcall", True),
        ("https://acme.example/hooks/", "https://ACME.example:443/hooks/x?y=1", True),
        ("https://acme.example/hooks", "https://acme.example/hooks", True),
        ("https://acme.example/hooks", "https://acme.example/hooks/a", True),
        ("https://acme.example/hooks", "https://acme.example/hooks-evil", False),
        ("https://acme.example/hooks/", "https://acme.example/hooks/../admin", False),
        ("https://acme.example/hooks/", "https://acme.example/hooks/%2e%2e/admin", False),
        ("https://acme.example", "https://acme.example.attacker.example/", False),
        ("https://acme.example", "https://acme.example/anything", True),
        ("https://acme.example/", "http://acme.example/", False),
        ("https://acme.example/", "https://acme.example:8443/", False),
        ("http://127.0.0.1:8080/h", "http://127.0.0.1:8080/h", True),
        ("http://127.0.0.1:8080/h", "http://127.0.0.1:8081/h", False),
        ("acme.example", "https://acme.example/x", True),
        ("acme.example", "http://acme.example/x", False),
        ("acme.example", "https://sub.acme.example/x", False),
        ("acme.example", "https://acme.example:8443/x", False),
        ("acme.example:8443", "https://acme.example:8443/x", True),
        ("*.acme.example", "https://eu.acme.example/x", True),
        ("*.acme.example", "https://acme.example/x", False),
        ("*.acme.example", "https://evilacme.example/x", False),
        ("[::1]:8443", "https://[::1]:8443/x", True),
    ],
)
def test_allow_list_entries(entry: str, url: str, allowed: bool) -> None:
    assert url_allowed(url, [entry]) is allowed


def test_a_malformed_allow_list_entry_fails_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENDCALL_WEBHOOK_URL_ALLOW", "ftp://acme.example/")
    with pytest.raises(JobConfigError, match="ENDCALL_WEBHOOK_URL_ALLOW"):
        job_config("")
    monkeypatch.delenv("ENDCALL_WEBHOOK_URL_ALLOW")
    with pytest.raises(JobConfigError, match="neither a URL prefix"):
        job_config("", allow_urls=["acme.example/path"])


def test_an_unsigned_schedule_is_refused_but_an_allowed_url_kept() -> None:
    """A candidate could push their report's retries out of reach (or down to one)."""
    config = job_config(
        meta(webhook_url=ACME_URL, webhook_schedule=[31_536_000]), allow_urls=[ACME_URL]
    )
    assert config.webhook.url == ACME_URL and config.webhook.schedule == DEFAULT_SCHEDULE
    assert "webhook_schedule is honoured only in a dispatch claim" in config.refused[0]


# ------------------------------------------------------------------ dispatch claims


def test_a_signed_claim_with_its_url_is_accepted() -> None:
    text = dispatch_metadata(
        webhook_url=ACME_URL,
        webhook_secret_id="acme",
        webhook_schedule=[0, 5, 10],
        report_meta={"company_id": "c-7", "test_id": "t-42"},
        room="interview-1",
        extra={"scenario": {"agent_ends": True}},
    )
    doc = json.loads(text)
    assert doc["scenario"] == {"agent_ends": True} and CLAIM_KEY in doc
    config = job_config(text, room="interview-1")
    assert (config.webhook.url, config.webhook.secrets) == (ACME_URL, ACME)
    assert config.webhook.schedule == (0.0, 5.0, 10.0)
    assert config.signed and not config.default_destination and config.refused == ()
    assert dict(config.report_meta) == {"company_id": "c-7", "test_id": "t-42"}
    assert config.report_meta.source == "signed"


def test_a_claim_decides_over_plain_fields() -> None:
    """Plain fields next to a claim cannot redirect the report or override its ids."""
    doc = json.loads(dispatch_metadata(webhook_url=ACME_URL, report_meta={"company_id": "c-7"}))
    doc.update(webhook_url=ATTACKER, report_meta={"company_id": "c-attacker", "note": "hi"})
    config = job_config(json.dumps(doc))
    assert config.webhook.url == ACME_URL
    assert dict(config.report_meta) == {"company_id": "c-7", "note": "hi"}
    assert config.report_meta.source == "unsigned"  # "note" is nobody's signed word


def _claim(**fields: Any) -> str:
    body = {"aud": CLAIM_AUDIENCE, "exp": int(time.time()) + 600, "webhook_url": ATTACKER}
    body.update(fields)
    key = body.pop("key", KEY)
    return meta(**{CLAIM_KEY: jwt.encode({k: v for k, v in body.items() if v is not None}, key)})


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        (_claim(key="w" * 40), "does not verify with ENDCALL_DISPATCH_KEY"),
        (_claim(exp=int(time.time()) - 3600), "has expired"),
        (_claim(exp=None), "not valid"),
        (_claim(aud=None), "not valid"),  # e.g. a LiveKit token signed with the same key
        (_claim(aud="livekit"), "not valid"),
        (_claim(room="interview-other"), "is for room 'interview-other'"),
        (meta(**{CLAIM_KEY: 42}), "must be a JWT"),
        (meta(**{CLAIM_KEY: "not.a.jwt"}), "not valid"),
    ],
    ids=["wrong-key", "expired", "no-exp", "no-aud", "other-aud", "other-room", "not-str", "junk"],
)
def test_a_claim_that_does_not_verify_is_refused(
    metadata: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "endcall"):
        config = job_config(metadata, room="interview-1")
    assert not config.signed
    assert_default_destination(config)
    assert why in config.refused[0] and why in errors(caplog)


def test_a_tampered_claim_is_refused() -> None:
    token = json.loads(dispatch_metadata(webhook_url=ACME_URL))[CLAIM_KEY]
    header, _payload, signature = token.split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps({"aud": CLAIM_AUDIENCE, "exp": 2**31, "webhook_url": ATTACKER}).encode()
    ).decode()
    config = job_config(meta(**{CLAIM_KEY: f"{header}.{forged}.{signature}"}))
    assert_default_destination(config)
    assert "does not verify" in config.refused[0]


def test_a_claim_without_a_dispatch_key_on_the_worker_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = dispatch_metadata(webhook_url=ACME_URL)
    monkeypatch.delenv("ENDCALL_DISPATCH_KEY")
    config = job_config(text)
    assert_default_destination(config)
    assert "no ENDCALL_DISPATCH_KEY" in config.refused[0]


def test_a_claim_bound_to_a_room_needs_the_job_s_room() -> None:
    config = job_config(dispatch_metadata(webhook_url=ACME_URL, room="interview-1"))
    assert_default_destination(config)
    assert "was not told the job's room" in config.refused[0]


def test_the_dispatch_key_is_strong_and_not_the_livekit_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(JobConfigError, match="at least 32 bytes"):
        job_config("", dispatch_key="short")
    monkeypatch.setenv("LIVEKIT_API_SECRET", KEY)  # it signs the tokens browsers hold
    with pytest.raises(JobConfigError, match="LiveKit API secret"):
        job_config("")
    with pytest.raises(ValueError, match="LiveKit API secret"):
        dispatch_metadata(webhook_url=ACME_URL)


# ------------------------------------------------------------------ report_meta


def _report(annotations: dict[str, Any]) -> Any:
    record = EndRecord(
        end_id="e_1",
        state=EndState.ENDED,
        drain_ms=0,
        reason="customer-ended-call",
        initiator=Initiator("customer", "cand-1"),
        requested_at=time.time(),
    )
    body = build_report(
        record,
        ctx=None,
        session=None,
        room_name="interview-1",
        started_at=time.time() - 60,
        end_section={"channel": "rpc"},
        annotations=annotations,
    )
    return parse_report(body)


def test_unsigned_report_meta_is_marked_in_the_built_report() -> None:
    config = job_config(meta(report_meta={"company_id": "c-attacker"}))
    assert config.refused == () and config.report_meta.source == "unsigned"
    notes = Annotations(config.report_meta)
    report = _report(notes.snapshot())
    assert report.annotations == {"company_id": "c-attacker"}
    assert report.annotations_source == "unsigned"
    draft = parse_report(
        build_draft("e_1", ctx=None, session=None, room_name="r", started_at=0.0,
                    annotations=notes.snapshot())
    )  # fmt: skip
    assert draft.annotations_source == "unsigned"
    # the agent's code overwriting every unsigned field makes them the code's again
    notes.update({"company_id": "c-7"})
    assert _report(notes.snapshot()).annotations_source == "code"


def test_signed_and_code_annotations_say_so() -> None:
    signed = job_config(dispatch_metadata(report_meta={"company_id": "c-7"}))
    assert _report(Annotations(signed.report_meta).snapshot()).annotations_source == "signed"
    assert _report(Annotations({"company_id": "c-7"}).snapshot()).annotations_source == "code"
    assert _report(Annotations().snapshot()).annotations_source == "code"
    # one unsigned field among signed ones: the report is unsigned
    mixed = signed.report_meta | ReportMeta({"note": "x"})
    assert _report(Annotations(mixed).snapshot()).annotations_source == "unsigned"
    assert ReportMeta({"a": 1}).source == "unsigned"  # marking is never forgotten


@pytest.mark.parametrize(
    "metadata",
    ["{", "[1]", meta(report_meta=[1]), meta(report_meta={"k": "x" * 5000})],
    ids=["not-json", "not-object", "meta-not-object", "meta-too-big"],
)
def test_bad_metadata_is_refused_not_fatal(metadata: str) -> None:
    """What the metadata says never stops the interview (the candidate could send it)."""
    config = job_config(metadata)
    assert_default_destination(config)
    assert len(config.refused) == 1 and dict(config.report_meta) == {}


def test_no_default_and_no_destination_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENDCALL_WEBHOOK_SECRET")
    with pytest.raises(JobConfigError, match="no webhook secret"):
        job_config("")
    # a destination in a claim needs no default
    assert job_config(dispatch_metadata(webhook_url=ACME_URL, webhook_secret_id="acme")).signed


def test_the_config_never_shows_its_secrets() -> None:
    config = job_config(meta(webhook_secret_id="acme"))
    assert ACME[0] not in repr(config) and config.url == DEFAULT_URL


def test_a_claim_issued_by_a_clock_a_little_ahead_is_accepted() -> None:
    """Only `exp` decides: a backend whose clock runs ahead must not send reports astray."""
    ahead = time.time() + 300
    config = job_config(dispatch_metadata(webhook_url=ACME_URL, now=ahead))
    assert config.signed and config.webhook.url == ACME_URL
