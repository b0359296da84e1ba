"""`watch_job_shutdown` finds the job's shutdown future on a JobContext built by livekit-agents'
own `_JobProc._start_job` (guards against the private layout changing), and reports each kind
of shutdown as `_JobProc` records it."""

from __future__ import annotations

import asyncio
import contextlib

from livekit.agents.ipc.job_proc_lazy_main import _JobProc, _ShutdownInfo
from livekit.agents.ipc.proto import StartJobRequest
from livekit.agents.job import JobAcceptArguments, JobExecutorType, JobProcess, RunningJobInfo
from livekit.protocol import agent as agent_proto
from livekit.protocol import models

from endcall.agent.job_lifecycle import JobShutdown, watch_job_shutdown


class _Client:
    async def send(self, msg: object) -> None:
        return None


async def _real_job_ctx() -> tuple[_JobProc, asyncio.Event]:
    blocked = asyncio.Event()

    async def entrypoint(ctx: object) -> None:
        await blocked.wait()

    proc = _JobProc(
        lambda _: None,
        entrypoint,
        None,
        session_end_timeout=1.0,
        executor_type=JobExecutorType.THREAD,
    )
    proc._client = _Client()  # type: ignore[assignment]
    proc._inf_client = None  # type: ignore[assignment]
    proc._job_proc = JobProcess(
        executor_type=JobExecutorType.THREAD, user_arguments=None, http_proxy=None
    )
    proc._exit_proc_flag = asyncio.Event()
    proc._shutdown_fut = asyncio.Future()
    proc._entrypoint_span_context = None
    msg = StartJobRequest()
    msg.running_job = RunningJobInfo(
        accept_arguments=JobAcceptArguments(identity="agent", name="", metadata=""),
        job=agent_proto.Job(id="AJ_test", room=models.Room(name="r", sid="RM_x")),
        url="",
        token="",
        worker_id="w",
        fake_job=True,
    )
    proc._start_job(msg)
    return proc, blocked


async def test_finds_the_real_shutdown_future_and_classifies_a_worker_shutdown() -> None:
    proc, blocked = await _real_job_ctx()
    seen: list[JobShutdown] = []
    assert watch_job_shutdown(proc._job_ctx, seen.append)
    proc._shutdown_fut.set_result(_ShutdownInfo(user_initiated=False, reason="draining"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert seen == [JobShutdown(user_initiated=False, reason="draining")]
    assert seen[0].from_worker and not seen[0].room_disconnected
    blocked.set()
    assert proc._job_task is not None
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc._job_task, 20)


async def test_ctx_shutdown_is_user_initiated() -> None:
    proc, blocked = await _real_job_ctx()
    seen: list[JobShutdown] = []
    assert watch_job_shutdown(proc._job_ctx, seen.append)
    proc._job_ctx.shutdown("done")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert seen == [JobShutdown(user_initiated=True, reason="done")]
    assert not seen[0].from_worker
    blocked.set()
    assert proc._job_task is not None
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc._job_task, 20)


def test_room_disconnect_and_crash_are_not_worker_shutdowns() -> None:
    assert JobShutdown(False, "room disconnected").room_disconnected
    assert JobShutdown(False, "job crashed").crashed
    assert not JobShutdown(False, "room disconnected").from_worker
    assert JobShutdown(False, "parent process shutdown").from_worker


def test_not_found_on_other_contexts() -> None:
    class Ctx:
        def _on_shutdown(self, reason: str) -> None:
            return None

    assert not watch_job_shutdown(Ctx(), lambda _: None)
    assert not watch_job_shutdown(object(), lambda _: None)
