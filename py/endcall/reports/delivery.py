"""Delivering one report: a single signed attempt, the retry policy, and recording outcomes.

- Only a 2xx answer is success. Redirects are *not* followed and count as failures.
- ``410 Gone`` makes the report ``dead`` at once (the receiver asked us to stop).
- ``429`` and ``503`` honour ``Retry-After`` (seconds or an HTTP date): the next attempt is
  never earlier than asked (capped at ``max_retry_after``).
- Anything else (other statuses, timeouts, refused connections, TLS errors...) is retried on
  the schedule; after the last scheduled attempt fails the report is ``dead`` (kept, listable,
  replayable with ``endcall outbox replay ID`` or ``replay --dead``). A report going dead is
  logged at ERROR (logger ``endcall.delivery``, with its end_id and last error) and passed
  to the sender's ``on_dead`` callback, for an alert.
- A row's own ``delivery`` settings (the agent's `Webhook`: schedule, jitter, timeout, key ids)
  take precedence over the sender's defaults, and it is signed only with the secrets whose key
  ids it names; a sender holding none of them does not send it (no signature the receiver
  would reject): the row is deferred with an error saying which key is missing.
- A crash draft whose end was accepted is sent with that end written in (`protocol.with_ending`).

The HTTP client is an ``httpx.AsyncClient``; pass ``transport=`` (e.g. ``httpx.MockTransport``)
or ``client=`` to inject one, and ``clock=`` (a `Clock`) to control time in tests.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import select
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpcore
import httpx

from endcall.protocol import ProtocolError, with_ending
from endcall.reports import metrics
from endcall.reports.outbox.base import Outbox, OutboxRecord
from endcall.reports.webhook import (
    DEFAULT_JITTER,
    DEFAULT_SCHEDULE,
    MAX_TIMEOUT,
    key_id,
    signed_headers,
)

__all__ = [
    "AttemptResult",
    "Clock",
    "DeadCallback",
    "PoolTransport",
    "RetryPolicy",
    "Sender",
    "SystemClock",
    "attempt",
    "parse_retry_after",
]

logger = logging.getLogger("endcall.delivery")

Outcome = Literal["delivered", "retry", "dead"]

DeadCallback = Callable[[OutboxRecord], None]
"""Called (in the event loop; exceptions are logged) with the row of a report that went dead."""

#: how long a row this sender cannot sign waits before it is offered again
MISSING_KEY_DEFER = 300.0


class Clock(Protocol):
    """Time source: ``time()`` in Unix seconds and an awaitable ``sleep``."""

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP attempt gave."""

    outcome: Outcome
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    elapsed: float = 0.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        secs = when.timestamp() - now
    if math.isnan(secs) or secs < 0:
        return 0.0
    return secs


async def _post(
    via: httpx.AsyncClient | httpx.AsyncBaseTransport,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
) -> httpx.Response:
    """POST ``body``; the response body is read (and discarded) so the connection is reused.

    Given a transport, the request goes straight to it: no redirect, cookie or auth machinery
    (redirects are never followed anyway); the sender's own `PoolTransport` also skips building
    an ``httpx.Request``; with its cheap idle-connection check, a POST costs clearly less CPU
    than ``AsyncClient.post`` (``bench/delivery.py`` prints CPU per report)."""
    if isinstance(via, PoolTransport):
        return await via.post(url, body, headers, timeout)
    if isinstance(via, httpx.AsyncClient):
        return await via.post(
            url, content=body, headers=headers, timeout=timeout, follow_redirects=False
        )
    req = httpx.Request(
        "POST",
        url,
        content=body,
        headers=headers,
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )
    resp = await via.handle_async_request(req)
    try:
        await resp.aread()
    finally:
        await resp.aclose()
    return resp


async def attempt(
    client: httpx.AsyncClient | httpx.AsyncBaseTransport,
    url: str,
    end_id: str,
    body: bytes,
    secrets: Sequence[str],
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    now: float | None = None,
) -> AttemptResult:
    """POST the report once, signed for this attempt's timestamp. Never raises (but cancels).

    ``client`` is an ``httpx.AsyncClient`` or a bare transport (see `Sender`)."""
    started = time.monotonic()
    ts = int(time.time())  # the signature carries real time: receivers check it against theirs
    try:
        resp = await _post(
            client, url, body, signed_headers(end_id, body, secrets, ts, headers), timeout
        )
    except httpx.TimeoutException as e:
        return AttemptResult(
            "retry",
            error=f"timeout after {timeout:g}s ({type(e).__name__})",
            elapsed=time.monotonic() - started,
        )
    except httpx.ConnectError as e:
        return AttemptResult(
            "retry", error=f"connect failed: {e}", elapsed=time.monotonic() - started
        )
    except Exception as e:
        return AttemptResult(
            "retry", error=f"{type(e).__name__}: {e}", elapsed=time.monotonic() - started
        )
    elapsed = time.monotonic() - started
    code = resp.status_code
    if 200 <= code < 300:
        return AttemptResult("delivered", status=code, elapsed=elapsed)
    if code == 410:
        return AttemptResult("dead", status=code, error="410 Gone: receiver asked to stop")
    if 300 <= code < 400:
        loc = resp.headers.get("location", "")
        return AttemptResult(
            "retry",
            status=code,
            error=f"HTTP {code} redirect not followed ({loc})",
            elapsed=elapsed,
        )
    retry_after = None
    if code in (429, 503):
        retry_after = parse_retry_after(
            resp.headers.get("retry-after"), time.time() if now is None else now
        )
    return AttemptResult(
        "retry", status=code, error=f"HTTP {code}", retry_after=retry_after, elapsed=elapsed
    )


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again. ``schedule[n]`` is the delay before attempt ``n`` (0-based), so
    after ``len(schedule)`` failed attempts the report is dead."""

    schedule: Sequence[float] = DEFAULT_SCHEDULE
    jitter: float = DEFAULT_JITTER
    max_retry_after: float = 86400.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def next_attempt_at(
        self, attempts_made: int, now: float, retry_after: float | None = None
    ) -> float | None:
        """Absolute time of the next attempt after ``attempts_made`` failures, None if none."""
        if attempts_made >= len(self.schedule):
            return None
        delay = float(self.schedule[attempts_made])
        if delay > 0 and self.jitter:
            delay *= self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return now + delay


class _Stream(httpcore.AsyncNetworkStream):
    """A connection whose "is the idle socket readable?" check is one poll() call.

    httpcore asks this of every idle pooled connection each time it assigns a request; the
    default anyio stream rebuilds its attribute table on every ask (about 30 us), which made
    the pool cost more than the request itself once a few connections sat idle."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._sock is not None:
            if self._sock.fileno() < 0:
                return True  # closed: readable (EOF), so the pool drops it
            poller = select.poll()
            poller.register(self._sock, select.POLLIN)
            return bool(poller.poll(0))
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(
            await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _httpx_error(e: Exception) -> Exception:
    """The httpx exception of the same name (httpx raises exactly these for httpcore's)."""
    cls = getattr(httpx, type(e).__name__, None)
    if isinstance(cls, type) and issubclass(cls, httpx.TransportError):
        return cls(str(e))
    return httpx.TransportError(f"{type(e).__name__}: {e}")


class PoolTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive pool for report POSTs (httpcore with a cheaper idle check).

    Same behaviour as ``httpx.AsyncHTTPTransport`` for what delivery needs: TLS with the
    system/``SSL_CERT_FILE`` trust store, per-request timeouts from the request extensions,
    httpx exception types; the response body is read before returning."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=True),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )
        self._targets: dict[str, tuple[httpcore.URL, bytes]] = {}

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> httpx.Response:
        """POST ``body`` to ``url``: what ``handle_async_request`` does for a POST, without
        building and re-parsing an ``httpx.Request`` each time (the URL is parsed once)."""
        target = self._targets.get(url)
        if target is None:
            u = httpx.URL(url)
            host = u.netloc  # what httpx sends as Host: no default port, [v6] bracketed
            target = (
                httpcore.URL(scheme=u.raw_scheme, host=u.raw_host, port=u.port, target=u.raw_path),
                host,
            )
            if len(self._targets) < 64:
                self._targets[url] = target
        raw = [(b"Host", target[1])]
        raw += [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in headers.items()
            if k.lower() not in ("host", "content-length")
        ]
        raw.append((b"Content-Length", str(len(body)).encode()))
        return await self._send(
            httpcore.Request(
                method=b"POST",
                url=target[0],
                headers=raw,
                content=body,
                extensions={"timeout": httpx.Timeout(timeout).as_dict()},
            )
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        req = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        resp = await self._send(req)
        resp.request = request
        return resp

    async def _send(self, req: httpcore.Request) -> httpx.Response:
        try:
            resp = await self._pool.handle_async_request(req)
            try:
                content = await resp.aread()
            finally:
                await resp.aclose()
        except httpcore.TimeoutException as e:
            raise _httpx_error(e) from e
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as e:
            raise _httpx_error(e) from e
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            content=content,
            extensions=resp.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def _env_proxies() -> bool:
    """True when proxy environment variables are set (the client honours them; a bare
    transport would not)."""
    # NO_PROXY alone (`{"no": ...}`) names no proxy
    return any(scheme != "no" for scheme in urllib.request.getproxies())


def _body(rec: OutboxRecord) -> bytes:
    """What to send for ``rec``: its body, or for a crash draft whose end was accepted, the
    body with that end written in (a pure function of the row: the same bytes every time)."""
    if rec.is_draft and rec.ending:
        try:
            return with_ending(rec.body, rec.ending)
        except ProtocolError as e:
            logger.warning("endcall: draft %s sent without its end: %s", rec.end_id, e)
    return rec.body


class Sender:
    """Makes attempts for outbox rows and records each outcome in the outbox.

    Outbox errors while recording are logged and swallowed: the attempt's result is returned
    either way (the worst case is one more duplicate, with the same webhook-id and body).
    """

    def __init__(
        self,
        outbox: Outbox | None,
        secrets: Sequence[str],
        *,
        owner: str,
        policy: RetryPolicy | None = None,
        timeout: float = 15.0,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        on_delivered: Callable[[str, int], Awaitable[None]] | None = None,
        on_dead: DeadCallback | None = None,
        max_in_flight: int = 256,
    ) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is required to sign reports")
        self.outbox = outbox
        self.secrets = tuple(secrets)
        self.on_dead = on_dead
        self._keys = {key_id(secret): secret for secret in self.secrets}
        self.owner = owner
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.clock: Clock = clock or SystemClock()
        self.on_delivered = on_delivered
        # a bound on concurrent requests; high, because slow receivers hold their slot for up
        # to the timeout and must not hold up the other reports
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._own_client = client is None
        limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=32)
        if client is None and transport is None and not _env_proxies():
            transport = PoolTransport(limits)
        self.client = client or httpx.AsyncClient(
            transport=transport, follow_redirects=False, limits=limits
        )
        # what attempts go through: the bare transport when we own one (the client would add
        # nothing but per-request overhead), else the client (a caller's, or one honouring
        # proxy environment variables)
        self._via: httpx.AsyncClient | httpx.AsyncBaseTransport = (
            transport if client is None and transport is not None else self.client
        )

    async def send(
        self,
        rec: OutboxRecord,
        *,
        keep_lease: float | None = None,
        timeout: float | None = None,
        record: bool = True,
    ) -> tuple[AttemptResult, float | None]:
        """One attempt for ``rec``; returns the result and the next attempt time (None when
        delivered or dead). ``keep_lease``: keep owning the row that long (in-process retries);
        ``record=False``: do not write the outcome to the outbox."""
        secrets = self._secrets_for(rec)
        if not secrets:
            return await self._missing_key(rec, record)
        policy, row_timeout = self._settings(rec)
        if timeout is None:
            timeout = row_timeout
        async with self._in_flight:
            res = await attempt(
                self._via,
                rec.url,
                rec.end_id,
                _body(rec),
                secrets,
                timeout=timeout,
                headers=rec.headers,
                now=self.clock.time(),
            )
        nxt: float | None = None
        if res.outcome == "retry":
            nxt = policy.next_attempt_at(rec.attempts + 1, self.clock.time(), res.retry_after)
            if nxt is None:
                res = AttemptResult(
                    "dead", res.status, f"retries exhausted; last: {res.error}", None, res.elapsed
                )
        if record and self.outbox is not None:
            try:
                await self._record(rec, res, nxt, keep_lease)
            except Exception:
                logger.exception("endcall: could not record attempt for %s", rec.end_id)
        self._count(rec, res)
        if res.outcome == "dead":
            self._dead(rec, res)
        level = logging.DEBUG if res.outcome == "delivered" else logging.WARNING
        logger.log(
            level,
            "endcall report %s attempt %d: %s (%s)",
            rec.end_id,
            rec.attempts + 1,
            res.outcome,
            res.error or res.status,
        )
        return res, nxt

    def _count(self, rec: OutboxRecord, res: AttemptResult) -> None:
        """The attempt and its outcome in the Prometheus metrics (`endcall.reports.metrics`)."""
        metrics.ATTEMPTS.labels(metrics.attempt_result(res.status, res.error)).inc()
        kind = metrics.report_kind(rec.end_id, rec.is_draft)
        if res.outcome == "delivered":
            metrics.DELIVERED.labels(kind).inc()
            age = self.clock.time() - rec.created_at
            metrics.DELIVERY_SECONDS.labels(kind).observe(max(0.0, age))
        elif res.outcome == "dead":
            metrics.DEAD.labels(kind).inc()

    def _secrets_for(self, rec: OutboxRecord) -> tuple[str, ...]:
        """The secrets to sign ``rec`` with: those whose key ids the row names (all of ours
        for a row that names none)."""
        keys = rec.delivery.get("keys") if rec.delivery else None
        if not isinstance(keys, list) or not keys:
            return self.secrets
        return tuple(self._keys[k] for k in keys if k in self._keys)

    def _settings(self, rec: OutboxRecord) -> tuple[RetryPolicy, float]:
        """The retry policy and request timeout for ``rec``: the row's own, else ours."""
        d = rec.delivery or {}
        policy, timeout = self.policy, self.timeout
        schedule, jitter, t = d.get("schedule"), d.get("jitter"), d.get("timeout")
        if (
            isinstance(schedule, list)
            and schedule
            and all(isinstance(x, (int, float)) and 0 <= x < math.inf for x in schedule)
        ):
            j = jitter if isinstance(jitter, (int, float)) and 0 <= jitter < 1 else policy.jitter
            policy = RetryPolicy(
                tuple(float(x) for x in schedule), float(j), policy.max_retry_after, policy.rng
            )
        if isinstance(t, (int, float)) and 0 < t <= MAX_TIMEOUT:
            timeout = float(t)
        return policy, timeout

    async def _missing_key(
        self, rec: OutboxRecord, record: bool
    ) -> tuple[AttemptResult, float | None]:
        keys = ", ".join(str(k) for k in rec.delivery.get("keys", []))
        error = (
            f"no secret for key id {keys}: this sender's secrets ({', '.join(self._keys)}) are"
            " not the ones the agent signs with; give it the agent's ENDCALL_WEBHOOK_SECRET"
            " (and ENDCALL_WEBHOOK_SECRETS)"
        )
        logger.error("endcall: cannot sign report %s: %s", rec.end_id, error)
        metrics.ATTEMPTS.labels("unsigned").inc()
        until = self.clock.time() + MISSING_KEY_DEFER
        if record and self.outbox is not None:
            try:
                await asyncio.to_thread(
                    self.outbox.defer, rec.end_id, self.owner, until=until, error=error
                )
            except Exception:
                logger.exception("endcall: could not defer %s", rec.end_id)
        return AttemptResult("retry", error=error), until

    def _dead(self, rec: OutboxRecord, res: AttemptResult) -> None:
        logger.error(
            "endcall: report %s is dead after %d attempts (last error: %s); replay it with"
            " `endcall outbox replay %s` or `endcall outbox replay --dead`",
            rec.end_id,
            rec.attempts + 1,
            res.error or res.status,
            rec.end_id,
        )
        if self.on_dead is not None:
            try:
                self.on_dead(rec)
            except Exception:
                logger.exception("endcall: the on_dead callback failed for %s", rec.end_id)

    async def _record(
        self, rec: OutboxRecord, res: AttemptResult, nxt: float | None, keep_lease: float | None
    ) -> None:
        assert self.outbox is not None
        if res.outcome == "delivered":
            if self.on_delivered is not None:
                await self.on_delivered(rec.end_id, res.status or 200)
            else:
                await asyncio.to_thread(
                    self.outbox.mark_delivered, rec.end_id, self.owner, res.status or 200
                )
        else:
            await asyncio.to_thread(
                lambda: self.outbox.mark_failed(  # type: ignore[union-attr]
                    rec.end_id,
                    self.owner,
                    dead=res.outcome == "dead",
                    next_attempt_at=nxt if nxt is not None else self.clock.time(),
                    status_code=res.status,
                    error=res.error or "",
                    keep_lease=keep_lease,
                )
            )

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()
