"""`Webhook` is validated when constructed; what relays need travels as `delivery()`."""

from __future__ import annotations

import pytest
from support import new_secret

from endcall.reports.webhook import Webhook, key_id


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "empty"),
        ("backend/session/end", "http"),
        ("ftp://backend/x", "http"),
        ("http://", "no host"),
        ("https:///path", "no host"),
        ("https://backend/ end", "whitespace"),
        (" https://backend/end", "whitespace"),
        ("https://user:pw@backend/end", "user:password"),
        ("https://backend/end#frag", "fragment"),
        ("https://backend:99999/end", "malformed"),
        ("https://[::1/end", "malformed"),
    ],
)
def test_malformed_urls_are_refused_with_a_clear_error(url: str, why: str) -> None:
    """Issue 11 point 10: `Webhook()` accepted malformed URLs."""
    with pytest.raises(ValueError, match=why):
        Webhook(url, new_secret())


def test_good_urls_are_accepted() -> None:
    for url in ("https://backend/session/end", "http://127.0.0.1:8080/h?x=1", "http://[::1]:9/h"):
        assert Webhook(url, new_secret()).url == url


def test_bad_secret_is_named() -> None:
    with pytest.raises(ValueError, match="secret #2"):
        Webhook("https://b/h", [new_secret(), "whsec_not*base64"])
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Webhook("https://b/h", "whsec_c2hvcnQ=")


def test_timeout_and_schedule_are_bounded() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Webhook("https://b/h", new_secret(), timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        Webhook("https://b/h", new_secret(), timeout=301)
    with pytest.raises(ValueError, match="schedule"):
        Webhook("https://b/h", new_secret(), schedule=[0, float("inf")])


def test_delivery_settings_name_keys_never_secrets() -> None:
    a, b = new_secret(), new_secret()
    hook = Webhook("https://b/h", [a, b], timeout=7, schedule=[0, 1, 2], jitter=0.0)
    d = hook.delivery()
    assert d == {"schedule": [0.0, 1.0, 2.0], "jitter": 0.0, "timeout": 7, "keys": d["keys"]}
    assert d["keys"] == [key_id(a), key_id(b)] and key_id(a) != key_id(b)
    assert key_id(a) == key_id(a.removeprefix("whsec_"))  # the prefix is optional
    assert all(a.removeprefix("whsec_")[:8] not in k for k in d["keys"])
