"""Writes the protocol test vectors (tests/vectors/*.json) from hand-written cases.

Every expectation below is written by hand from protocol.md; nothing here calls a codec.
Run `python tests/vectors/build_vectors.py` after editing a case and commit the JSON.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
LIMIT = 15_360
META_LIMIT = 4_096
REASONS = [
    "customer-ended-call",
    "customer-disconnected",
    "assistant-ended-call",
    "exceeded-max-duration",
    "silence-timed-out",
    "server-ended-call",
    "room-deleted",
    "worker-shutdown",
    "agent-error",
    "agent-crashed",
]


def req(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "end.request", "v": 1, "id": "r1"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def decoded_request(**fields: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "type": "end.request",
        "v": 1,
        "id": "r1",
        "reason": "customer-ended-call",
        "initiator": None,
        "sent_at": None,
        "meta": None,
    }
    value.update(fields)
    return value


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def ok(
    name: str, kind: str, text: str, value: dict[str, Any], origin: str | None = None
) -> dict[str, Any]:
    case: dict[str, Any] = {"name": name, "kind": kind}
    if origin:
        case["origin"] = origin
    case["input"] = text
    case["expect"] = {"ok": True, "value": value}
    return case


def bad(
    name: str, kind: str, text: str | bytes, code: str, origin: str | None = None
) -> dict[str, Any]:
    case: dict[str, Any] = {"name": name, "kind": kind}
    if origin:
        case["origin"] = origin
    if isinstance(text, bytes):
        case["input_b64"] = base64.b64encode(text).decode()
    else:
        case["input"] = text
    case["expect"] = {"ok": False, "code": code}
    return case


def padded_request(total: int) -> str:
    """A valid request of exactly `total` bytes (padding in an unknown field)."""
    base = compact(req(pad=""))
    return compact(req(pad="x" * (total - len(base.encode()))))


def meta_of(size: int) -> dict[str, str]:
    """A meta object whose compact serialization is exactly `size` bytes."""
    empty = len(compact({"k": ""}))
    return {"k": "m" * (size - empty)}


def request_cases() -> list[dict[str, Any]]:
    c: list[dict[str, Any]] = []
    R = "request"
    # minimal and full
    c.append(ok("minimal request, defaults filled", R, compact(req()), decoded_request(), "client"))
    full = req(
        reason="customer-ended-call",
        initiator="candidate-42",
        sent_at=1764000000000,
        meta={"button": "end", "n": 3},
    )
    c.append(
        ok(
            "full request",
            R,
            compact(full),
            decoded_request(
                initiator="candidate-42", sent_at=1764000000000, meta={"button": "end", "n": 3}
            ),
            "client",
        )
    )
    c.append(
        ok(
            "pretty-printed with whitespace",
            R,
            json.dumps(req(), indent=2),
            decoded_request(),
            "client",
        )
    )
    c.append(
        ok(
            "unknown fields are ignored",
            R,
            compact(req(extra={"a": 1}, future=True)),
            decoded_request(),
            "client",
        )
    )
    c.append(
        ok(
            "null optionals mean missing",
            R,
            compact(req(reason=None, initiator=None, sent_at=None, meta=None)),
            decoded_request(),
            "client",
        )
    )
    c.append(
        ok(
            "duplicate keys: last wins",
            R,
            '{"type":"end.request","v":1,"id":"first","id":"second"}',
            decoded_request(id="second"),
            "client",
        )
    )
    c.append(
        ok(
            "duplicate reason keys: last wins",
            R,
            '{"type":"end.request","v":1,"id":"r1","reason":"server-ended-call",'
            '"reason":"customer-tab-closed"}',
            decoded_request(reason="customer-tab-closed"),
            "client",
        )
    )
    # id edges
    c.append(ok("id of 1 char", R, compact(req(id="a")), decoded_request(id="a"), "client"))
    c.append(
        ok("id of 64 chars", R, compact(req(id="A" * 64)), decoded_request(id="A" * 64), "client")
    )
    c.append(
        ok(
            "id with all allowed classes",
            R,
            compact(req(id="aZ09_-")),
            decoded_request(id="aZ09_-"),
            "client",
        )
    )
    c.append(bad("id of 65 chars", R, compact(req(id="A" * 65)), "bad_request", "client"))
    c.append(bad("empty id", R, compact(req(id="")), "bad_request", "client"))
    c.append(bad("id missing", R, compact(req(id=_DROP)), "bad_request", "client"))
    c.append(bad("id null", R, compact(req(id=None)), "bad_request", "client"))
    c.append(bad("id with a space", R, compact(req(id="a b")), "bad_request", "client"))
    c.append(bad("id with a dot", R, compact(req(id="a.b")), "bad_request", "client"))
    c.append(bad("id non-ascii", R, compact(req(id="é")), "bad_request", "client"))
    c.append(bad("id is a number", R, compact(req(id=12)), "bad_request", "client"))
    # type
    c.append(bad("type missing", R, compact(req(type=_DROP)), "bad_request", "client"))
    c.append(bad("wrong type", R, compact(req(type="end.ack")), "bad_request", "client"))
    c.append(bad("type wrong case", R, compact(req(type="End.Request")), "bad_request", "client"))
    # version
    c.append(bad("v missing", R, compact(req(v=_DROP)), "bad_request", "client"))
    c.append(bad("v zero", R, compact(req(v=0)), "bad_request", "client"))
    c.append(bad("v negative", R, compact(req(v=-1)), "bad_request", "client"))
    c.append(bad("v string", R, compact(req(v="1")), "bad_request", "client"))
    c.append(bad("v boolean", R, compact(req(v=True)), "bad_request", "client"))
    c.append(bad("v fraction", R, compact(req(v=1.5)), "bad_request", "client"))
    c.append(bad("v null", R, compact(req(v=None)), "bad_request", "client"))
    c.append(
        ok(
            "v written as 1.0",
            R,
            '{"type":"end.request","v":1.0,"id":"r1"}',
            decoded_request(),
            "client",
        )
    )
    c.append(bad("future version 2", R, compact(req(v=2)), "unsupported_version", "client"))
    c.append(
        bad(
            "future version 99 with unknown shape",
            R,
            compact({"type": "end.request.v99", "v": 99, "whatever": [1]}),
            "unsupported_version",
            "client",
        )
    )
    c.append(
        bad(
            "future version checked before type",
            R,
            compact(req(v=3, type="nope")),
            "unsupported_version",
            "server",
        )
    )
    # reasons
    for reason in REASONS:
        if reason.startswith("customer-"):
            c.append(
                ok(
                    f"client reason {reason}",
                    R,
                    compact(req(reason=reason)),
                    decoded_request(reason=reason),
                    "client",
                )
            )
        else:
            c.append(
                bad(
                    f"client may not send {reason}",
                    R,
                    compact(req(reason=reason)),
                    "bad_request",
                    "client",
                )
            )
        c.append(
            ok(
                f"server reason {reason}",
                R,
                compact(req(reason=reason)),
                decoded_request(reason=reason),
                "server",
            )
        )
    c.append(
        ok(
            "client custom customer- reason",
            R,
            compact(req(reason="customer-tab-closed")),
            decoded_request(reason="customer-tab-closed"),
            "client",
        )
    )
    c.append(
        ok(
            "server custom reason with dots",
            R,
            compact(req(reason="billing.limit-hit")),
            decoded_request(reason="billing.limit-hit"),
            "server",
        )
    )
    c.append(
        bad(
            "client custom reason without customer- prefix",
            R,
            compact(req(reason="billing.limit-hit")),
            "bad_request",
            "client",
        )
    )
    c.append(
        ok(
            "reason of 64 chars",
            R,
            compact(req(reason="a" * 64)),
            decoded_request(reason="a" * 64),
            "server",
        )
    )
    c.append(bad("reason of 65 chars", R, compact(req(reason="a" * 65)), "bad_request", "server"))
    c.append(
        bad(
            "reason upper case",
            R,
            compact(req(reason="Customer-ended-call")),
            "bad_request",
            "client",
        )
    )
    c.append(
        bad("reason starting with dash", R, compact(req(reason="-x")), "bad_request", "server")
    )
    c.append(bad("reason empty", R, compact(req(reason="")), "bad_request", "server"))
    c.append(
        bad(
            "reason with underscore",
            R,
            compact(req(reason="customer_ended")),
            "bad_request",
            "client",
        )
    )
    c.append(bad("reason is a number", R, compact(req(reason=5)), "bad_request", "server"))
    c.append(
        bad(
            "bare customer- prefix is not a reason-compatible client reason",
            R,
            compact(req(reason="customer")),
            "bad_request",
            "client",
        )
    )
    # initiator
    c.append(
        ok(
            "initiator unicode",
            R,
            compact(req(initiator="Zoë 👋")),
            decoded_request(initiator="Zoë 👋"),
            "client",
        )
    )
    c.append(
        ok(
            "initiator of 256 bytes",
            R,
            compact(req(initiator="é" * 128)),
            decoded_request(initiator="é" * 128),
            "client",
        )
    )
    c.append(
        bad(
            "initiator of 257 bytes",
            R,
            compact(req(initiator="é" * 128 + "a")),
            "bad_request",
            "client",
        )
    )
    c.append(bad("initiator empty", R, compact(req(initiator="")), "bad_request", "client"))
    c.append(
        bad("initiator with newline", R, compact(req(initiator="a\nb")), "bad_request", "client")
    )
    c.append(
        bad(
            "initiator is an object",
            R,
            compact(req(initiator={"id": "x"})),
            "bad_request",
            "client",
        )
    )
    # sent_at
    c.append(ok("sent_at zero", R, compact(req(sent_at=0)), decoded_request(sent_at=0), "client"))
    c.append(
        ok(
            "sent_at max safe integer",
            R,
            compact(req(sent_at=2**53 - 1)),
            decoded_request(sent_at=2**53 - 1),
            "client",
        )
    )
    c.append(
        ok(
            "sent_at in exponent form",
            R,
            '{"type":"end.request","v":1,"id":"r1","sent_at":1.764e12}',
            decoded_request(sent_at=1764000000000),
            "client",
        )
    )
    c.append(
        bad(
            "sent_at above max safe integer",
            R,
            '{"type":"end.request","v":1,"id":"r1","sent_at":9007199254740992}',
            "bad_request",
            "client",
        )
    )
    c.append(bad("sent_at negative", R, compact(req(sent_at=-1)), "bad_request", "client"))
    c.append(bad("sent_at fraction", R, compact(req(sent_at=1.5)), "bad_request", "client"))
    c.append(
        bad("sent_at string", R, compact(req(sent_at="1764000000000")), "bad_request", "client")
    )
    c.append(bad("sent_at boolean", R, compact(req(sent_at=False)), "bad_request", "client"))
    # meta
    c.append(ok("meta empty object", R, compact(req(meta={})), decoded_request(meta={}), "client"))
    c.append(
        ok(
            "meta nested",
            R,
            compact(req(meta={"a": {"b": [1, 2, {"c": None}]}})),
            decoded_request(meta={"a": {"b": [1, 2, {"c": None}]}}),
            "client",
        )
    )
    m = meta_of(META_LIMIT)
    c.append(
        ok("meta exactly 4096 bytes", R, compact(req(meta=m)), decoded_request(meta=m), "client")
    )
    c.append(
        bad(
            "meta 4097 bytes",
            R,
            compact(req(meta=meta_of(META_LIMIT + 1))),
            "bad_request",
            "client",
        )
    )
    m_u = {"k": "é" * ((META_LIMIT - len(compact({"k": ""}))) // 2)}
    c.append(
        ok(
            "meta limit counts UTF-8 bytes (4096)",
            R,
            compact(req(meta=m_u)),
            decoded_request(meta=m_u),
            "client",
        )
    )
    m_u2 = {"k": "é" * ((META_LIMIT - len(compact({"k": ""}))) // 2) + "é"}
    c.append(
        bad(
            "meta limit counts UTF-8 bytes (4098)",
            R,
            compact(req(meta=m_u2)),
            "bad_request",
            "client",
        )
    )
    c.append(
        ok(
            "meta measured compact even if sent pretty",
            R,
            json.dumps(req(meta=m), indent=4),
            decoded_request(meta=m),
            "client",
        )
    )
    # numbers are measured as JSON.stringify prints them: 1.0 -> "1" (1 byte), 1e-7 -> "1e-7"
    f_meta = {"f": 1.0, "g": 1e-7, "k": ""}
    f_meta["k"] = "m" * (META_LIMIT - len('{"f":1,"g":1e-7,"k":""}'))
    c.append(
        ok(
            "meta with floats measured as JSON.stringify prints them (4096)",
            R,
            compact(req(meta=f_meta)),
            decoded_request(meta=f_meta),
            "client",
        )
    )
    f_meta2 = dict(f_meta, k=f_meta["k"] + "m")
    c.append(
        bad(
            "meta with floats measured as JSON.stringify prints them (4097)",
            R,
            compact(req(meta=f_meta2)),
            "bad_request",
            "client",
        )
    )
    c.append(
        bad(
            "integer literal too large for a double",
            R,
            '{"type":"end.request","v":1,"id":"r1","x":1' + "0" * 309 + "}",
            "bad_request",
            "client",
        )
    )
    c.append(
        ok(
            "integer literal of 308 digits is finite",
            R,
            '{"type":"end.request","v":1,"id":"r1","x":1' + "0" * 307 + "}",
            decoded_request(),
            "client",
        )
    )
    c.append(bad("meta is an array", R, compact(req(meta=[1])), "bad_request", "client"))
    c.append(bad("meta is a string", R, compact(req(meta="x")), "bad_request", "client"))
    # size
    exact = padded_request(LIMIT)
    assert len(exact.encode()) == LIMIT
    c.append(ok("message exactly 15360 bytes", R, exact, decoded_request(), "client"))
    over = padded_request(LIMIT + 1)
    assert len(over.encode()) == LIMIT + 1
    c.append(bad("message 15361 bytes", R, over, "bad_request", "client"))
    c.append(bad("huge message", R, padded_request(100_000), "bad_request", "client"))
    # JSON and encoding
    c.append(bad("empty input", R, "", "bad_request", "client"))
    c.append(bad("not JSON", R, "end please", "bad_request", "client"))
    c.append(bad("truncated JSON", R, compact(req())[:-1], "bad_request", "client"))
    c.append(bad("trailing garbage", R, compact(req()) + "x", "bad_request", "client"))
    c.append(bad("two objects", R, compact(req()) + compact(req()), "bad_request", "client"))
    c.append(bad("top-level array", R, compact([req()]), "bad_request", "client"))
    c.append(bad("top-level string", R, '"end.request"', "bad_request", "client"))
    c.append(bad("top-level null", R, "null", "bad_request", "client"))
    c.append(
        bad(
            "NaN is not JSON",
            R,
            '{"type":"end.request","v":1,"id":"r1","sent_at":NaN}',
            "bad_request",
            "client",
        )
    )
    c.append(
        bad(
            "Infinity is not JSON",
            R,
            '{"type":"end.request","v":1,"id":"r1","meta":{"x":Infinity}}',
            "bad_request",
            "client",
        )
    )
    c.append(
        bad(
            "number overflowing to infinity",
            R,
            '{"type":"end.request","v":1,"id":"r1","meta":{"x":1e400}}',
            "bad_request",
            "client",
        )
    )
    c.append(
        bad("single quotes", R, "{'type':'end.request','v':1,'id':'r1'}", "bad_request", "client")
    )
    c.append(
        bad(
            "invalid UTF-8 byte",
            R,
            b'{"type":"end.request","v":1,"id":"r1","meta":{"x":"\xff"}}',
            "bad_request",
            "client",
        )
    )
    c.append(
        bad(
            "overlong UTF-8 encoding",
            R,
            b'{"type":"end.request","v":1,"id":"r1","meta":{"x":"\xc0\xaf"}}',
            "bad_request",
            "client",
        )
    )
    c.append(
        bad(
            "UTF-8 encoded surrogate",
            R,
            b'{"type":"end.request","v":1,"id":"r1","meta":{"x":"\xed\xa0\x80"}}',
            "bad_request",
            "client",
        )
    )
    c.append(
        bad(
            "byte-order mark", R, b"\xef\xbb\xbf" + compact(req()).encode(), "bad_request", "client"
        )
    )
    c.append(
        bad(
            "lone surrogate escape",
            R,
            '{"type":"end.request","v":1,"id":"r1","meta":{"x":"\\ud800"}}',
            "bad_request",
            "client",
        )
    )
    c.append(
        ok(
            "paired surrogate escape is fine",
            R,
            '{"type":"end.request","v":1,"id":"r1","initiator":"\\ud83d\\udc4b"}',
            decoded_request(initiator="👋"),
            "client",
        )
    )
    c.append(
        ok(
            "escaped unicode in id",
            R,
            '{"type":"end.request","v":1,"id":"\\u0072\\u0031"}',
            decoded_request(),
            "client",
        )
    )

    # depth
    def nest(n: int) -> Any:
        value: Any = 1
        for _ in range(n):
            value = [value]
        return value

    # meta is level 2, so 30 more arrays inside meta's value reach level 32
    c.append(
        ok(
            "nesting exactly 32 levels",
            R,
            compact(req(meta={"d": nest(30)})),
            decoded_request(meta={"d": nest(30)}),
            "client",
        )
    )
    c.append(
        bad("nesting 33 levels", R, compact(req(meta={"d": nest(31)})), "bad_request", "client")
    )
    deep = '{"type":"end.request","v":1,"id":"r1","meta":{"d":' + "[" * 5000 + "]" * 5000 + "}}"
    c.append(
        bad("nesting 5000 levels (RecursionError in Python)", R, deep, "bad_request", "client")
    )
    c.append(bad("unbalanced deep nesting", R, "[" * 15000, "bad_request", "client"))
    return c


def ack_cases() -> list[dict[str, Any]]:
    A = "ack"
    base = {
        "type": "end.ack",
        "v": 1,
        "id": "r1",
        "status": "accepted",
        "end_id": "e1",
        "reason": "customer-ended-call",
        "drain_ms": 12000,
    }

    def ack(**fields: Any) -> dict[str, Any]:
        body = dict(base)
        body.update(fields)
        return {k: v for k, v in body.items() if v is not _DROP}

    c: list[dict[str, Any]] = []
    for status in ("accepted", "already_ending", "already_ended"):
        c.append(ok(f"ack {status}", A, compact(ack(status=status)), ack(status=status)))
    c.append(
        ok(
            "ack effective reason differs from request",
            A,
            compact(ack(status="already_ending", reason="assistant-ended-call")),
            ack(status="already_ending", reason="assistant-ended-call"),
        )
    )
    c.append(ok("ack drain_ms zero", A, compact(ack(drain_ms=0)), ack(drain_ms=0)))
    c.append(ok("ack unknown field ignored", A, compact(ack(x=1)), ack()))
    c.append(bad("ack unknown status", A, compact(ack(status="ok")), "bad_request"))
    c.append(bad("ack missing end_id", A, compact(ack(end_id=_DROP)), "bad_request"))
    c.append(bad("ack bad end_id", A, compact(ack(end_id="e 1")), "bad_request"))
    c.append(bad("ack missing drain_ms", A, compact(ack(drain_ms=_DROP)), "bad_request"))
    c.append(bad("ack negative drain_ms", A, compact(ack(drain_ms=-5)), "bad_request"))
    c.append(bad("ack drain_ms string", A, compact(ack(drain_ms="5")), "bad_request"))
    c.append(bad("ack missing reason", A, compact(ack(reason=_DROP)), "bad_request"))
    c.append(bad("ack wrong type", A, compact(ack(type="end.request")), "bad_request"))
    c.append(bad("ack future version", A, compact(ack(v=2)), "unsupported_version"))
    c.append(bad("ack is not JSON", A, "ok", "bad_request"))
    return c


def error_cases() -> list[dict[str, Any]]:
    E = "error"
    base = {
        "type": "end.error",
        "v": 1,
        "id": "r1",
        "code": "forbidden",
        "message": "only the customer may end this call",
    }

    def err(**fields: Any) -> dict[str, Any]:
        body = dict(base)
        body.update(fields)
        return {k: v for k, v in body.items() if v is not _DROP}

    c: list[dict[str, Any]] = []
    for code in ("bad_request", "forbidden", "unsupported_version", "internal"):
        c.append(ok(f"error {code}", E, compact(err(code=code)), err(code=code)))
    # protocol.md §5: the agent's refusal of a server-channel request, as the value of its
    # `endcall.error` attribute (the fallback server matches `id` and answers 403)
    refusal = err(id="r_beacon", message="only the customer may end this call")
    c.append(
        ok(
            "error as the endcall.error attribute (refused server request)",
            E,
            compact(refusal),
            refusal,
        )
    )
    c.append(ok("error with null id", E, compact(err(id=None)), err(id=None)))
    c.append(ok("error with missing id", E, compact(err(id=_DROP)), err(id=None)))
    c.append(
        ok(
            "error with unknown future code",
            E,
            compact(err(code="rate_limited")),
            err(code="rate_limited"),
        )
    )
    c.append(
        ok(
            "error message of 1024 chars",
            E,
            compact(err(message="x" * 1024)),
            err(message="x" * 1024),
        )
    )
    c.append(bad("error message of 1025 chars", E, compact(err(message="x" * 1025)), "bad_request"))
    c.append(bad("error code with capitals", E, compact(err(code="Forbidden")), "bad_request"))
    c.append(bad("error code missing", E, compact(err(code=_DROP)), "bad_request"))
    c.append(bad("error message missing", E, compact(err(message=_DROP)), "bad_request"))
    c.append(bad("error future version", E, compact(err(v=7)), "unsupported_version"))
    return c


def report_cases() -> list[dict[str, Any]]:
    P = "report"
    base: dict[str, Any] = {
        "type": "session.ended",
        "v": 1,
        "end_id": "e_1",
        "ended_reason": "customer-ended-call",
        "initiator": {"kind": "customer", "identity": "cand-1"},
        "request_id": "r1",
        "meta": {"button": "end"},
        "annotations": {"test_id": "t-42", "company_id": "c-7"},
        "annotations_source": "signed",
        "room": {"name": "interview-1", "sid": "RM_x"},
        "job_id": "AJ_1",
        "agent_name": "interview-agent",
        "started_at": 1764000000.0,
        "ended_at": 1764000600.5,
        "duration_s": 600.5,
        "complete": True,
        "usage": {"llm_prompt_tokens": 10},
        "end": {"channel": "rpc"},
        "session": {"chat_history": {"items": []}},
    }

    def rep(**fields: Any) -> dict[str, Any]:
        body = json.loads(json.dumps(base))
        body.update(fields)
        return {k: v for k, v in body.items() if v is not _DROP}

    c: list[dict[str, Any]] = []
    c.append(ok("report complete", P, compact(rep()), rep()))
    crash = rep(
        ended_reason="agent-crashed",
        complete=False,
        request_id=None,
        meta=None,
        initiator={"kind": "system", "identity": None},
    )
    c.append(ok("report crash draft", P, compact(crash), crash))
    c.append(ok("report duration recomputed from timestamps", P, compact(rep(duration_s=1)), rep()))
    # what an agent sends for text it could not encode (a lone surrogate in its memory):
    # `endcall.protocol.report.wire_utf8` writes U+FFFD, never the escape receivers refuse
    unencodable = rep(
        meta={"note": "half \ufffd pair"},
        session={"chat_history": {"items": [{"content": ["hi \ufffd there"]}]}},
    )
    c.append(
        ok(
            "report text the agent could not encode arrives as U+FFFD",
            P,
            compact(unencodable),
            unencodable,
        )
    )
    c.append(
        bad(
            "report with a lone surrogate escape",
            P,
            compact(rep(meta={"note": "PLACEHOLDER"})).replace("PLACEHOLDER", "half \\ud800 pair"),
            "bad_request",
        )
    )
    minimal = rep(
        request_id=_DROP,
        meta=_DROP,
        annotations=_DROP,
        annotations_source=_DROP,
        job_id=_DROP,
        agent_name=_DROP,
        usage=_DROP,
        end=_DROP,
        session=_DROP,
        room={"name": "interview-1"},
        initiator={"kind": "agent"},
    )
    c.append(
        ok(
            "report minimal",
            P,
            compact(minimal),
            rep(
                request_id=None,
                meta=None,
                annotations={},
                annotations_source="unsigned",
                job_id=None,
                agent_name=None,
                usage={},
                end={},
                session={},
                room={"name": "interview-1", "sid": None},
                initiator={"kind": "agent", "identity": None},
            ),
        )
    )
    c.append(
        ok(
            "report annotations null means none",
            P,
            compact(rep(annotations=None)),
            rep(annotations={}),
        )
    )
    at_limit = {"k": "x" * (META_LIMIT - len('{"k":""}'))}
    c.append(
        ok(
            "report annotations of 4096 bytes",
            P,
            compact(rep(annotations=at_limit)),
            rep(annotations=at_limit),
        )
    )
    over = {"k": "x" * (META_LIMIT + 1 - len('{"k":""}'))}
    c.append(
        bad("report annotations of 4097 bytes", P, compact(rep(annotations=over)), "bad_request")
    )
    c.append(
        bad(
            "report annotations not an object", P, compact(rep(annotations=["t-42"])), "bad_request"
        )
    )
    # §6: where the annotations came from; a report that does not say is "unsigned"
    for source in ("code", "unsigned"):
        c.append(
            ok(
                f"report annotations_source {source}",
                P,
                compact(rep(annotations_source=source)),
                rep(annotations_source=source),
            )
        )
    c.append(
        ok(
            "report annotations_source missing means unsigned",
            P,
            compact(rep(annotations_source=_DROP)),
            rep(annotations_source="unsigned"),
        )
    )
    c.append(
        ok(
            "report annotations_source null means unsigned",
            P,
            compact(rep(annotations_source=None)),
            rep(annotations_source="unsigned"),
        )
    )
    for name, value in (("unknown", "trusted"), ("capitalised", "Signed"), ("not a string", True)):
        c.append(
            bad(
                f"report annotations_source {name}",
                P,
                compact(rep(annotations_source=value)),
                "bad_request",
            )
        )
    c.append(
        bad(
            "report unknown initiator kind",
            P,
            compact(rep(initiator={"kind": "robot", "identity": None})),
            "bad_request",
        )
    )
    c.append(bad("report ended before it started", P, compact(rep(ended_at=1.0)), "bad_request"))
    c.append(bad("report complete not boolean", P, compact(rep(complete="yes")), "bad_request"))
    c.append(bad("report missing room", P, compact(rep(room=_DROP)), "bad_request"))
    c.append(bad("report bad end_id", P, compact(rep(end_id="no spaces")), "bad_request"))
    c.append(bad("report future version", P, compact(rep(v=2)), "unsupported_version"))
    ended = rep(
        ended_reason="server-ended-call",
        complete=False,
        request_id="r9",
        meta={"by": "backend"},
        initiator={"kind": "server", "identity": None},
    )
    c.append(ok("report crash draft after an accepted end", P, compact(ended), ended))
    # which of two reports of one session a receiver keeps (protocol.md §6): `input` arrives
    # while `stored` is kept; the value says whether `input` replaces it
    S = "supersede"

    def pair(name: str, incoming: dict[str, Any], stored: dict[str, Any], value: bool) -> None:
        case = ok(name, S, compact(incoming), value)  # type: ignore[arg-type]
        case["stored"] = compact(stored)
        c.append(case)

    final = rep()
    pair("supersede: the final report replaces the crash draft", final, crash, True)
    pair("supersede: a crash draft never replaces the final report", crash, final, False)
    pair("supersede: the final report replaces a draft of an accepted end", final, ended, True)
    pair("supersede: a repeat of the final report changes nothing", final, final, False)
    pair("supersede: a repeat of the crash draft changes nothing", crash, crash, False)
    other = bad(
        "supersede: reports of different sessions", S, compact(rep(end_id="e_2")), "bad_request"
    )
    other["stored"] = compact(final)
    c.append(other)
    return c


def missing_cases() -> list[dict[str, Any]]:
    """`session.missing` (protocol.md §7); every expectation is written out by hand."""
    agent = {
        "identity": "agent-AJ_1",
        "sid": "PA_agent",
        "kind": "agent",
        "joined_at": 1764000001.5,
        "left_at": 1764000002,
    }
    customer = {
        "identity": "candidate-42",
        "sid": "PA_cust",
        "kind": "standard",
        "joined_at": 1764000001,
        "left_at": 1764000030.25,
    }
    never = {
        "type": "session.missing",
        "v": 1,
        "room": {"name": "interview-7", "sid": "RM_abc123"},
        "cause": "agent-never-joined",
        "agent_joined": False,
        "started_at": 1764000000,
        "finished_at": 1764000050.5,
        "detected_at": 1764000080,
        "participants": [customer],
    }
    noreport = dict(never, cause="no-report-from-agent", agent_joined=True)
    noreport["participants"] = [customer, agent]
    c: list[dict[str, Any]] = [
        ok("agent never joined", "missing", compact(never), dict(never)),
        ok("no report from the agent", "missing", compact(noreport), dict(noreport)),
        ok(
            "defaults: no participants, unknown start, unknown fields dropped",
            "missing",
            compact(
                {
                    "type": "session.missing",
                    "v": 1,
                    "room": {"name": "r", "sid": "RM_1", "extra": 1},
                    "cause": "agent-never-joined",
                    "agent_joined": False,
                    "finished_at": 5,
                    "detected_at": 6,
                    "future": True,
                }
            ),
            {
                "type": "session.missing",
                "v": 1,
                "room": {"name": "r", "sid": "RM_1"},
                "cause": "agent-never-joined",
                "agent_joined": False,
                "started_at": None,
                "finished_at": 5,
                "detected_at": 6,
                "participants": [],
            },
        ),
        ok(
            "a future cause is accepted; participant optionals null",
            "missing",
            compact(
                {
                    "type": "session.missing",
                    "v": 1,
                    "room": {"name": "r", "sid": "RM_1"},
                    "cause": "ledger-gap",
                    "agent_joined": True,
                    "started_at": None,
                    "finished_at": 5,
                    "detected_at": 6,
                    "participants": [{"identity": "x", "kind": "sip"}],
                }
            ),
            {
                "type": "session.missing",
                "v": 1,
                "room": {"name": "r", "sid": "RM_1"},
                "cause": "ledger-gap",
                "agent_joined": True,
                "started_at": None,
                "finished_at": 5,
                "detected_at": 6,
                "participants": [
                    {
                        "identity": "x",
                        "sid": None,
                        "kind": "sip",
                        "joined_at": None,
                        "left_at": None,
                    }
                ],
            },
        ),
    ]

    def broken(name: str, code: str = "bad_request", **changes: Any) -> None:
        doc: dict[str, Any] = json.loads(json.dumps(never))
        for k, v in changes.items():
            if v is _DROP:
                doc.pop(k, None)
            else:
                doc[k] = v
        c.append(bad(name, "missing", compact(doc), code))

    broken("wrong type", type="session.ended")
    broken("a report version from the future", "unsupported_version", v=2)
    broken("room sid missing", room={"name": "r"})
    broken("room sid null", room={"name": "r", "sid": None})
    broken("room name empty", room={"name": "", "sid": "RM_1"})
    broken("cause missing", cause=_DROP)
    broken("cause not a reason", cause="Agent Never Joined")
    broken("agent_joined not a boolean", agent_joined=0)
    broken("agent-never-joined with an agent", agent_joined=True)
    broken("no-report-from-agent without an agent", cause="no-report-from-agent")
    broken("finished_at missing", finished_at=_DROP)
    broken("finished before started", finished_at=1763999999)
    broken("detected_at a string", detected_at="1764000080")
    broken("participants an object", participants={"identity": "x"})
    broken("participant without identity", participants=[{"kind": "standard"}])
    broken("participant kind uppercase", participants=[dict(customer, kind="AGENT")])
    broken("participant left before joining", participants=[dict(customer, left_at=1)])
    broken(
        "participant identity with a control character",
        participants=[dict(customer, identity="a\nb")],
    )
    c.append(bad("not an object", "missing", "[1]", "bad_request"))
    return c


def main() -> None:
    files = {
        "request.json": request_cases(),
        "ack.json": ack_cases(),
        "error.json": error_cases(),
        "report.json": report_cases(),
        "missing.json": missing_cases(),
    }
    total = 0
    for name, cases in files.items():
        names = [c["name"] for c in cases]
        assert len(names) == len(set(names)), f"duplicate names in {name}"
        (HERE / name).write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
        total += len(cases)
    print(f"wrote {total} cases")


if __name__ == "__main__":
    main()
