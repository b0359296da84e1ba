/**
 * Misuse of `EndCall`, detected loudly and survived: wrong options throw (naming the option)
 * before anything else; a second `EndCall` for one job throws; `start()` never called still
 * produces a report at job end (`agent-error`, logged); `onSessionEnd` not wired is logged
 * with the fix when the shutdown callbacks run; an unwritable outbox is an error at `start()`.
 * Port of Python's `endcall.agent.misuse`.
 */
import type { ReportSink } from "../reports/sink.js";
import { logger } from "./log.js";

export const NOT_STARTED =
  "EndCall.start() was never called for this job (call `await endCall.start()` right after" +
  " `await session.start(...)`; an entrypoint that threw before it has the same effect):" +
  " no channel, timer or crash draft was active. The report is built now, at job end";

export const NO_SESSION_END =
  "EndCall.onSessionEnd is not wired: pass `onSessionEnd: EndCall.onSessionEnd` (or" +
  " `EndCall.wrapSessionEnd(yourHook)`) to `defineAgent({...})`. Without it the report's" +
  " delivery only gets the job's shutdown callbacks, after the agent left the room; what is" +
  " left is delivered later by a relay";

export class EndCallMisuseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EndCallMisuseError";
  }
}

export function secondInstance(): EndCallMisuseError {
  return new EndCallMisuseError(
    "an EndCall already exists for this JobContext: create one EndCall per job (two would send" +
      " two reports with different end_ids); use EndCall.of(ctx) to find it",
  );
}

/** An outbox that cannot be written is an error at start-up, not drafts silently skipped. */
export async function checkOutbox(sink: ReportSink): Promise<void> {
  try {
    await sink.check();
  } catch (e) {
    logger.error(e instanceof Error ? e.message : String(e));
  }
}

const SINK_METHODS = ["check", "scope", "saveDraft", "markEnding", "store", "deliver", "close"] as const;

/** `EndCall`'s options: a sink with every method, durations (seconds) that are finite and not
 * negative, a 1-64 character method. Throws `TypeError` / `RangeError` naming the option. */
export function checkOptions(options: {
  sink: unknown;
  method: string;
  seconds: Record<string, number | null | undefined>;
  positive: Record<string, number | null | undefined>;
}): void {
  const sink = options.sink as Record<string, unknown> | null | undefined;
  if (sink === null || sink === undefined || typeof sink !== "object") {
    throw new TypeError("EndCall needs a `sink` (a ReportSink, e.g. a ReportPipeline) for the session report");
  }
  for (const name of SINK_METHODS) {
    if (typeof sink[name] !== "function") throw new TypeError(`sink.${name} must be a function (see ReportSink)`);
  }
  for (const [name, value] of Object.entries(options.seconds)) {
    if (value === null || value === undefined) continue;
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`${name} must be a finite number of seconds >= 0, not ${String(value)}`);
    }
  }
  for (const [name, value] of Object.entries(options.positive)) {
    if (value === null || value === undefined || value === 0) continue;
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`${name} must be a positive number of seconds (or 0/null: off), not ${String(value)}`);
    }
  }
  if (typeof options.method !== "string" || !options.method || options.method.length > 64) {
    throw new RangeError("method must be 1-64 characters");
  }
}
