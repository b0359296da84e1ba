"""Secrets offered to a relay that is waiting for them.

`endcall.prewarm()` without a secret cannot start its relay yet; it leaves a starter here
(`wait_for_secrets`). The first `ReportPipeline` of the process offers its `Webhook` (the
README's agent gives its secret in code), which starts that relay (`offer_webhook`). Both
sides import this module and not each other, so the pipeline and the relay stay one-way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from endcall.reports.webhook import Webhook

__all__ = ["Starter", "forget", "offer_webhook", "wait_for_secrets"]

#: starts the waiting relay with a webhook's secrets and the offering pipeline's outbox
Starter = Callable[[Webhook, Any], Any]

_lock = threading.Lock()
_waiting: dict[int, Starter] = {}


def wait_for_secrets(start: Starter) -> None:
    """Leave ``start`` for this process's first `offer_webhook` (a later call replaces it)."""
    with _lock:
        _waiting[os.getpid()] = start


def offer_webhook(webhook: Webhook, outbox: Any = None) -> Any:
    """Start the relay this process is waiting for, if any, with ``webhook``'s secrets; its
    result (the relay) or None. Called once per `ReportPipeline`; only the first offer starts."""
    with _lock:
        start = _waiting.pop(os.getpid(), None)
    return None if start is None else start(webhook, outbox)


def forget() -> None:
    """Drop every waiting starter (tests)."""
    with _lock:
        _waiting.clear()
