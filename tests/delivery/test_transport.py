"""The sender's own keep-alive transport (``PoolTransport``) against real sockets."""

from __future__ import annotations

import httpx
from support import Action, Receiver, free_port

from endcall.reports.delivery import PoolTransport, Sender, attempt
from endcall.reports.outbox.base import OutboxRecord

LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=8)


async def test_signed_posts_reuse_one_kept_alive_connection(
    receiver: Receiver, secret: str
) -> None:
    tr = PoolTransport(LIMITS)
    try:
        for i in range(5):
            body = f'{{"i":{i}}}'.encode()
            res = await attempt(tr, receiver.url, f"e{i}", body, [secret], timeout=5.0)
            assert res.outcome == "delivered" and res.status == 200
        assert len(tr._pool.connections) == 1  # one connection, kept alive and reused
    finally:
        await tr.aclose()
    receiver.assert_invariants({f"e{i}": f'{{"i":{i}}}'.encode() for i in range(5)})


async def test_errors_keep_httpx_types(receiver: Receiver, secret: str) -> None:
    tr = PoolTransport(LIMITS)
    try:
        refused = f"http://127.0.0.1:{free_port()}/hook"
        res = await attempt(tr, refused, "r", b"{}", [secret], timeout=2.0)
        assert res.outcome == "retry" and res.error and res.error.startswith("connect failed")
        receiver.plan = lambda e, n: Action(200, delay=2.0)
        res = await attempt(tr, receiver.url, "slow", b"{}", [secret], timeout=0.3)
        assert res.outcome == "retry" and res.error and res.error.startswith("timeout after")
        receiver.plan = lambda e, n: Action(307, headers={"location": "http://x/"})
        res = await attempt(tr, receiver.url, "moved", b"{}", [secret], timeout=2.0)
        assert res.outcome == "retry" and res.status == 307  # redirects are not followed
    finally:
        await tr.aclose()


async def test_sender_uses_pool_transport_unless_given_a_client(
    receiver: Receiver, secret: str
) -> None:
    s = Sender(None, [secret], owner="o")
    assert isinstance(s._via, PoolTransport)
    rec = OutboxRecord(
        "x",
        "pending",
        False,
        receiver.url,
        {},
        b"{}",
        0,
        0.0,
        None,
        None,
        None,
        None,
        0.0,
        0.0,
        None,
    )
    res, _ = await s.send(rec, record=False)
    assert res.outcome == "delivered"
    await s.aclose()
    async with httpx.AsyncClient() as c:
        s2 = Sender(None, [secret], owner="o", client=c)
        assert s2._via is c
        await s2.aclose()


async def test_fast_post_sends_what_httpx_would(receiver: Receiver, secret: str) -> None:
    tr = PoolTransport(LIMITS)
    try:
        res = await attempt(
            tr, receiver.url, "h1", b'{"a":1}', [secret], timeout=5.0, headers={"X-Tenant": "t"}
        )
        assert res.outcome == "delivered"
        async with httpx.AsyncClient(transport=tr) as c:  # the generic transport path
            r = await c.post(receiver.url, content=b"{}", headers={"webhook-id": "unsigned"})
            assert r.status_code == 401 and r.request.url == receiver.url
    finally:
        await tr.aclose()
    fast, generic = receiver.requests
    host = receiver.url.split("/")[2]
    assert fast.headers["host"] == generic.headers["host"] == host
    assert fast.headers["content-length"] == "7" and fast.headers["x-tenant"] == "t"
    assert fast.headers["content-type"] == "application/json" and fast.verified
