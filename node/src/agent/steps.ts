/**
 * `EndSteps`: how long each step of one end path took, logged once at INFO when the in-process
 * delivery is over — `endcall: end e_… steps (ms): accept …, drain …, close …, report …,
 * store …, delivery …; total …` (`total`: from the accepted end to the delivery; `accept`: from
 * the request reaching the agent to its acceptance). Steps not taken are left out. The same
 * line as Python's `endcall.agent.end_path.EndSteps` (bench/end_to_report.py reads it; Node has
 * no separate `transcript` step).
 */
import { logger } from "./log.js";

export const STEP_ORDER = ["drain", "close", "report", "store", "delivery"] as const;
export type Step = (typeof STEP_ORDER)[number];

export class EndSteps {
  private t0: number | null = null;
  private readonly at = new Map<Step, number>();

  begin(t0 = performance.now()): void {
    this.t0 = t0;
  }

  mark(step: Step): void {
    if (!this.at.has(step)) this.at.set(step, performance.now());
  }

  /** Milliseconds per step taken, each from the step before it, and `total`. */
  durations(): Record<string, number> {
    if (this.t0 === null) return {};
    const out: Record<string, number> = {};
    let last = this.t0;
    for (const step of STEP_ORDER) {
      const at = this.at.get(step);
      if (at !== undefined) {
        out[step] = at - last;
        last = at;
      }
    }
    if (Object.keys(out).length) out.total = last - this.t0;
    return out;
  }

  log(endId: string, ackMs: number | null): void {
    const steps = this.durations();
    if (!("total" in steps)) return;
    const { total, ...rest } = steps;
    const parts = [
      ...(ackMs !== null ? [`accept ${Math.round(ackMs)}`] : []),
      ...Object.entries(rest).map(([name, ms]) => `${name} ${Math.round(ms)}`),
    ];
    logger.info(`end ${endId} steps (ms): ${parts.join(", ")}; total ${Math.round(total ?? 0)}`);
  }
}
