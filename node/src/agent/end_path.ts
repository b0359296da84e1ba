/**
 * `EndPath`: from an accepted end to the report handed over. One background run per call:
 * drain (bounded by `drainTimeout`); `session.shutdown({drain, reason})` and a wait for its
 * `close`, or, when EndCall shut the session down itself, only until its history is final
 * (`historySettled`: the SDK's close drained the activity, no speech or tool is running, no
 * customer words are pending; the rest of @livekit/agents 1.9's close — a fixed 500 ms pause
 * for a user turn that cannot come, then the teardown — runs next to the hand-over), bounded by
 * `closeTimeout`; then, whatever happened before, the hand-over: crash
 * drafts stop, the report is built and stored (`ReportSink.store`: durable before any send),
 * the attributes say `ended`, `ctx.shutdown(reason)` is requested (once), the in-process
 * delivery starts (`ReportSink.deliver`), and the room is deleted once the delivery finished or
 * `deleteRoomAfter` passed. `finish` is what the job's hooks wait for. Port of Python's
 * `endcall.agent.end_path`.
 */
import { ATTR_REPORT, ATTR_STATE, type JsonObject } from "endcall";
import type { DeliveryOutcome, ReportSink } from "../reports/sink.js";
import type { Annotations } from "./annotations.js";
import type { Call } from "./call.js";
import type { Checkpoints } from "./checkpoints.js";
import { drain } from "./drain.js";
import type { GoodbyePlan } from "./goodbye.js";
import { logger } from "./log.js";
import type { EndRecord, Trigger } from "./machine.js";
import { deleteOwnRoom } from "./own_room.js";
import { encodeDocument, finalDocument, minimalDocument, type ReportInput } from "./report.js";
import { EndSteps } from "./steps.js";
import { deferred, remaining, sleep, withTimeout } from "./waits.js";

/** How long after the `endcall.report` update the writes may take before the room goes. */
export const ATTRIBUTE_SETTLE_MS = 1_000;
/** Bound of the DeleteRoom call itself. */
export const DELETE_ROOM_TIMEOUT_MS = 5_000;
/** Bound of the in-process delivery the job's hooks wait for, when the sink does not say its
 * webhook's window (the sink bounds its own `deliver`). */
export const DELIVERY_WAIT_MS = 80_000;

/** How long the hooks wait for `sink.deliver`: its webhook's `inProcessWindow + timeout + 5`
 * seconds (a `ReportPipeline`), as Python's end path reads it; else `DELIVERY_WAIT_MS`. */
export function deliveryWaitMs(sink: unknown): number {
  const hook = (sink as { webhook?: { inProcessWindow?: unknown; timeout?: unknown } } | null)?.webhook;
  const window = hook?.inProcessWindow;
  const timeout = hook?.timeout;
  if (typeof window === "number" && typeof timeout === "number" && window >= 0 && timeout >= 0) {
    return (window + timeout + 5) * 1000;
  }
  return DELIVERY_WAIT_MS;
}

/** The ack's promise (`drain_ms`): the agent is gone at most this long after the ack. */
export function promisedMs(drainMs: number, closeMs: number, deleteRoomAfterMs: number | null): number {
  let bound = drainMs + closeMs;
  if (deleteRoomAfterMs !== null) bound += deleteRoomAfterMs + ATTRIBUTE_SETTLE_MS;
  return bound;
}

/** How often the close step looks whether the session's history is final (a look is a few
 * property reads; the SDK gets there ~10 ms after its drain began). */
export const SETTLED_POLL_MS = 2;

/** The customer's words that are not in the history yet (Python's `endcall.agent.transcript`):
 * an interim transcript, or final ones not yet committed as a user turn. */
export class UserWords {
  private interim = "";
  private uncommitted = 0;

  readonly onTranscribed = (ev: { transcript?: unknown; isFinal?: unknown } | null | undefined): void => {
    const text = String(ev?.transcript ?? "").trim();
    if (ev?.isFinal) {
      this.interim = "";
      if (text) this.uncommitted += 1;
    } else {
      this.interim = text;
    }
  };

  onItemAdded(ev: { item?: { role?: unknown } | null } | null | undefined): void {
    if (ev?.item?.role === "user") this.uncommitted = 0;
  }

  /** Words the session's close may still add to the history as a user turn. */
  pending(session: { userState?: unknown }): boolean {
    return this.interim !== "" || this.uncommitted > 0 || session.userState === "speaking";
  }
}

interface TaskLike {
  done?: unknown;
}
interface ActivityInternals {
  _schedulingPaused?: unknown;
  _mainTask?: TaskLike | null;
  speechTasks?: unknown;
  _currentSpeech?: { done?: () => boolean } | null;
  _toolExecutor?: { runningTasks?: unknown } | null;
}
interface SessionInternals {
  _closing?: unknown;
  activity?: ActivityInternals | null;
  input?: { audio?: unknown } | null;
  _recorderIO?: { recording?: unknown } | null;
}

/** The closing session's history can no longer change, though its `close` has not come:
 * @livekit/agents 1.9's `closeImplInner` drained the activity (scheduling paused, its main
 * task over: `onExit` and every speech finished), nothing is speaking, no tool runs, the audio
 * input is detached (the user turn commit has begun) and no recorder is recording. Reads the
 * SDK's internals: anything missing or of another shape says no (then the path waits for
 * `close`, as before). The caller also checks that no customer words are pending. */
export function historySettled(session: unknown): boolean {
  try {
    const s = session as SessionInternals;
    if (s._closing !== true) return false;
    const a = s.activity;
    if (a === null || a === undefined) return false; // closed already (the close event is next) or not ours to read
    if (a._schedulingPaused !== true) return false;
    if (a._mainTask !== undefined && a._mainTask !== null && a._mainTask.done !== true) return false;
    if (!(a.speechTasks instanceof Set)) return false;
    for (const t of a.speechTasks as Set<TaskLike>) if (t?.done !== true) return false;
    const cur = a._currentSpeech;
    if (cur !== null && cur !== undefined && (typeof cur.done !== "function" || !cur.done())) return false;
    const running = a._toolExecutor?.runningTasks;
    if (!(running instanceof Map) || running.size > 0) return false;
    if (s.input === null || s.input === undefined || (s.input.audio !== null && s.input.audio !== undefined)) return false;
    if (s._recorderIO?.recording === true) return false;
    return true;
  } catch {
    return false;
  }
}

export interface EndPathOptions {
  drainTimeoutMs: number;
  closeTimeoutMs: number;
  interruptOnCustomerEnd: boolean;
  deleteRoom: boolean;
  deleteRoomAfterMs: number;
}

export class EndPath {
  private doneD = deferred<EndRecord>();
  private begun = false;
  report: Uint8Array | null = null;
  stored: boolean | null = null;
  delivery: DeliveryOutcome | null = null;
  private run: Promise<void> | null = null;
  private deliveryTask: Promise<void> | null = null;
  private roomTask: Promise<void> | null = null;
  readonly steps = new EndSteps();
  /** The customer's words not yet in the history (fed by EndCall's session listeners). */
  readonly words = new UserWords();
  /** The reason EndCall gave `session.shutdown()`: the close's own, when the report is built
   * before `close` came. */
  private shutdownReason: string | null = null;
  /** The report was built once the history was final, before the session's `close`. */
  beforeClose = false;

  constructor(
    private readonly call: Call,
    private readonly sink: ReportSink,
    private readonly checkpoints: Checkpoints,
    private readonly annotations: Annotations,
    private readonly opts: EndPathOptions,
  ) {}

  /** Resolved with the record once the report is stored and the job shutdown requested. */
  get done(): Promise<EndRecord> {
    return this.doneD.promise;
  }
  get started(): boolean {
    return this.run !== null;
  }
  /** The path may run (start() was called, or the job ends without it). */
  begin(): void {
    this.begun = true;
  }
  get isBegun(): boolean {
    return this.begun;
  }

  /** The machine accepted `trigger`: run the end path in the background. */
  start(trigger: Trigger, plan: GoodbyePlan | null): void {
    if (this.run !== null) return;
    this.run = this.runSteps(trigger, plan);
  }

  private async runSteps(trigger: Trigger, plan: GoodbyePlan | null): Promise<void> {
    const call = this.call;
    await Promise.resolve(); // the ack is answered before the drain starts
    const t0 = Date.now();
    this.steps.begin();
    let drainS = 0;
    let shutdownS = 0;
    let drained = true;
    try {
      if (!call.sessionClosing()) {
        const r = await withTimeout(
          drain(call.session, trigger, plan, {
            interruptOnCustomerEnd: this.opts.interruptOnCustomerEnd,
            closing: () => call.sessionClosing(),
          }),
          this.opts.drainTimeoutMs,
        );
        if (!r.done) {
          drained = false;
          logger.warn(`drain did not finish in ${this.opts.drainTimeoutMs} ms`);
          call.endInfo["drain_timed_out"] = true;
        } else if (!r.ok) logger.warn(`drain failed: ${String(r.error)}`);
      }
      drainS = (Date.now() - t0) / 1000;
      this.steps.mark("drain");
      const t1 = Date.now();
      if (!call.closed.isSet) {
        let ours = false;
        if (!call.sessionClosing()) {
          const reason = call.machine.record.reason ?? "endcall";
          try {
            call.session.shutdown({ drain: drained, reason });
            ours = true;
            this.shutdownReason = reason;
          } catch (e) {
            logger.warn(`session.shutdown failed: ${String(e)}`);
          }
        }
        // the report needs the history final, not the SDK's whole teardown; a close this
        // path did not start (its reason unknown) is waited for in full
        const stop = { stopped: false };
        const wait = ours ? Promise.race([call.closed.wait(), this.historyFinal(stop)]) : call.closed.wait();
        const r = await withTimeout(wait, this.opts.closeTimeoutMs);
        stop.stopped = true;
        if (r.done && !call.closed.isSet) this.beforeClose = true;
        if (!r.done) {
          logger.warn(`the session did not close within ${this.opts.closeTimeoutMs} ms; building the report anyway`);
          call.endInfo["close_timed_out"] = true;
        }
      }
      shutdownS = (Date.now() - t1) / 1000;
      this.steps.mark("close");
    } catch (e) {
      logger.error("unexpected error while ending; building the report", e);
    } finally {
      await this.handOver(drainS, shutdownS);
    }
  }

  /** Resolves once the session's history is final (`historySettled` and no customer words
   * pending); polls until `stop.stopped`. */
  private async historyFinal(stop: { stopped: boolean }): Promise<void> {
    const session = this.call.session;
    while (!stop.stopped) {
      if (historySettled(session) && !this.words.pending(session)) return;
      await sleep(SETTLED_POLL_MS);
    }
    return new Promise<void>(() => undefined); // stopped: the race is over
  }

  private endSection(drainS: number, shutdownS: number): JsonObject {
    const rec = this.call.machine.record;
    return {
      channel: rec.channel,
      requested_at: rec.requestedAt,
      acked_at: rec.acknowledgedAt,
      drain_s: Math.round(drainS * 1000) / 1000,
      shutdown_s: Math.round(shutdownS * 1000) / 1000,
      disconnect_reason: rec.disconnectReason,
      error: rec.error,
      close_reason: this.call.closeReason ?? (this.beforeClose ? this.shutdownReason : null),
      drain_ms: rec.drainMs,
      ...this.call.endInfo,
    };
  }

  /** The final report's bytes (a minimal one when the full one cannot be built). */
  buildReport(drainS = 0, shutdownS = 0): Uint8Array {
    const call = this.call;
    const input: ReportInput = {
      record: call.machine.record,
      ctx: call.ctx,
      session: call.session,
      roomName: call.roomName(),
      startedAt: call.startedAt,
      end: this.endSection(drainS, shutdownS),
      annotations: this.annotations.snapshot(),
      annotationsSource: this.annotations.source,
    };
    try {
      return encodeDocument(finalDocument(input));
    } catch (e) {
      logger.error("could not build the full report; sending a minimal one", e);
      return encodeDocument(minimalDocument(input, e));
    }
  }

  private async handOver(drainS: number, shutdownS: number): Promise<void> {
    const call = this.call;
    try {
      await this.checkpoints.stop();
      const body = this.buildReport(drainS, shutdownS);
      this.report = body;
      this.steps.mark("report");
      try {
        this.stored = Boolean(await this.sink.store(call.endId, body));
      } catch (e) {
        logger.error("the report could not be stored", e);
        this.stored = false;
      }
      this.steps.mark("store");
      if (this.stored) logger.info(`report ${call.endId} stored`);
      else logger.warn(`report ${call.endId} is not stored; delivering it from memory`);
    } catch (e) {
      logger.error("the report could not be handed over", e);
    } finally {
      call.setAttributes({ [ATTR_STATE]: "ended", [ATTR_REPORT]: this.stored ? "stored" : "pending" });
      const record = call.machine.finish();
      if (this.report !== null) this.deliveryTask = this.deliver();
      this.requestJobShutdown(record.reason ?? "endcall");
      if (this.opts.deleteRoom) this.roomTask = this.deleteRoomWhenReported();
      this.doneD.resolve(record);
    }
  }

  private requestJobShutdown(reason: string): void {
    const call = this.call;
    if (call.shutdownRequested) return;
    call.shutdownRequested = true;
    if (call.jobShutdown !== null) return; // the job is already shutting down (user code, the worker)
    try {
      call.ctx.shutdown(reason);
    } catch (e) {
      logger.error("ctx.shutdown failed", e);
    }
  }

  private async deliver(): Promise<void> {
    const call = this.call;
    let outcome: DeliveryOutcome | null = null;
    try {
      outcome = await this.sink.deliver(call.endId);
    } catch (e) {
      logger.error("delivery failed", e);
      call.endInfo["delivery_error"] = String(e);
    }
    this.delivery = outcome;
    this.steps.mark("delivery");
    const rec = call.machine.record;
    const ackMs = rec.acknowledgedAt !== null && rec.requestedAt !== null ? (rec.acknowledgedAt - rec.requestedAt) * 1000 : null;
    this.steps.log(call.endId, ackMs);
    const delivered = Boolean(outcome?.delivered);
    if (delivered) logger.info(`report ${call.endId} delivered (${outcome?.attempts ?? 0} attempts)`);
    else if (outcome?.dead) logger.error(`report ${call.endId} refused for good (status ${outcome.lastStatus}: ${outcome.lastError})`);
    else if (this.stored) logger.warn(`report ${call.endId} not delivered in process; it stays in the outbox for a relay`);
    if (call.attrs !== null && call.ctx.room.isConnected) {
      if (delivered) call.setAttributes({ [ATTR_REPORT]: "delivered" });
      else if (!this.stored) call.setAttributes({ [ATTR_REPORT]: "failed" });
    }
  }

  private async deleteRoomWhenReported(): Promise<void> {
    const call = this.call;
    const deadline = Date.now() + this.opts.deleteRoomAfterMs;
    if (this.deliveryTask !== null && !call.roomGone.isSet) {
      await withTimeout(Promise.race([this.deliveryTask, call.roomGone.wait()]), this.opts.deleteRoomAfterMs);
    }
    if (call.attrs !== null && !call.roomGone.isSet) {
      await call.attrs.waitIdle(Math.max(deadline - Date.now(), ATTRIBUTE_SETTLE_MS));
    }
    try {
      await deleteOwnRoom(call.ctx, {
        connected: !call.roomGone.isSet,
        disconnectReason: call.disconnectReason,
        roomName: call.roomName(),
        roomSid: call.roomSid(),
        delete: async () => {
          const r = await withTimeout(Promise.resolve().then(() => call.ctx.deleteRoom()), DELETE_ROOM_TIMEOUT_MS);
          if (!r.done) logger.warn(`deleting the room takes longer than ${DELETE_ROOM_TIMEOUT_MS} ms`);
          else if (!r.ok) logger.warn(`deleting the room failed: ${String(r.error)}`);
        },
      });
    } catch (e) {
      logger.warn(`could not delete the room: ${String(e)}`);
    }
  }

  /** Wait for the end path, the room deletion and the in-process delivery, each bounded, and
   * at most until `deadline` (epoch ms; null: none). */
  async finish(deadline: number | null): Promise<void> {
    const bound = this.opts.drainTimeoutMs + this.opts.closeTimeoutMs + 10_000;
    const r = await withTimeout(this.done, remaining(deadline, bound));
    if (!r.done) {
      logger.error("the end path did not finish in time");
      return;
    }
    if (this.roomTask !== null) {
      const roomBound = this.opts.deleteRoomAfterMs + ATTRIBUTE_SETTLE_MS + DELETE_ROOM_TIMEOUT_MS + 1_000;
      const rr = await withTimeout(this.roomTask, remaining(deadline, roomBound));
      if (!rr.done) logger.warn("the room deletion did not finish in time");
    }
    if (this.deliveryTask !== null) {
      const dr = await withTimeout(this.deliveryTask, remaining(deadline, deliveryWaitMs(this.sink)));
      if (!dr.done) logger.warn(`report ${this.call.endId} not delivered in process; it stays in the outbox for a relay`);
      if (this.call.attrs !== null) await this.call.attrs.waitIdle(remaining(deadline, 2_000));
    }
  }
}
