"""Writes the signing vectors (tests/vectors/signing/signature.json) of protocol.md §6.

The expected `webhook-signature` values are computed here straight from the Standard Webhooks
construction — HMAC-SHA256 over ``webhook-id.webhook-timestamp.body`` keyed with the base64
after ``whsec_``, ``v1,<base64>`` per secret, space separated — with the standard library only,
never with the kit's signer or the `standardwebhooks` package. The Python sender
(tests/protocol/test_signing_vectors.py) and the Node one (node/test/reports/
signing_vectors.test.ts) must produce exactly these. Run
`python tests/vectors/build_signing_vectors.py` after editing a case and commit the JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "signing" / "signature.json"
KEY_A = "whsec_" + base64.b64encode(bytes(range(32))).decode()
KEY_B = "whsec_" + base64.b64encode(b"endcall signing vector key two!!").decode()


def signature(webhook_id: str, timestamp: int, body: bytes, secrets: list[str]) -> str:
    sigs = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        sigs.append("v1," + base64.b64encode(digest).decode())
    return " ".join(sigs)


def case(
    name: str, webhook_id: str, timestamp: int, body: bytes, secrets: list[str]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "webhook_id": webhook_id, "timestamp": timestamp}
    try:
        doc["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        doc["body_b64"] = base64.b64encode(body).decode()
    doc["secrets"] = secrets
    doc["signature"] = signature(webhook_id, timestamp, body, secrets)
    return doc


def cases() -> list[dict[str, Any]]:
    report = b'{"type":"session.ended","v":1,"end_id":"e_0123456789abcdef"}'
    return [
        case("final report, one secret", "e_0123456789abcdef", 1_765_000_000, report, [KEY_A]),
        case("crash draft id", "e_0123456789abcdef.draft", 1_765_000_000, report, [KEY_A]),
        case(
            "non-ASCII body signed as its UTF-8 bytes",
            "e_x",
            1_765_000_001,
            '{"text":"Grüße, 面接 👋"}'.encode(),
            [KEY_A],
        ),
        case(
            "rotation: one signature per secret, in order",
            "e_x",
            1_765_000_002,
            report,
            [KEY_A, KEY_B],
        ),
        case(
            "a body that is not UTF-8 is signed over its raw bytes",
            "e_x",
            1_765_000_003,
            b'{"text":"\xff\xfe"}',
            [KEY_B],
        ),
        case("empty object", "e_y", 0, b"{}", [KEY_B]),
    ]


def main() -> None:
    OUT.parent.mkdir(exist_ok=True)
    all_cases = cases()
    OUT.write_text(json.dumps(all_cases, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(all_cases)} signing cases to {OUT}")


if __name__ == "__main__":
    main()
