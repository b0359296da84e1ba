"""Helpers for the end-to-end tests: load the examples, run ASGI apps on free local ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from endcall.testing.stack import load_example
from endcall.testing.stack import serve as _serve

__all__ = ["load_example", "serve"]


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run ``app`` on uvicorn at 127.0.0.1 on a free port; yields the base URL."""
    served = await _serve(app)
    try:
        yield served.url
    finally:
        await served.stop()
