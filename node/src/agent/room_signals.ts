/**
 * `Signals`: what the room, the job and the session say about the end, as triggers.
 *
 * - the agent disconnected from the room: `room-deleted` (tentative) when the room was deleted,
 *   the held end (else `customer-disconnected`) when the room closed, else `agent-error`;
 * - the job shuts down (`job_lifecycle`): `server-ended-call` when user code called
 *   `ctx.shutdown()`, `agent-error` when the entrypoint crashed, else `worker-shutdown`
 *   (tentative);
 * - the session closed: `agent-error` on an error, the customer leaving when RoomIO closed it
 *   (`participant_disconnected`), `worker-shutdown` when the job closed it for the worker, else
 *   `server-ended-call` (user code closed it — or the job did for a reason EndCall could not
 *   see: Node's job closes the session with `user_initiated`); while a tentative end is held,
 *   the close is its consequence and decides nothing;
 * - the job's hooks run while the call is still active (`jobEnding`).
 *
 * Once the call is no longer active they only add details. Port of Python's
 * `endcall.agent.room_signals`.
 */
import { DisconnectReason } from "@livekit/rtc-node";
import type { Call } from "./call.js";
import { disconnectReasonName, type Presence } from "./customer.js";
import type { Decisions } from "./decisions.js";
import type { JobShutdown } from "./job_lifecycle.js";
import { logger } from "./log.js";

/** A session error as `type: detail` (at most 1,000 characters). */
export function describeError(error: unknown): string | null {
  if (error === null || error === undefined) return null;
  const e = error as { type?: unknown; error?: unknown; message?: unknown };
  const kind = typeof e.type === "string" ? e.type : error instanceof Error ? error.name : typeof error;
  const inner = e.error ?? (error instanceof Error ? error.message : error);
  const detail = inner instanceof Error ? inner.message : typeof inner === "string" ? inner : safeJson(inner);
  return `${kind}: ${detail}`.slice(0, 1000);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

export class Signals {
  constructor(
    private readonly call: Call,
    private readonly decisions: Decisions,
    private readonly presence: Presence,
  ) {}

  readonly onRoomDisconnected = (reason?: number): void => {
    try {
      const call = this.call;
      const name = disconnectReasonName(reason ?? null);
      call.disconnectReason = reason ?? null;
      call.roomGone.set();
      if (call.machine.state !== "active") return;
      if (reason === DisconnectReason.ROOM_DELETED) {
        this.presence.systemEnd("room-deleted", "server", "room", name);
      } else if (reason === DisconnectReason.ROOM_CLOSED || call.machine.held !== null) {
        this.presence.roomClosed(name);
      } else {
        this.decisions.trigger("agent-error", "system", "room", {
          error: `the agent was disconnected from the room (${name})`,
          disconnectReason: name,
        });
      }
    } catch (e) {
      logger.error("room disconnected handler failed", e);
    }
  };

  readonly onJobShutdown = (info: JobShutdown): void => {
    const call = this.call;
    if (call.jobShutdown === null || info.fromWorker || info.crashed) call.jobShutdown = info;
    if (!("job_shutdown_reason" in call.endInfo)) call.endInfo["job_shutdown_reason"] = info.reason;
    if (call.machine.state !== "active") return;
    if (info.userInitiated) {
      if (!call.shutdownRequested) this.decisions.trigger("server-ended-call", "server", "job");
    } else if (info.crashed) {
      this.decisions.trigger("agent-error", "system", "job", { error: "job crashed" });
    } else {
      this.presence.systemEnd("worker-shutdown", "system", "job", null);
    }
  };

  readonly onSessionClose = (ev: { reason?: unknown; error?: unknown }): void => {
    try {
      const call = this.call;
      const value = ev?.reason === undefined || ev?.reason === null ? null : String(ev.reason);
      call.closeReason = value;
      call.closed.set();
      const error = ev?.error ?? null;
      if (call.machine.state !== "active") {
        if (error !== null) call.machine.note({ error: describeError(error) });
        return;
      }
      if (value === "error" || error !== null) {
        this.decisions.trigger("agent-error", "system", "session", { error: describeError(error) });
      } else if (call.machine.held !== null && value !== "participant_disconnected") {
        return; // a tentative end waits out its grace; this close is its consequence
      } else if (value === "participant_disconnected") {
        this.presence.customerLeft(this.presence.customer, "session", null);
      } else if (value === "job_shutdown" || call.jobShutdown?.fromWorker) {
        this.presence.systemEnd("worker-shutdown", "system", "session", null);
      } else {
        this.decisions.trigger("server-ended-call", "server", "session");
      }
    } catch (e) {
      logger.error("session close handler failed", e);
    }
  };

  /** The job's hooks run and nothing ended the call yet. */
  jobEnding(): void {
    if (this.call.machine.state !== "active") return;
    if (this.call.jobShutdown?.fromWorker) this.decisions.trigger("worker-shutdown", "system", "job");
    else this.decisions.trigger("server-ended-call", "server", "job");
  }
}
