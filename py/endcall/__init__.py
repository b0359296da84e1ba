"""endcall: end LiveKit voice-agent calls correctly and never lose the session report."""

from __future__ import annotations

from .protocol import EndAck, EndReason, EndRequest, ProtocolError
from .relay import prewarm
from .webhook import Webhook

__all__ = ["EndAck", "EndReason", "EndRequest", "ProtocolError", "Webhook", "prewarm"]
__version__ = "0.1.0"
