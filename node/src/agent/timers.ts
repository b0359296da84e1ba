/**
 * `maxDuration` and `silenceTimeout`. `MaxDurationTimer` fires once, that long after
 * `EndCall.start()`. `SilenceWatcher` fires once the customer has not spoken for
 * `silenceTimeout`, counted from the start or the end of their last speech (the session's
 * `user_state` being `speaking`, and any user transcript, count as speech; the agent's own
 * speech does not; `userAwayTimeout`'s "away" changes nothing). `CallTimers` starts both,
 * logging conflicting settings, and cancels both once ending. Port of Python's
 * `endcall.agent.timers` and `endcall.agent.silence`.
 */
import { logger } from "./log.js";
import type { SessionLike } from "./surface.js";

export class MaxDurationTimer {
  private handle: ReturnType<typeof setTimeout> | null = null;
  constructor(
    readonly ms: number,
    private readonly fire: () => void,
  ) {
    if (!(ms > 0)) throw new RangeError("maxDuration must be > 0");
  }
  start(): void {
    if (this.handle === null) this.handle = setTimeout(this.fire, this.ms);
  }
  cancel(): void {
    if (this.handle !== null) clearTimeout(this.handle);
  }
}

/** The session's `userAwayTimeout` in seconds (null: off or unknown). */
export function userAwayTimeout(session: SessionLike): number | null {
  try {
    const v = session.sessionOptions?.userAwayTimeout;
    return typeof v === "number" ? v : null;
  } catch {
    return null;
  }
}

/** Human-readable warnings for settings that conflict with `silenceTimeout` (seconds). */
export function silenceConflicts(
  silenceTimeout: number,
  maxDuration: number | null,
  awayAfter: number | null,
): string[] {
  const out: string[] = [];
  if (maxDuration !== null && maxDuration <= silenceTimeout) {
    out.push(
      `silenceTimeout (${silenceTimeout}s) is not shorter than maxDuration (${maxDuration}s): the call always ends on maxDuration first`,
    );
  }
  if (awayAfter !== null && awayAfter >= silenceTimeout) {
    out.push(
      `silenceTimeout (${silenceTimeout}s) is not longer than the session's userAwayTimeout (${awayAfter}s): ` +
        "the call ends on silence before the session ever marks the customer away, so away handling never runs",
    );
  }
  return out;
}

export class SilenceWatcher {
  private handle: ReturnType<typeof setTimeout> | null = null;
  private speaking = false;
  private started = false;

  constructor(
    private readonly session: SessionLike,
    readonly ms: number,
    private readonly fire: () => void,
  ) {
    if (!(ms > 0)) throw new RangeError("silenceTimeout must be > 0");
  }

  /** Whether a countdown is running (not while the customer speaks / after cancel). */
  get armed(): boolean {
    return this.handle !== null;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.session.on("user_state_changed", this.onUserState);
    this.session.on("user_input_transcribed", this.onTranscript);
    let state: string | undefined;
    try {
      state = this.session.userState;
    } catch {
      state = undefined;
    }
    this.speaking = state === "speaking";
    if (!this.speaking) this.arm();
  }

  cancel(): void {
    if (this.started) {
      this.started = false;
      try {
        this.session.off("user_state_changed", this.onUserState);
        this.session.off("user_input_transcribed", this.onTranscript);
      } catch {
        // not registered
      }
    }
    this.disarm();
  }

  private readonly onUserState = (ev: { newState?: string }): void => {
    if (!this.started) return;
    if (ev?.newState === "speaking") {
      this.speaking = true;
      this.disarm();
    } else if (this.speaking) {
      this.speaking = false;
      this.arm();
    }
  };

  private readonly onTranscript = (): void => {
    if (this.started && !this.speaking) this.arm();
  };

  private arm(): void {
    this.disarm();
    this.handle = setTimeout(() => {
      this.handle = null;
      this.fire();
    }, this.ms);
  }

  private disarm(): void {
    if (this.handle !== null) clearTimeout(this.handle);
    this.handle = null;
  }
}

/** `maxDuration` and `silenceTimeout` of one call (either may be off). */
export class CallTimers {
  readonly maxDuration: MaxDurationTimer | null;
  readonly silence: SilenceWatcher | null;

  constructor(
    private readonly session: SessionLike,
    options: {
      maxDurationMs: number | null;
      silenceTimeoutMs: number | null;
      onMaxDuration: () => void;
      onSilence: () => void;
    },
  ) {
    this.maxDuration = options.maxDurationMs ? new MaxDurationTimer(options.maxDurationMs, options.onMaxDuration) : null;
    this.silence = options.silenceTimeoutMs ? new SilenceWatcher(session, options.silenceTimeoutMs, options.onSilence) : null;
  }

  start(): void {
    this.maxDuration?.start();
    if (this.silence !== null) {
      for (const conflict of silenceConflicts(
        this.silence.ms / 1000,
        this.maxDuration ? this.maxDuration.ms / 1000 : null,
        userAwayTimeout(this.session),
      )) {
        logger.warn(conflict);
      }
      this.silence.start();
    }
  }

  cancel(): void {
    this.maxDuration?.cancel();
    this.silence?.cancel();
  }
}
