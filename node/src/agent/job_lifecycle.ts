/**
 * How a `@livekit/agents` 1.9 (Node) job ends, and how EndCall learns that it is ending.
 *
 * The job process (`ipc/job_proc_lazy_main.js`) emits one private `close` event when
 * `ctx.shutdown(reason)` is called, when the room disconnects ("room disconnected"), when the
 * entrypoint rejects ("job crashed") or when the worker sends a `shutdownRequest` (deploy,
 * drain, SIGTERM, server termination). Then, in order: the entrypoint gets 15 s; the primary
 * session is closed with `session.close()` (reason `user_initiated`, no drain, bounded at 60 s);
 * `onSessionEnd(ctx)` (bounded by `ServerOptions.sessionEndTimeout`, 5 min; **skipped when the
 * session close failed or timed out**); `room.disconnect()`; then the shutdown callbacks.
 *
 * Unlike Python there is no shutdown future to watch, and the job's own `session.close()` says
 * `user_initiated` whatever the cause. EndCall learns the cause from three read-only taps:
 * - `ctx.shutdown` (wrapped on the instance): user code calling it;
 * - in a job process (forked `job_proc_lazy_main`), the IPC message listener: the worker's
 *   `shutdownRequest` (it arrives before the job closes the session);
 * - in a job process, `process.send` (wrapped, passing everything through): the job's own
 *   `exiting` message names the close reason — "job crashed" for a rejected entrypoint.
 * Outside a job process (tests, `console` mode) only the first applies; the session's `close`
 * decides the rest.
 */
import type { JobContextLike } from "./surface.js";
import { logger } from "./log.js";

export const ROOM_DISCONNECTED = "room disconnected";
export const JOB_CRASHED = "job crashed";

/** Why the job is shutting down. */
export interface JobShutdown {
  /** User code (or EndCall) called `ctx.shutdown()`. */
  userInitiated: boolean;
  reason: string;
  /** A `shutdownRequest` from the worker (deploy, drain, SIGTERM, server termination). */
  fromWorker: boolean;
  /** The entrypoint rejected ("job crashed"). */
  crashed?: boolean;
}

/** The job process's IPC channel (`process` in a forked job process). */
export interface JobIpc {
  on(event: "message", listener: (msg: unknown) => void): unknown;
  off(event: "message", listener: (msg: unknown) => void): unknown;
  send?: ((message: unknown, ...rest: never[]) => boolean) | undefined;
}

/** Where the IPC channel is found (replaceable in tests). */
export const jobIpc = {
  source(): JobIpc | null {
    const inJobProcess = typeof process.send === "function" && /job_proc_lazy_main/.test(process.argv[1] ?? "");
    return inJobProcess ? (process as unknown as JobIpc) : null;
  },
};

type Msg = { case?: string; value?: { reason?: string } } | null | undefined;

/** Call `callback` when the job starts shutting down; returns the function that stops
 * watching (and restores what it wrapped). */
export function watchJobShutdown(ctx: JobContextLike, callback: (info: JobShutdown) => void): () => void {
  const safe = (info: JobShutdown): void => {
    try {
      callback(info);
    } catch (e) {
      logger.error("job shutdown callback failed", e);
    }
  };
  let userInitiated = false;
  let fromWorker = false;

  // 1. ctx.shutdown, on the instance
  const target = ctx as { shutdown: (reason?: string) => void };
  const original = target.shutdown;
  let wrapped: ((reason?: string) => void) | null = function (reason?: string): void {
    userInitiated = true;
    safe({ userInitiated: true, reason: reason ?? "", fromWorker: false });
    original.call(ctx, reason);
  };
  try {
    target.shutdown = wrapped;
  } catch (e) {
    wrapped = null;
    logger.debug(`could not watch ctx.shutdown: ${String(e)}`);
  }

  // 2. and 3. the job process's IPC
  const ipc = jobIpc.source();
  const onMessage = (msg: unknown): void => {
    const m = msg as Msg;
    if (m?.case === "shutdownRequest" && !fromWorker) {
      fromWorker = true;
      safe({ userInitiated: false, reason: m.value?.reason || "shutdown request", fromWorker: true });
    }
  };
  let originalSend: JobIpc["send"] = undefined;
  let sendWrapper: JobIpc["send"] = undefined;
  if (ipc !== null) {
    ipc.on("message", onMessage);
    originalSend = ipc.send;
    if (typeof originalSend === "function") {
      const send = originalSend;
      sendWrapper = function (this: unknown, message: unknown, ...rest: never[]): boolean {
        try {
          const m = message as Msg;
          if (m?.case === "exiting" && m.value?.reason === JOB_CRASHED && !userInitiated && !fromWorker) {
            safe({ userInitiated: false, reason: JOB_CRASHED, fromWorker: false, crashed: true });
          }
        } catch {
          // never in the way of the job's own messages
        }
        return send.call(ipc, message, ...rest);
      };
      ipc.send = sendWrapper;
    }
  }

  return () => {
    if (ipc !== null) {
      ipc.off("message", onMessage);
      if (sendWrapper !== undefined && ipc.send === sendWrapper) ipc.send = originalSend;
    }
    if (wrapped !== null && target.shutdown === wrapped) {
      try {
        delete (target as { shutdown?: unknown }).shutdown;
        if (target.shutdown !== original) target.shutdown = original;
      } catch {
        // leave it
      }
    }
  };
}
