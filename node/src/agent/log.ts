/**
 * The kit's logger: the agents framework's logger (`log()` from `@livekit/agents`, tagged
 * `endcall`) once the worker has initialized it, else the console. Every line starts with
 * `endcall:` like Python's `logging.getLogger("endcall")` lines.
 */
import { log as agentsLog } from "@livekit/agents";

type Level = "debug" | "info" | "warn" | "error";

function emit(level: Level, message: string, extra?: unknown): void {
  const line = `endcall: ${message}`;
  try {
    const logger = agentsLog();
    if (extra === undefined) logger[level](line);
    else logger[level]({ error: extra }, line);
    return;
  } catch {
    // not initialized (tests, scripts): the console
  }
  if (level === "debug") return;
  const fn = level === "error" ? console.error : level === "warn" ? console.warn : console.info;
  if (extra === undefined) fn(line);
  else fn(line, extra);
}

export const logger = {
  debug: (message: string, extra?: unknown) => emit("debug", message, extra),
  info: (message: string, extra?: unknown) => emit("info", message, extra),
  warn: (message: string, extra?: unknown) => emit("warn", message, extra),
  error: (message: string, extra?: unknown) => emit("error", message, extra),
};

/** At most `burst` lines per `windowMs`; then one summary line (a flood of garbage requests
 * cannot flood the logs). */
export class LogLimiter {
  private start = 0;
  private count = 0;
  private dropped = 0;
  constructor(
    private readonly burst = 20,
    private readonly windowMs = 10_000,
  ) {}

  allow(): boolean {
    const now = Date.now();
    if (now - this.start > this.windowMs) {
      if (this.dropped) logger.warn(`${this.dropped} more rejected end requests not logged`);
      this.start = now;
      this.count = 0;
      this.dropped = 0;
    }
    this.count += 1;
    if (this.count <= this.burst) return true;
    this.dropped += 1;
    return false;
  }
}
