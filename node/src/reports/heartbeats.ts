/**
 * A running session's hold on its crash draft (Python's `heartbeats`): the draft's lease is
 * renewed every `HEARTBEAT` seconds from its first checkpoint until the final report is stored
 * (or the pipeline closes), so "not renewed for a while" means the owner is dead or stalled and
 * a relay may take the draft over. Timers are unref'd: they never keep the process alive.
 */

import { describe } from "./errors.js";
import { log } from "./log.js";
import type { SqlOutbox } from "./outbox/sql.js";

/** seconds between two renewals of a running session's draft */
export const HEARTBEAT = 5;
/** a released draft may be taken over once not renewed for this long (three beats) */
export const TAKEOVER_QUIET = 3 * HEARTBEAT;

export class Heartbeats {
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; running: Promise<void> | null }>();

  constructor(
    private readonly outbox: () => Promise<SqlOutbox | null>,
    private readonly owner: string,
    private readonly lease: number,
    readonly every: number = HEARTBEAT,
  ) {}

  has(endId: string): boolean {
    return this.timers.has(endId);
  }

  /** The sessions whose drafts are beating now. */
  held(): string[] {
    return [...this.timers.keys()];
  }

  start(endId: string): void {
    if (this.timers.has(endId)) return;
    let failing = false;
    const entry: { timer: NodeJS.Timeout; running: Promise<void> | null } = {
      timer: setInterval(() => {
        if (entry.running) return; // the last renewal is still waiting for the database
        entry.running = (async () => {
          try {
            const ob = await this.outbox();
            if (!ob) return;
            const held = await ob.renewDraft(endId, this.owner, this.lease);
            failing = false;
            if (!held) this.stop(endId); // taken over, or replaced by the final report
          } catch (e) {
            if (!failing) log.warn(`endcall: could not renew the draft of ${endId}: ${describe(e)}`);
            failing = true;
          } finally {
            entry.running = null;
          }
        })();
      }, this.every * 1000),
      running: null,
    };
    entry.timer.unref();
    this.timers.set(endId, entry);
  }

  stop(endId: string): void {
    const entry = this.timers.get(endId);
    if (entry) {
      clearInterval(entry.timer);
      this.timers.delete(endId);
    }
  }

  /** Stop every beat and wait for renewals in flight. */
  async close(): Promise<void> {
    const entries = [...this.timers.values()];
    this.timers.clear();
    for (const e of entries) clearInterval(e.timer);
    await Promise.all(entries.map((e) => e.running ?? Promise.resolve()));
  }
}
