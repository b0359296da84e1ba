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
 * Unlike Python there is no shutdown future to watch. EndCall learns of a job shutdown from:
 * `ctx.shutdown` (wrapped on the instance: user code calling it), and the job process's own IPC
 * `shutdownRequest` message (a listener on `process`, read-only), which arrives before the job
 * closes the session. A crashed entrypoint is not observable: the session's `close` then decides
 * (`server-ended-call`).
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
}

/** Call `callback` when the job starts shutting down; returns the function that stops
 * watching (and restores `ctx.shutdown`). */
export function watchJobShutdown(ctx: JobContextLike, callback: (info: JobShutdown) => void): () => void {
  const safe = (info: JobShutdown): void => {
    try {
      callback(info);
    } catch (e) {
      logger.error("job shutdown callback failed", e);
    }
  };
  const target = ctx as { shutdown: (reason?: string) => void };
  const original = target.shutdown;
  let wrapped: ((reason?: string) => void) | null = null;
  try {
    wrapped = function (this: unknown, reason?: string): void {
      safe({ userInitiated: true, reason: reason ?? "", fromWorker: false });
      original.call(ctx, reason);
    };
    target.shutdown = wrapped;
  } catch (e) {
    wrapped = null;
    logger.debug(`could not watch ctx.shutdown: ${String(e)}`);
  }
  const onMessage = (msg: unknown): void => {
    const m = msg as { case?: string; value?: { reason?: string } } | null;
    if (m && m.case === "shutdownRequest") {
      safe({ userInitiated: false, reason: m.value?.reason || "shutdown request", fromWorker: true });
    }
  };
  const inJobProcess = typeof process.send === "function";
  if (inJobProcess) process.on("message", onMessage);
  return () => {
    if (inJobProcess) process.off("message", onMessage);
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
