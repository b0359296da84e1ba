"""Run an agent job on the loopback under livekit-agents' own job runner (a test double).

:class:`LoopbackJob` drives ``livekit.agents.ipc.job_proc_lazy_main._JobProc`` — the code a
worker's job process runs — with a :class:`~endcall.testing.LoopbackRoom` instead of a real
room: the entrypoint task; the shutdown future resolved by ``ctx.shutdown()``, by the room's
``disconnected`` event or by :meth:`LoopbackJob.worker_shutdown`; and the real shutdown
sequence (15 s for the entrypoint, ``session.aclose()``, ``on_session_end``, ShuttingDown,
``room.disconnect()``, shutdown callbacks). Only the IPC client is a recorder, and
``ctx.delete_room()`` (a no-op in fake jobs) is routed to ``delete_room`` (for example the real
``livekit.api`` client against :class:`~endcall.testing.RoomServiceDouble`).

It reaches into private attributes of ``_JobProc`` (checked against livekit-agents 1.8.x):
it is test tooling, pinned by the tests that use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import JobContext
from livekit.agents.ipc.job_proc_lazy_main import _JobProc, _ShutdownInfo
from livekit.agents.job import JobAcceptArguments, JobExecutorType, JobProcess, RunningJobInfo
from livekit.agents.utils import shortuuid
from livekit.protocol import agent as agent_proto
from livekit.protocol import models

from endcall.testing.loopback import LoopbackRoom, LoopbackServer

__all__ = ["LoopbackJob"]

Entrypoint = Callable[[JobContext], Awaitable[None]]
SessionEnd = Callable[[JobContext], Awaitable[None]]
DeleteRoom = Callable[[str], Awaitable[None]]


class _IpcRecorder:
    """Stands in for the worker's IPC client: records what the job sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, msg: Any) -> None:
        self.sent.append(msg)


class _NoInference:
    async def do_inference(self, method: str, data: bytes) -> bytes | None:
        raise NotImplementedError("no inference executor in a loopback job")


@dataclass
class LoopbackJob:
    """One agent job on a loopback room. Start it with :meth:`start`."""

    hub: LoopbackServer
    room_name: str
    agent_identity: str
    room: LoopbackRoom
    """The agent's connection (``ctx.room``)."""
    proc: Any
    """The ``_JobProc`` running the job."""
    task: asyncio.Task[None] | None = None
    shutdown_reasons: list[str] = field(default_factory=list)
    """The reason of every ``ctx.shutdown(reason)`` call, in order."""
    deleted_rooms: list[str] = field(default_factory=list)
    """The room of every ``ctx.delete_room()`` call, in order."""
    _partitioned: bool = False

    @property
    def ctx(self) -> JobContext:
        ctx: JobContext = self.proc._job_ctx
        return ctx

    @classmethod
    async def start(
        cls,
        hub: LoopbackServer,
        room_name: str,
        entrypoint: Entrypoint,
        *,
        on_session_end: SessionEnd | None = None,
        agent_identity: str = "agent",
        agent_name: str = "",
        delete_room: DeleteRoom | None = None,
        session_end_timeout: float = 300.0,
        room: LoopbackRoom | None = None,
        metadata: str | Mapping[str, Any] = "",
    ) -> LoopbackJob:
        """Connect the agent (kind AGENT) to ``room_name`` and run ``entrypoint`` as a job.

        ``entrypoint`` and ``on_session_end`` are what a worker is given
        (``WorkerOptions(entrypoint_fnc=..., session_end_fnc=...)``); ``session_end_timeout``
        bounds ``on_session_end`` as in the real runner. ``agent_name`` is the job's dispatch
        name. ``delete_room(name)`` serves ``ctx.delete_room()`` (default: delete the room on
        ``hub``; a missing room is ignored); every call is also recorded in
        :attr:`deleted_rooms`, and every ``ctx.shutdown(reason)`` in :attr:`shutdown_reasons`.

        ``room``: the agent's connection, made beforehand with ``hub.connect(room_name,
        identity, kind=PARTICIPANT_KIND_AGENT)`` — for example so that other participants
        are in the room before the entrypoint runs. Its identity replaces ``agent_identity``.
        By default the job connects ``agent_identity`` itself.

        ``metadata``: the job's metadata (``ctx.job.metadata``), what a dispatch carries;
        a mapping is sent as its JSON text.

        The entrypoint starts running once the caller next yields to the event loop.
        """
        if not isinstance(metadata, str):
            metadata = json.dumps(dict(metadata))
        if room is None:
            room = await hub.connect(
                room_name, agent_identity, kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            )
        elif room.name != room_name:
            raise ValueError(f"room is connected to {room.name!r}, not {room_name!r}")
        else:
            agent_identity = room.local_participant.identity
        proc = _JobProc(
            lambda _p: None,
            entrypoint,
            on_session_end,
            session_end_timeout=session_end_timeout,
            executor_type=JobExecutorType.THREAD,
        )
        job = cls(hub, room_name, agent_identity, room, proc)
        proc._client = _IpcRecorder()  # type: ignore[assignment]
        proc._inf_client = _NoInference()  # type: ignore[assignment]
        proc._job_proc = JobProcess(
            executor_type=JobExecutorType.THREAD, user_arguments=None, http_proxy=None
        )
        proc._exit_proc_flag = asyncio.Event()
        proc._shutdown_fut = asyncio.get_running_loop().create_future()
        proc._entrypoint_span_context = None
        proc._room = room

        # what _JobProc._start_job does, with the loopback room
        def on_room_disconnected(*_: Any) -> None:
            with contextlib.suppress(asyncio.InvalidStateError):
                proc._shutdown_fut.set_result(
                    _ShutdownInfo(user_initiated=False, reason="room disconnected")
                )

        room.on("disconnected", on_room_disconnected)

        def on_ctx_shutdown(reason: str) -> None:
            job.shutdown_reasons.append(reason)
            proc._ctx_shutdown_called = True
            with contextlib.suppress(asyncio.InvalidStateError):
                proc._shutdown_fut.set_result(
                    _ShutdownInfo(user_initiated=True, reason=reason or "user requested")
                )

        info = RunningJobInfo(
            accept_arguments=JobAcceptArguments(identity=agent_identity, name="", metadata=""),
            job=agent_proto.Job(
                id=shortuuid("AJ_"),
                room=models.Room(name=room_name, sid=await room.sid),
                type=agent_proto.JobType.JT_ROOM,
                agent_name=agent_name,
                metadata=metadata,
            ),
            url="",
            token="",
            worker_id="loopback",
            fake_job=True,
        )
        ctx = JobContext(
            proc=proc._job_proc,
            info=info,
            room=room,
            on_connect=lambda: None,
            on_shutdown=on_ctx_shutdown,
            inference_executor=proc._inf_client,
        )
        ctx._connected = True  # the loopback connected the room already
        proc._job_ctx = ctx

        def delete(room_name: str | None = None) -> asyncio.Future[Any]:
            name = room_name or job.room_name
            job.deleted_rooms.append(name)

            async def go() -> None:
                if delete_room is not None:
                    await delete_room(name)
                else:
                    with contextlib.suppress(LookupError):
                        await hub.delete_room(name)

            return asyncio.ensure_future(go())

        ctx.delete_room = delete  # type: ignore[method-assign]
        job.task = asyncio.get_running_loop().create_task(
            proc._run_job_task(), name=f"loopback_job_{room_name}"
        )
        return job

    def worker_shutdown(self, reason: str = "worker draining") -> None:
        """The worker asks the job to stop (what a ShutdownRequest over IPC does)."""
        with contextlib.suppress(asyncio.InvalidStateError):
            self.proc._shutdown_fut.set_result(_ShutdownInfo(user_initiated=False, reason=reason))

    async def finished(self, timeout: float = 120.0) -> None:
        """Wait until the whole job (shutdown sequence included) is over."""
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), timeout)

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    def partition(self) -> None:
        """Cut the agent off the room: RPC requests to it are lost (callers time out), data
        packets to it are dropped, and room events stop reaching it (attribute writes by the
        server API included). Room deletion still reaches it, as a server-side disconnect."""
        if self._partitioned:
            return
        self._partitioned = True
        self.hub.drop_rpc_requests(self.room_name, self.agent_identity)
        me = self.agent_identity

        def keep(sender: str | None, recipient: str, data: bytes, topic: str) -> bool:
            return recipient != me

        self.hub.set_data_filter(keep)
        room = self.room

        def dropped(event: Callable[[], None]) -> None:
            return None

        room._post = dropped  # type: ignore[method-assign]

    def heal(self) -> None:
        """Undo :meth:`partition` for RPC and data (events dropped meanwhile stay lost)."""
        if not self._partitioned:
            return
        self._partitioned = False
        self.hub.drop_rpc_requests(self.room_name, self.agent_identity, drop=False)
        self.hub.set_data_filter(None)
        with contextlib.suppress(AttributeError):
            del self.room._post  # back to the class's method
