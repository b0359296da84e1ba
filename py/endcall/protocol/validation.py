"""The JSON rules every message obeys: sizes measured as JavaScript measures them, bounded
nesting, no NaN or lone surrogates, and the field checks the codecs share."""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any, NoReturn, cast

from endcall.protocol.constants import (
    _CONTROL_RE,
    _ID_RE,
    _REASON_RE,
    DEFAULT_METHOD,
    MAX_DEPTH,
    MAX_ID_LENGTH,
    MAX_IDENTITY_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_META_BYTES,
    MAX_SAFE_INTEGER,
    SUPPORTED_VERSIONS,
)
from endcall.protocol.messages import (
    ERROR_RPC_CODES,
    ProtocolError,
)

__all__ = [
    "ack_topic",
    "canonical_json",
    "is_valid_id",
    "is_valid_reason",
    "json_size",
    "load_message",
    "nests_deeper_than",
    "rpc_code",
]

_MAX_FINITE = int(sys.float_info.max)


def _js_number(value: int | float) -> str:
    """A number as ECMAScript's Number::toString prints it (what JSON.stringify writes), so that
    both languages measure the same byte sizes. Integers outside +-2^53 are rounded to a double
    first, as JSON.parse does."""
    if isinstance(value, int) and abs(value) <= MAX_SAFE_INTEGER:
        return str(value)
    x = float(value)
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exp_text = repr(abs(x)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # position of the decimal point relative to the first significant digit
    point = (
        len(int_part.lstrip("0"))
        if int_part.strip("0")
        else -(len(frac_part) - len(frac_part.lstrip("0")))
    )
    point += int(exp_text or 0)
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    exponent = n - 1
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def json_size(value: Any) -> int:
    """UTF-8 bytes of `JSON.stringify(value)`: how every sub-object limit (`meta`) is measured."""
    if value is None:
        return 4
    if isinstance(value, bool):
        return 4 if value else 5
    if isinstance(value, (int, float)):
        return len(_js_number(value))
    if isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if isinstance(value, list):
        return 2 + max(0, len(value) - 1) + sum(json_size(v) for v in value)
    if isinstance(value, dict):
        return (
            2
            + max(0, len(value) - 1)
            + sum(json_size(str(k)) + 1 + json_size(v) for k, v in value.items())
        )
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Compact JSON (no spaces, raw UTF-8): the form every size limit is measured in."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def ack_topic(method: str = DEFAULT_METHOD) -> str:
    return f"{method}.ack"


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def is_valid_reason(value: object) -> bool:
    return isinstance(value, str) and _REASON_RE.fullmatch(value) is not None


def rpc_code(code: str) -> int:
    """The RpcError code for a protocol error code (unknown codes map to `internal`)."""
    return ERROR_RPC_CODES.get(code, ERROR_RPC_CODES["internal"])


def _bad(message: str, request_id: str | None = None) -> NoReturn:
    raise ProtocolError("bad_request", message, request_id=request_id)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SUSPECT_RE = re.compile(r"\\u[dD][89a-fA-F]|[eE][+-]?[0-9]{3}|[0-9]{300}")
_STRING_RE = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"')
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]++")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than ``limit`` (the outermost is level 1),
    found by a linear scan of its brackets (those inside strings skipped) before any parser
    recurses, so that no input depth can raise ``RecursionError``. Malformed text may be
    misjudged either way; the parser rejects it after."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET_RE.sub("", _STRING_RE.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


def _may_need_tree_check(text: str) -> bool:
    """Cheap pre-scan: the tree walk only matters when the text could hold a lone surrogate
    escape, a number too large for a double, or more brackets than the depth limit."""
    return _SUSPECT_RE.search(text) is not None or text.count("[") + text.count("{") > MAX_DEPTH


def _check_tree(value: Any) -> None:
    """Reject what JSON.parse and json.loads disagree on: deep nesting, lone surrogate escapes
    (not encodable as UTF-8) and numbers too large to be finite."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                _bad(f"message nests deeper than {MAX_DEPTH} levels")
            children = list(item.values()) if isinstance(item, dict) else item
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                _bad("message contains a lone surrogate escape")
        elif isinstance(item, float) and not math.isfinite(item):
            _bad("message contains a number that is not finite")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > _MAX_FINITE:
            _bad("message contains a number that is not finite")


def _load(
    raw: str | bytes | bytearray | memoryview, limit: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    if isinstance(raw, str):
        if len(raw) > limit:  # every character is at least one UTF-8 byte
            _bad(f"message is over {limit} bytes; the limit is {limit}")
        try:
            size = len(raw.encode("utf-8"))
        except UnicodeEncodeError:
            _bad("message is not valid UTF-8 (lone surrogate)")
        if size > limit:
            _bad(f"message is {size} bytes; the limit is {limit}")
        text = raw
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        if len(data) > limit:
            _bad(f"message is {len(data)} bytes; the limit is {limit}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            _bad("message is not valid UTF-8")
    else:
        _bad(f"message must be str or bytes, not {type(raw).__name__}")
    if nests_deeper_than(text, MAX_DEPTH):
        _bad(f"message nests deeper than {MAX_DEPTH} levels")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        _bad(f"message nests deeper than {MAX_DEPTH} levels")
    except (ValueError, TypeError) as exc:
        _bad(f"message is not valid JSON: {exc}")
    if not isinstance(value, dict):
        _bad("message must be a JSON object")
    if _may_need_tree_check(text):
        _check_tree(value)
    return value


def load_message(
    raw: str | bytes | bytearray | memoryview, limit: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    """A JSON object checked by the rules every message obeys (at most ``limit`` UTF-8 bytes,
    32 levels deep, finite numbers, no lone surrogate, no NaN), before any field is read.

    Raises :class:`ProtocolError` ``bad_request`` and nothing else, whatever the input."""
    return _load(raw, limit)


def _integer(value: Any, name: str, rid: str | None, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _bad(f"{name} must be an integer", rid)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            _bad(f"{name} must be an integer", rid)
        value = int(value)
    if value < minimum or value > MAX_SAFE_INTEGER:
        _bad(f"{name} must be between {minimum} and {MAX_SAFE_INTEGER}", rid)
    return int(value)


def _version(obj: Mapping[str, Any], rid: str | None) -> int:
    if "v" not in obj:
        _bad("v is required", rid)
    v = _integer(obj["v"], "v", rid, minimum=1)
    if v not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(s) for s in SUPPORTED_VERSIONS)
        raise ProtocolError(
            "unsupported_version",
            f"version {v} is not supported; supported versions: {supported}",
            request_id=rid,
        )
    return v


def _type(obj: Mapping[str, Any], expected: str, rid: str | None) -> None:
    if obj.get("type") != expected:
        _bad(f'type must be "{expected}"', rid)


def _id(value: Any, name: str, rid: str | None) -> str:
    if not is_valid_id(value):
        _bad(f"{name} must be 1-{MAX_ID_LENGTH} characters of [A-Za-z0-9_-]", rid)
    return cast(str, value)


def _reason(value: Any, rid: str | None, name: str = "reason") -> str:
    if not is_valid_reason(value):
        _bad(f"{name} must match ^[a-z0-9][a-z0-9.-]{{0,63}}$", rid)
    return cast(str, value)


def _identity(value: Any, name: str, rid: str | None) -> str:
    if not isinstance(value, str) or not value:
        _bad(f"{name} must be a non-empty string", rid)
    if len(value.encode("utf-8")) > MAX_IDENTITY_BYTES:
        _bad(f"{name} must be at most {MAX_IDENTITY_BYTES} bytes", rid)
    if _CONTROL_RE.search(value):
        _bad(f"{name} must not contain control characters", rid)
    return value


def _meta(value: Any, rid: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        _bad("meta must be a JSON object", rid)
    size = json_size(value)
    if size > MAX_META_BYTES:
        _bad(f"meta is {size} bytes serialized; the limit is {MAX_META_BYTES}", rid)
    return value


def _request_id_hint(obj: Mapping[str, Any]) -> str | None:
    rid = obj.get("id")
    return rid if is_valid_id(rid) else None


def _encode_checked(body: dict[str, Any]) -> str:
    try:
        text = canonical_json(body)
    except (ValueError, TypeError) as exc:
        raise ProtocolError("internal", f"message is not serializable: {exc}") from exc
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            "bad_request", f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}"
        )
    return text
