/**
 * `Call`: what the parts of one EndCall share — the job context, the session, the machine, the
 * attribute writer and what was learnt about the end along the way (close reason, the room
 * being gone, the job shutting down). Port of Python's `endcall.agent.call`.
 */
import type { EndMachine } from "./machine.js";
import type { AttributeWriter } from "./attributes.js";
import type { JobShutdown } from "./job_lifecycle.js";
import type { JobContextLike, SessionLike } from "./surface.js";
import { Flag } from "./waits.js";

export class Call {
  attrs: AttributeWriter | null = null;
  started = false;
  /** Unix seconds: the session's start (else `EndCall.start()`). */
  startedAt = Date.now() / 1000;
  /** Extra fields of the report's `end` object (`drain_timed_out`, `job_shutdown_reason`…). */
  readonly endInfo: Record<string, unknown> = {};
  /** The session emitted `close`. */
  readonly closed = new Flag();
  closeReason: string | null = null;
  /** The agent is no longer in the room. */
  readonly roomGone = new Flag();
  /** The room's `disconnected` reason (`DisconnectReason` number). */
  disconnectReason: number | null = null;
  jobShutdown: JobShutdown | null = null;
  /** EndCall itself called `ctx.shutdown()`. */
  shutdownRequested = false;

  constructor(
    readonly ctx: JobContextLike,
    readonly session: SessionLike,
    readonly machine: EndMachine,
  ) {}

  get endId(): string {
    return this.machine.endId;
  }

  roomName(): string {
    try {
      const name = this.ctx.room.name || this.ctx.job.room?.name;
      if (name) return name;
    } catch {
      // fall through
    }
    return "unknown";
  }

  roomSid(): string | null {
    try {
      return this.ctx.job.room?.sid || null;
    } catch {
      return null;
    }
  }

  /** The session is closing or closed (nothing to drain, no goodbye). */
  sessionClosing(): boolean {
    if (this.closed.isSet) return true;
    try {
      return Boolean(this.session._closing);
    } catch {
      return false;
    }
  }

  setAttributes(values: Record<string, string>, coalesceMs = 0): void {
    this.attrs?.update(values, coalesceMs);
  }
}
