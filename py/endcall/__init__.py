"""endcall: end LiveKit voice-agent calls correctly and never lose the session report.

The public names are imported lazily, so `endcall.server`, `endcall.protocol` and the CLI start
without loading livekit-agents. Importing the package puts `endcall.redact`'s filter on the
kit's loggers: no connection-string password reaches a log.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .redact import install as _install_redaction

_install_redaction()

if TYPE_CHECKING:
    from .endcall import EndCall
    from .machine import EndRecord, EndState
    from .protocol import EndAck, EndReason, EndRequest, Initiator, ProtocolError
    from .relay import prewarm
    from .tokens import mint_end_token
    from .webhook import Webhook

_EXPORTS = {
    "EndAck": "protocol",
    "EndCall": "endcall",
    "EndReason": "protocol",
    "EndRecord": "machine",
    "EndRequest": "protocol",
    "EndState": "machine",
    "Initiator": "protocol",
    "ProtocolError": "protocol",
    "Webhook": "webhook",
    "mint_end_token": "tokens",
    "prewarm": "relay",
}

__all__ = [
    "EndAck",
    "EndCall",
    "EndReason",
    "EndRecord",
    "EndRequest",
    "EndState",
    "Initiator",
    "ProtocolError",
    "Webhook",
    "mint_end_token",
    "prewarm",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'endcall' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
