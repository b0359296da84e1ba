/**
 * `EndCall`: one end state machine for every way a session ends, then drain, shut down, and
 * hand the `session.ended` report over once. The facade that wires the parts: the machine
 * (`machine`), the channels (`channels`), the customer and the graces (`customer`), room/job/
 * session events (`room_signals`, `job_lifecycle`), the timers (`timers`), the end tool
 * (`end_tool`, `agent_ends`), the durable accepted end (`durable_end`), crash drafts
 * (`checkpoints`) and the end path (`end_path`). Port of Python's `endcall.EndCall`.
 *
 * ```ts
 * const endCall = new EndCall(ctx, session, { sink, maxDuration: 1800, silenceTimeout: 60,
 *   goodbye: "Thank you for your time. Goodbye!" });
 * await session.start({ room: ctx.room, agent: new voice.Agent({ instructions, tools: [endCall.tool] }) });
 * await endCall.start();
 * // and: export default defineAgent({ entry, onSessionEnd: EndCall.onSessionEnd });
 * ```
 */
import { ATTR_ERROR, ATTR_STATE, type EndAck, type InitiatorKind, type JsonObject } from "endcall";
import type { ReportSink } from "../reports/sink.js";
import { AgentEnds } from "./agent_ends.js";
import { Annotations } from "./annotations.js";
import { AttributeWriter } from "./attributes.js";
import { Call } from "./call.js";
import { Channels } from "./channels.js";
import { CHECKPOINT_INTERVAL_MS, Checkpoints } from "./checkpoints.js";
import { Presence } from "./customer.js";
import { Decisions, triggerFromCode, type Allow } from "./decisions.js";
import { DurableEnd } from "./durable_end.js";
import { EndPath, promisedMs } from "./end_path.js";
import { END_CALL_DESCRIPTION, END_CALL_NAME, checkToolOptions, makeEndTool } from "./end_tool.js";
import { Goodbyes, type GoodbyeOption, type GoodbyePlan } from "./goodbye.js";
import { JobHooks } from "./job_hooks.js";
import type { ReportMeta } from "./job_config_meta.js";
import { watchJobShutdown } from "./job_lifecycle.js";
import { logger } from "./log.js";
import { EndMachine, type EndRecord, type EndState, type Initiator, type Trigger } from "./machine.js";
import { EndCallMisuseError, checkOptions, checkOutbox, secondInstance } from "./misuse.js";
import { Signals } from "./room_signals.js";
import type { JobContextLike, SessionLike } from "./surface.js";
import { CallTimers } from "./timers.js";

/** Options of `new EndCall(ctx, session, options)`. Durations are in **seconds**, like the
 * Python kit's (`drain_ms` in the ack is milliseconds, per the protocol). */
export interface EndCallOptions {
  /** Where the report goes: a `ReportSink` (the reports wing's `ReportPipeline`, or your own). */
  sink: ReportSink;
  /** Seconds after `start()` before the call ends (`exceeded-max-duration`); null/0: off. */
  maxDuration?: number | null;
  /** Seconds without customer speech (from `start()` or the end of their last speech) before
   * the call ends (`silence-timed-out`); null/0: off. Independent of `userAwayTimeout`. */
  silenceTimeout?: number | null;
  /** Words said before an agent or timer end; null lets the LLM phrase it (tool) or says nothing
   * (timers). An object gives one per reason (`{"exceeded-max-duration": "…", "*": "Goodbye!"}`). */
  goodbye?: GoodbyeOption;
  /** The end tool's name (`end_call`) and description, as the agent's prompt refers to it. */
  toolName?: string;
  toolDescription?: string;
  /** RPC method and data topic (`end_interview`). */
  method?: string;
  /** Bound of the drain (goodbye playout), seconds (10). */
  drainTimeout?: number;
  /** Bound of the wait for the session's `close` after `session.shutdown()`, seconds (5). */
  closeTimeout?: number;
  /** Interrupt the agent's speech when the customer ends (true). */
  interruptOnCustomerEnd?: boolean;
  /** Delete the room at the end, after the report's delivery (true). */
  deleteRoom?: boolean;
  /** The longest the room deletion waits for the in-process delivery, seconds (5). */
  deleteRoomAfter?: number;
  /** Seconds a customer leaving without a request stays tentative (3); 0: end at once. */
  disconnectGrace?: number;
  /** Likewise for the room being deleted and the worker shutting the job down, seconds (1). */
  shutdownGrace?: number;
  /** Custom authorization for RPC/data requests (default: only the customer). */
  allow?: Allow | null;
  /** Seconds between crash-draft checkpoints (at most 30). */
  checkpointInterval?: number;
  /** The job's own fields for the report's `annotations` (≤ 4,096 bytes serialized). */
  reportMeta?: Record<string, unknown> | ReportMeta | null;
}

const INSTANCES = new WeakMap<object, EndCall>();

function agentIdentity(ctx: JobContextLike): string | null {
  try {
    const id = ctx.room.localParticipant?.identity;
    if (id) return id;
  } catch {
    // not connected
  }
  try {
    return (ctx as unknown as { info?: { acceptArguments?: { identity?: string } } }).info?.acceptArguments?.identity || null;
  } catch {
    return null;
  }
}

/** `"<room sid>/<agent identity>"`: what a crash draft belongs to (protocol.md §6). */
export function draftScope(roomSid: string | null, identity: string | null): string | null {
  return roomSid && identity ? `${roomSid}/${identity}` : null;
}

const secs = (v: number | null | undefined, dflt: number): number => Math.round((v ?? dflt) * 1000);

export class EndCall {
  private readonly call: Call;
  private readonly sink: ReportSink;
  private readonly goodbyes: Goodbyes;
  private readonly annotations: Annotations;
  private readonly durable = new DurableEnd();
  private readonly checkpoints: Checkpoints;
  private readonly path: EndPath;
  private readonly decisions: Decisions;
  private readonly presence: Presence;
  private readonly signals: Signals;
  private readonly agentEnds: AgentEnds;
  private readonly hooks: JobHooks;
  private readonly timers: CallTimers;
  private readonly method: string;
  private readonly endTool: ReturnType<typeof makeEndTool>;
  private channels: Channels | null = null;
  private unwatchJob: (() => void) | null = null;
  private scoped = false;

  /** Throws `TypeError`/`RangeError` for bad options and `EndCallMisuseError` for a second
   * EndCall on one job. */
  constructor(ctx: JobContextLike, session: SessionLike, options: EndCallOptions) {
    if (options === null || typeof options !== "object") throw new TypeError("EndCall needs options with a `sink`");
    const method = options.method ?? "end_interview";
    checkOptions({
      sink: options.sink,
      method,
      seconds: {
        drainTimeout: options.drainTimeout,
        closeTimeout: options.closeTimeout,
        deleteRoomAfter: options.deleteRoomAfter,
        disconnectGrace: options.disconnectGrace,
        shutdownGrace: options.shutdownGrace,
        checkpointInterval: options.checkpointInterval,
      },
      positive: { maxDuration: options.maxDuration, silenceTimeout: options.silenceTimeout },
    });
    const toolName = options.toolName ?? END_CALL_NAME;
    const toolDescription = options.toolDescription ?? END_CALL_DESCRIPTION;
    checkToolOptions(toolName, toolDescription);
    this.goodbyes = new Goodbyes(options.goodbye);
    this.annotations = new Annotations(options.reportMeta);
    if (ctx === null || typeof ctx !== "object") throw new TypeError("EndCall needs the job's JobContext");
    if (session === null || typeof session !== "object") throw new TypeError("EndCall needs the AgentSession");
    // (after the options are checked: a wrong option says so, whatever else is wrong)
    if (INSTANCES.has(ctx)) throw secondInstance();

    this.sink = options.sink;
    this.method = method;
    const deleteRoom = options.deleteRoom ?? true;
    const pathOptions = {
      drainTimeoutMs: secs(options.drainTimeout, 10),
      closeTimeoutMs: secs(options.closeTimeout, 5),
      interruptOnCustomerEnd: options.interruptOnCustomerEnd ?? true,
      deleteRoom,
      deleteRoomAfterMs: secs(options.deleteRoomAfter, 5),
    };
    const machine = new EndMachine({
      drainMs: promisedMs(pathOptions.drainTimeoutMs, pathOptions.closeTimeoutMs, deleteRoom ? pathOptions.deleteRoomAfterMs : null),
    });
    this.call = new Call(ctx, session, machine);
    if (this.annotations.configRefused.length) {
      this.call.endInfo["config_refused"] = [...this.annotations.configRefused]; // what jobConfig refused, for the backend
    }
    this.checkpoints = new Checkpoints(
      this.call,
      this.sink,
      this.annotations,
      options.checkpointInterval === undefined ? CHECKPOINT_INTERVAL_MS : secs(options.checkpointInterval, 30),
    );
    this.path = new EndPath(this.call, this.sink, this.checkpoints, this.annotations, pathOptions);
    this.decisions = new Decisions(this.call, {
      sink: this.sink,
      durable: this.durable,
      allow: options.allow ?? null,
      customer: () => this.presence.refresh(),
      minimalDraft: () => this.checkpoints.minimalDraft(),
      onAccepted: (trigger, plan) => this.accepted(trigger, plan),
    });
    this.presence = new Presence(
      this.call,
      (t) => this.decisions.submitSafely(t),
      secs(options.disconnectGrace, 3),
      secs(options.shutdownGrace, 1),
    );
    this.signals = new Signals(this.call, this.decisions, this.presence);
    this.agentEnds = new AgentEnds(this.call, this.decisions, this.goodbyes);
    this.timers = new CallTimers(session, {
      maxDurationMs: options.maxDuration ? secs(options.maxDuration, 0) : null,
      silenceTimeoutMs: options.silenceTimeout ? secs(options.silenceTimeout, 0) : null,
      onMaxDuration: this.agentEnds.onMaxDuration,
      onSilence: this.agentEnds.onSilence,
    });
    this.hooks = new JobHooks(this.call, this.path, {
      presence: this.presence,
      signals: this.signals,
      decisions: this.decisions,
      channels: () => this.channels,
      stop: () => this.stop(),
    });
    this.endTool = makeEndTool(this.agentEnds.onTool, toolName, toolDescription);
    this.scope();
    INSTANCES.set(ctx, this);
    try {
      // here, not in start(): a job whose start() never ran still gets its report
      ctx.addShutdownCallback(() => this.hooks.onShutdownCallback());
    } catch (e) {
      logger.warn(`could not add a job shutdown callback: ${String(e)}`);
    }
  }

  // ------------------------------------------------------------------ public API

  /** The end function tool for the LLM (`end_call`, or `toolName`); add it to the agent's tools. */
  get tool(): ReturnType<typeof makeEndTool> {
    return this.endTool;
  }
  get state(): EndState {
    return this.call.machine.state;
  }
  /** How this session ended (or that it has not yet). */
  get record(): Readonly<EndRecord> {
    return this.call.machine.record;
  }
  get endId(): string {
    return this.call.endId;
  }
  /** The serialized `session.ended` report, once built. */
  get report(): Uint8Array | null {
    return this.path.report;
  }
  /** The in-process delivery's outcome, once it finished. */
  get delivery() {
    return this.path.delivery;
  }

  /** Register the channels, timers and listeners; set `endcall.state=active`. Call it right
   * after `await session.start(...)` (the room must be connected). */
  async start(): Promise<void> {
    const call = this.call;
    if (call.started) return;
    const room = call.ctx.room;
    const local = room.localParticipant;
    if (local === undefined || local === null) {
      throw new EndCallMisuseError("EndCall.start(): the room is not connected; call `await ctx.connect()` and `session.start(...)` first");
    }
    call.started = true;
    const startedAt = call.session._startedAt;
    call.startedAt = typeof startedAt === "number" && startedAt > 0 ? startedAt / 1000 : Date.now() / 1000;
    this.path.begin();
    this.scope();
    call.attrs = new AttributeWriter(local);
    call.attrs.update({ [ATTR_STATE]: "active" });
    this.presence.watchLink();
    this.channels = new Channels(room, {
      method: this.method,
      decide: (request, origin, channel, caller) => this.decisions.decide(request, origin, channel, caller),
      beforeAck: () => this.durable.wait(),
      refuse: (error) => call.setAttributes({ [ATTR_ERROR]: error }),
    });
    this.channels.attach();
    room.on("participantConnected", this.presence.onParticipantConnected);
    room.on("participantDisconnected", this.presence.onParticipantDisconnected);
    room.on("disconnected", this.signals.onRoomDisconnected);
    call.session.on("close", this.signals.onSessionClose);
    call.session.on("conversation_item_added", this.onItemAdded);
    call.session.on("user_input_transcribed", this.path.words.onTranscribed);
    this.unwatchJob = watchJobShutdown(call.ctx, this.signals.onJobShutdown);
    await checkOutbox(this.sink);
    this.timers.start();
    this.checkpoints.start();
    if (call.session._started === false) logger.warn("start() called on a session that is not running");
  }

  /** End the session from code; the same path as every channel. Returns the ack (after the
   * accepted end is durable, at most 1 s). `goodbye: true` says the configured goodbye for this
   * reason first, a string says that string. Throws `RangeError` for a bad reason/request id. */
  async end(
    reason = "server-ended-call",
    options: {
      initiator?: Initiator | InitiatorKind | null;
      meta?: JsonObject | null;
      requestId?: string | null;
      goodbye?: boolean | string;
    } = {},
  ): Promise<EndAck> {
    const trigger = triggerFromCode(String(reason), options);
    const g = options.goodbye;
    const say = typeof g === "string" ? g : g ? this.goodbyes.for(trigger.reason) : null;
    const plan: GoodbyePlan | null = say ? { say } : null;
    if (!this.path.isBegun) this.path.begin();
    const ack = this.decisions.submit(trigger, plan).ack;
    await this.durable.wait();
    return ack;
  }

  /** Add the job's own fields to the report's `annotations` (a later value wins). Throws for
   * non-JSON values or over 4,096 bytes; returns false (changing nothing) once the report is
   * built. */
  annotate(fields: Record<string, unknown>): boolean {
    if (this.path.report !== null) {
      logger.warn("annotate() after the report was built; ignored");
      return false;
    }
    this.annotations.update(fields);
    this.checkpoints.schedule();
    return true;
  }

  /** Wait until the report is stored and the job shutdown requested. */
  wait(): Promise<Readonly<EndRecord>> {
    if (!this.path.isBegun) return Promise.reject(new EndCallMisuseError("EndCall.start() was not called"));
    return this.path.done;
  }

  /** For `defineAgent({ entry, onSessionEnd: EndCall.onSessionEnd })`: finish the end path and
   * the in-process delivery. The job gives it `ServerOptions.sessionEndTimeout` (5 min by
   * default; keep it above `drainTimeout + closeTimeout` + the sink's delivery window). Note:
   * the Node job skips `onSessionEnd` when its own `session.close()` fails or times out (60 s);
   * the shutdown callback then finishes what it can. */
  static async onSessionEnd(ctx: object): Promise<void> {
    const end = INSTANCES.get(ctx);
    if (end === undefined) {
      logger.warn("onSessionEnd: no EndCall for this job");
      return;
    }
    try {
      await end.hooks.onSessionEnd();
    } catch (e) {
      logger.error("onSessionEnd failed", e);
    }
  }

  /** An `onSessionEnd` that runs EndCall's first, then yours (read the report with
   * `EndCall.of(ctx)?.report`). */
  static wrapSessionEnd<C extends object>(fn: (ctx: C) => Promise<void> | void): (ctx: C) => Promise<void> {
    return async (ctx: C) => {
      await EndCall.onSessionEnd(ctx);
      await fn(ctx);
    };
  }

  /** The EndCall created for a job context, if any. */
  static of(ctx: object): EndCall | undefined {
    return INSTANCES.get(ctx);
  }

  // ------------------------------------------------------------------ wiring

  private scope(): void {
    if (this.scoped) return;
    const scope = draftScope(this.call.roomSid(), agentIdentity(this.call.ctx));
    if (scope === null) return;
    this.scoped = true;
    try {
      this.sink.scope(this.call.endId, scope);
    } catch (e) {
      logger.warn(`sink.scope failed: ${String(e)}`);
    }
  }

  private accepted(trigger: Trigger, plan: GoodbyePlan | null): void {
    this.timers.cancel();
    this.presence.cancelGrace();
    this.presence.stop();
    this.path.begin();
    this.path.start(trigger, plan);
  }

  private readonly onItemAdded = (ev?: { item?: { role?: unknown } | null }): void => {
    try {
      this.path.words.onItemAdded(ev);
      this.presence.refresh();
      this.checkpoints.schedule();
    } catch (e) {
      logger.error("conversation_item_added handler failed", e);
    }
  };

  private stop(): void {
    this.timers.cancel();
    this.presence.stop();
    this.unwatchJob?.();
    this.unwatchJob = null;
    const room = this.call.ctx.room;
    try {
      room.off("participantConnected", this.presence.onParticipantConnected);
      room.off("participantDisconnected", this.presence.onParticipantDisconnected);
      room.off("disconnected", this.signals.onRoomDisconnected);
      this.call.session.off("close", this.signals.onSessionClose);
      this.call.session.off("conversation_item_added", this.onItemAdded);
      this.call.session.off("user_input_transcribed", this.path.words.onTranscribed);
    } catch {
      // gone
    }
  }
}
