"""Fixtures of the agent tests: `live`, a real livekit-server for `test_live*.py` (started once
per module, or the one LIVEKIT_URL & co. name; run inside ``scripts/in-netns``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from endcall.testing.livekit_server import ServerInfo, server_for_tests


@pytest.fixture(scope="module")
def live() -> Iterator[ServerInfo]:
    info, started = server_for_tests()
    try:
        yield info
    finally:
        if started is not None:
            started.stop()
