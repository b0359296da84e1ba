"""A delivering process for crash tests: stores and delivers reports until killed.

Usage: sender_proc.py OUTBOX URL SECRET COUNT PREFIX [draft-only]
Prints "STORED <end_id>" after each durable commit (flushed), "DONE" at the end.
With ``draft-only``: checkpoints crash drafts for COUNT sessions, prints "DRAFTED <id>", then
sleeps until killed (a session that crashes before ending).
"""

from __future__ import annotations

import asyncio
import json
import sys

#: the agent's lease here: a killed sender's rows are free this long after its last write
LEASE = 2.0


async def main() -> None:
    from endcall.reports.outbox import SqliteOutbox
    from endcall.reports.pipeline import ReportPipeline
    from endcall.reports.webhook import Webhook

    path, url, secret, count, prefix = sys.argv[1:6]
    mode = sys.argv[6] if len(sys.argv) > 6 else "normal"
    ob = SqliteOutbox(path)
    wh = Webhook(
        url=url,
        secret=secret,
        timeout=0.5,
        schedule=(0, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 1),
        in_process_window=2.0,
    )
    pipe = ReportPipeline(wh, ob, lease=LEASE, lease_margin=1.0)
    if mode == "draft-only":
        for i in range(int(count)):
            end_id = f"{prefix}-{i}"
            doc = {"end_id": end_id, "complete": False, "ended_reason": "agent-crashed"}
            await pipe.save_draft(end_id, json.dumps(doc).encode())
            print("DRAFTED", end_id, flush=True)
        await asyncio.sleep(3600)
        return
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        end_id = f"{prefix}-{i}"
        async with sem:
            draft = {"end_id": end_id, "complete": False, "ended_reason": "agent-crashed"}
            await pipe.save_draft(end_id, json.dumps(draft).encode())
            doc = {"end_id": end_id, "complete": True, "ended_reason": "customer-ended-call"}
            if await pipe.store(end_id, json.dumps(doc).encode()):
                print("STORED", end_id, flush=True)
            await pipe.deliver(end_id)

    await asyncio.gather(*(one(i) for i in range(int(count))))
    await pipe.aclose()
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
