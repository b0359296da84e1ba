"""endcall: end LiveKit voice-agent calls correctly and never lose the session report.

The public names are imported lazily, so `endcall.server`, `endcall.protocol` and the CLI start
without loading livekit-agents. Importing the package puts `endcall.reports.redact`'s filter on the
kit's loggers: no connection-string password reaches a log.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from endcall.reports.redact import install as _install_redaction

_install_redaction()

if TYPE_CHECKING:
    from endcall.agent.annotations import ReportMeta
    from endcall.agent.end_call import EndCall
    from endcall.agent.end_machine import EndRecord, EndState
    from endcall.agent.job_config import JobConfig, JobConfigError, dispatch_metadata, job_config
    from endcall.agent.prewarm import prewarm
    from endcall.protocol import EndAck, EndReason, EndRequest, Initiator, ProtocolError
    from endcall.reports.webhook import Webhook
    from endcall.server.tokens import mint_end_token

_EXPORTS = {
    "EndAck": "protocol",
    "EndCall": "agent.end_call",
    "EndReason": "protocol",
    "EndRecord": "agent.end_machine",
    "EndRequest": "protocol",
    "EndState": "agent.end_machine",
    "Initiator": "protocol",
    "JobConfig": "agent.job_config",
    "JobConfigError": "agent.job_config",
    "ProtocolError": "protocol",
    "ReportMeta": "agent.annotations",
    "Webhook": "reports.webhook",
    "dispatch_metadata": "agent.job_config",
    "job_config": "agent.job_config",
    "mint_end_token": "server.tokens",
    "prewarm": "agent.prewarm",
}

__all__ = [
    "EndAck",
    "EndCall",
    "EndReason",
    "EndRecord",
    "EndRequest",
    "EndState",
    "Initiator",
    "JobConfig",
    "JobConfigError",
    "ProtocolError",
    "ReportMeta",
    "Webhook",
    "dispatch_metadata",
    "job_config",
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
