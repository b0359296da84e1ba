/**
 * `JobHooks`: what the job's hooks wait for before the job may go. `onSessionEnd`
 * (`EndCall.onSessionEnd` in `defineAgent`, given up to `ServerOptions.sessionEndTimeout`, 5 min
 * by default) and the job's shutdown callback (which the Node job runs *after*
 * `room.disconnect()`; when the worker closes the job, its supervisor kills the process
 * `ServerOptions.shutdownProcessTimeout` — 60 s by default, Python's is 10 s — after the job
 * said ShuttingDown, i.e. after `onSessionEnd`; EndCall takes `SHUTDOWN_CALLBACK_BUDGET_MS`) both: let a running grace run out, end a call still active
 * (`worker-shutdown` / `server-ended-call`), then wait for the end path, the room deletion and
 * the in-process delivery. A job whose `start()` never ran is ended here with `agent-error`.
 * Port of Python's `endcall.agent.job_hooks`.
 */
import type { Call } from "./call.js";
import type { Channels } from "./channels.js";
import type { Presence } from "./customer.js";
import type { Decisions } from "./decisions.js";
import type { EndPath } from "./end_path.js";
import { logger } from "./log.js";
import { NOT_STARTED, NO_SESSION_END } from "./misuse.js";
import type { Signals } from "./room_signals.js";
import { remaining, withTimeout } from "./waits.js";

/** What the shutdown callback may take: the default `shutdownProcessTimeout` (60 s) less a
 * margin for `room.disconnect()` and the process's exit (Python keeps 8 of its 10 s). */
export const SHUTDOWN_CALLBACK_BUDGET_MS = 45_000;

export class JobHooks {
  sessionEndCalled = false;

  constructor(
    private readonly call: Call,
    private readonly path: EndPath,
    private readonly parts: {
      presence: Presence;
      signals: Signals;
      decisions: Decisions;
      channels: () => Channels | null;
      stop: () => void;
    },
  ) {}

  async onSessionEnd(): Promise<void> {
    this.sessionEndCalled = true;
    await this.finish(null);
  }

  async onShutdownCallback(): Promise<void> {
    const deadline = Date.now() + SHUTDOWN_CALLBACK_BUDGET_MS;
    if (!this.sessionEndCalled) logger.error(NO_SESSION_END);
    const call = this.call;
    if (call.jobShutdown === null) {
      call.jobShutdown = { userInitiated: call.shutdownRequested, reason: "", fromWorker: false };
    }
    await this.finish(deadline);
    await this.parts.channels()?.close(500);
    this.parts.stop();
    call.attrs?.close();
  }

  /** Wait for the end path and delivery; `deadline` is epoch ms (null: none). */
  async finish(deadline: number | null): Promise<void> {
    const machine = this.call.machine;
    if (!this.path.isBegun) this.startLate();
    if (machine.held !== null && machine.state === "active") {
      // a tentative end (a grace) is still waiting for a request: let it run out
      await withTimeout(this.parts.presence.settled(), remaining(deadline, this.parts.presence.longestGraceMs + 500));
    }
    this.parts.signals.jobEnding();
    await this.path.finish(deadline);
  }

  /** The job ends and `start()` never ran: build and hand over the report anyway. */
  private startLate(): void {
    logger.error(NOT_STARTED);
    const call = this.call;
    call.started = true;
    const startedAt = call.session._startedAt;
    if (typeof startedAt === "number") call.startedAt = startedAt / 1000;
    this.path.begin();
    if (!call.session._started) call.closed.set(); // not running: nothing to drain or close
    else call.session.on("close", this.parts.signals.onSessionClose);
    this.parts.decisions.trigger("agent-error", "system", "job", { error: NOT_STARTED });
  }
}
