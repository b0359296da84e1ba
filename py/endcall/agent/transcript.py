"""`Transcript`: the customer's words that are not in the chat history yet.

An interim transcript still pending when the call ends gets `transcript_flush_timeout` to
become final (`flush`: the STT is asked for its final transcript and the turn is committed
without a reply); final transcripts not yet committed as a user turn (`uncommitted`) are added
to the report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from endcall.agent.waits import settle

__all__ = ["Transcript"]

logger = logging.getLogger("endcall")


class Transcript:
    """Follows the session's `user_input_transcribed` and `conversation_item_added` events."""

    def __init__(self, session: Any, flush_timeout: float) -> None:
        self._session = session
        self.flush_timeout = flush_timeout
        self._interim = ""
        self._uncommitted: list[str] = []
        self._final = asyncio.Event()

    @property
    def uncommitted(self) -> list[str]:
        """Final transcripts not (yet) committed as a user turn, oldest first."""
        return list(self._uncommitted)

    def on_transcribed(self, ev: Any) -> None:
        text = (getattr(ev, "transcript", "") or "").strip()
        if getattr(ev, "is_final", False):
            self._interim = ""
            if text:
                self._uncommitted.append(text)
            self._final.set()
        else:
            self._interim = text

    def on_item_added(self, ev: Any) -> None:
        item = getattr(ev, "item", None)
        if getattr(item, "role", None) == "user":
            self._uncommitted.clear()

    async def flush(self) -> None:
        """Give a pending interim transcript up to `flush_timeout` to become final."""
        session = self._session
        speaking = getattr(session, "user_state", None) == "speaking"
        if not (self._interim or speaking) or self.flush_timeout <= 0:
            return
        self._final.clear()
        deadline = time.monotonic() + self.flush_timeout
        try:
            # ask the STT for its final transcript now (a flush, or trailing silence) and
            # commit the turn without a reply
            fut = session.commit_user_turn(
                transcript_timeout=self.flush_timeout,
                stt_flush_duration=min(2.0, self.flush_timeout),
                skip_reply=True,
            )
            await settle(fut, self.flush_timeout, cancel=False)
        except Exception as e:  # not running: wait for a final transcript below
            logger.debug("endcall: commit_user_turn: %r", e)
        while self._interim or getattr(session, "user_state", None) == "speaking":
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._final.wait(), left)
            except asyncio.TimeoutError:
                break
            self._final.clear()
            if not self._interim:
                break
