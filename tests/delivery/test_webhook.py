"""Signing: byte-equal to the reference standardwebhooks package, one v1 per secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timezone

import pytest
import standardwebhooks
from support import new_secret

from endcall.reports.webhook import DEFAULT_SCHEDULE, Webhook, parse_secrets, sign, signed_headers


def test_signature_equals_reference_and_verifies_per_secret() -> None:
    s1, s2 = new_secret(), new_secret()
    body = '{"type":"session.ended","x":"é"}'.encode()
    ts = 1_800_000_000
    sig = sign("end_1", ts, body, [s1, s2])
    parts = sig.split(" ")
    assert len(parts) == 2 and all(p.startswith("v1,") for p in parts)
    when = datetime.fromtimestamp(ts, tz=timezone.utc)
    assert parts[0] == standardwebhooks.Webhook(s1).sign("end_1", when, body.decode())
    assert parts[1] == standardwebhooks.Webhook(s2).sign("end_1", when, body.decode())


def test_headers_verify_with_each_rotated_secret_alone() -> None:
    import time

    old, new = new_secret(), new_secret()
    body = b'{"a":1}'
    h = signed_headers("end_9", body, [old, new], int(time.time()), {"X-Extra": "1"})
    assert h["webhook-id"] == "end_9" and h["x-extra"] == "1"
    for s in (old, new):
        standardwebhooks.Webhook(s).verify(body, h, json_parse=False)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(body, h, json_parse=False)


def test_extra_headers_cannot_override_signature() -> None:
    s = new_secret()
    h = signed_headers("e", b"{}", [s], 1_800_000_000, {"webhook-id": "evil"})
    assert h["webhook-id"] == "e"


def test_non_utf8_body_signed_over_raw_bytes() -> None:
    s = new_secret()
    body = b"\xff\xfe{}"
    sig = sign("e", 123, body, [s])
    key = base64.b64decode(s[len("whsec_") :])
    want = base64.b64encode(hmac.new(key, b"e.123." + body, hashlib.sha256).digest()).decode()
    assert sig == "v1," + want


def test_webhook_config_validation() -> None:
    s = new_secret()
    w = Webhook(url="https://x/y", secret=f"{s}, {new_secret()}")
    assert len(w.secrets) == 2 and w.timeout == 15.0 and w.in_process_window == 60.0
    assert tuple(w.schedule) == DEFAULT_SCHEDULE
    assert tuple(w.schedule) == (0, 5, 30, 120, 600, 1800, 3600, 7200, 21600, 43200, 86400)
    assert Webhook(url="http://x", secret=[s]).secrets == (s,)
    for bad in (
        {"url": "ftp://x", "secret": s},
        {"url": "http://x", "secret": ""},
        {"url": "http://x", "secret": []},
        {"url": "http://x", "secret": "whsec_!!!notbase64"},
        {"url": "http://x", "secret": "whsec_c2hvcnQ="},  # too short
        {"url": "http://x", "secret": s, "timeout": 0},
        {"url": "http://x", "secret": s, "schedule": []},
        {"url": "http://x", "secret": s, "schedule": [0, -1]},
        {"url": "http://x", "secret": s, "jitter": 1.5},
    ):
        with pytest.raises(ValueError):
            Webhook(**bad)  # type: ignore[arg-type]


def test_parse_secrets() -> None:
    assert parse_secrets(" a, b\tc ,,d ") == ("a", "b", "c", "d")
    assert parse_secrets("") == ()
