/**
 * When to try a report again (Python's `RetryPolicy` and `parse_retry_after`): `schedule[n]` is
 * the delay before attempt n (0-based), so after `schedule.length` failed attempts the report is
 * dead; non-zero delays get ±jitter; a `Retry-After` (429/503) is honoured, capped at a day.
 */

import { DEFAULT_JITTER, DEFAULT_SCHEDULE } from "./webhook.js";

export class RetryPolicy {
  constructor(
    readonly schedule: readonly number[] = DEFAULT_SCHEDULE,
    readonly jitter: number = DEFAULT_JITTER,
    readonly maxRetryAfter: number = 86400,
    /** uniform in [0, 1) */
    readonly random: () => number = Math.random,
  ) {}

  /** Absolute time (seconds) of the next attempt after `attemptsMade` failures; null if none. */
  nextAttemptAt(attemptsMade: number, now: number, retryAfter: number | null = null): number | null {
    if (attemptsMade >= this.schedule.length) return null;
    let delay = Number(this.schedule[attemptsMade]);
    if (delay > 0 && this.jitter) {
      const lo = 1 - this.jitter;
      const hi = 1 + this.jitter;
      delay *= lo + (hi - lo) * this.random();
    }
    if (retryAfter !== null) delay = Math.max(delay, Math.min(retryAfter, this.maxRetryAfter));
    return now + delay;
  }
}

/** Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date); null if absent or
 * unreadable; 0 for a past date or a negative value. */
export function parseRetryAfter(value: string | null | undefined, now: number): number | null {
  if (!value) return null;
  const v = value.trim();
  let secs: number;
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v) || /^[+-]?(inf|infinity|nan)$/i.test(v)) {
    secs = /nan/i.test(v) ? NaN : /inf/i.test(v) ? (v.startsWith("-") ? -Infinity : Infinity) : Number(v);
  } else {
    const when = Date.parse(v);
    if (Number.isNaN(when)) return null;
    secs = when / 1000 - now;
  }
  if (Number.isNaN(secs) || secs < 0) return 0;
  return secs;
}
