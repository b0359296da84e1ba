/**
 * `Decisions`: every trigger goes to the end machine through here. A channel's request is
 * authorized (`allow`, else only the customer) and becomes a trigger; the machine decides. An
 * accepted trigger is made durable (`DurableEnd`: its acks wait for that write), written to the
 * agent attributes (`endcall.state=ending`, `reason`, `end_id`, `request_id`,
 * `report=pending`) and handed to `onAccepted` (timers stop, the end path starts). A trigger the
 * machine turns down still adds what it knows. Port of Python's `endcall.agent.decisions`.
 */
import {
  ATTR_END_ID,
  ATTR_REASON,
  ATTR_REPORT,
  ATTR_REQUEST_ID,
  ATTR_STATE,
  ProtocolError,
  isValidId,
  isValidReason,
  type EndAck,
  type EndRequest,
  type InitiatorKind,
  type JsonObject,
  type Origin,
} from "endcall";
import type { ReportSink } from "../reports/sink.js";
import type { Call } from "./call.js";
import type { DurableEnd } from "./durable_end.js";
import type { GoodbyePlan } from "./goodbye.js";
import { logger } from "./log.js";
import { initiatorKindFor, makeTrigger, type Channel, type Initiator, type Trigger, type Verdict } from "./machine.js";

/** Custom authorization: `allow(callerIdentity, request)` for RPC and data requests, and for
 * server-channel requests made for a participant (the fallback server's verified caller). */
export type Allow = (identity: string, request: EndRequest) => boolean;

/** Repeated requests update `endcall.request_id` at most this often. */
export const REQUEST_ID_COALESCE_MS = 20;

/** `ParticipantKind.STANDARD` in rtc-node. */
const STANDARD = 0;

export class Decisions {
  constructor(
    private readonly call: Call,
    private readonly opts: {
      sink: ReportSink;
      durable: DurableEnd;
      allow: Allow | null;
      customer: () => string | null;
      minimalDraft: () => Uint8Array;
      onAccepted: (trigger: Trigger, plan: GoodbyePlan | null) => void;
    },
  ) {}

  /** A parsed request from a channel; throws `ProtocolError("forbidden")`. */
  decide(request: EndRequest, origin: Origin, channel: Channel, caller: string | null): EndAck {
    let who: Initiator;
    if (origin === "client") {
      if (caller === null || !this.authorized(caller, request)) {
        throw new ProtocolError("forbidden", "only the customer may end this call", request.id);
      }
      who = { kind: "customer", identity: caller };
    } else {
      const kind = initiatorKindFor(request.reason);
      if (kind === "customer" && request.initiator !== null && !this.authorized(request.initiator, request)) {
        throw new ProtocolError("forbidden", "only the customer may end this call", request.id);
      }
      who = { kind: kind === "customer" ? "customer" : "server", identity: request.initiator };
    }
    const trigger = makeTrigger({
      reason: request.reason,
      initiator: who,
      channel,
      requestId: request.id,
      meta: request.meta,
    });
    return this.submit(trigger, null).ack;
  }

  private authorized(caller: string, request: EndRequest): boolean {
    if (this.opts.allow !== null) {
      try {
        return Boolean(this.opts.allow(caller, request));
      } catch (e) {
        logger.error("the allow() policy threw; request refused", e);
        return false;
      }
    }
    const customer = this.opts.customer();
    if (customer !== null) return caller === customer;
    const p = this.call.ctx.room.remoteParticipants.get(caller);
    return p !== undefined && p.kind === STANDARD;
  }

  submit(trigger: Trigger, plan: GoodbyePlan | null): Verdict {
    const call = this.call;
    const machine = call.machine;
    const verdict = machine.submit(trigger);
    const ack = verdict.ack;
    if (verdict.accepted) {
      logger.info(
        `end ${ack.end_id}: ${ack.reason} (${trigger.initiator.kind} over ${trigger.channel}` +
          (trigger.requestId ? `, request ${trigger.requestId})` : ")"),
      );
      this.opts.durable.begin(this.opts.sink, machine.record, this.opts.minimalDraft);
      const pending = this.opts.durable.pending;
      if (call.attrs !== null && pending !== null) call.attrs.holdUntil(pending, this.opts.durable.timeoutMs);
      call.setAttributes({
        [ATTR_STATE]: "ending",
        [ATTR_REASON]: ack.reason,
        [ATTR_END_ID]: ack.end_id,
        [ATTR_REQUEST_ID]: ack.id,
        [ATTR_REPORT]: "pending",
      });
      this.opts.onAccepted(trigger, plan);
    } else {
      if (trigger.disconnectReason) machine.note({ disconnectReason: trigger.disconnectReason });
      if (trigger.requestId !== null) call.setAttributes({ [ATTR_REQUEST_ID]: ack.id }, REQUEST_ID_COALESCE_MS);
    }
    return verdict;
  }

  /** Submit a trigger; never throws. */
  submitSafely(trigger: Trigger, plan: GoodbyePlan | null = null): void {
    try {
      this.submit(trigger, plan);
    } catch (e) {
      logger.error(`failed to submit ${trigger.reason}`, e);
    }
  }

  /** Submit an end the agent itself noticed (never throws). */
  trigger(
    reason: string,
    kind: InitiatorKind,
    channel: Channel,
    extra: { identity?: string | null; error?: string | null; disconnectReason?: string | null; plan?: GoodbyePlan | null } = {},
  ): void {
    this.submitSafely(
      makeTrigger({
        reason,
        initiator: { kind, identity: extra.identity ?? null },
        channel,
        error: extra.error ?? null,
        disconnectReason: extra.disconnectReason ?? null,
      }),
      extra.plan ?? null,
    );
  }
}

/** The trigger of `EndCall.end(...)`; throws `RangeError` for a bad reason or request id. */
export function triggerFromCode(
  reason: string,
  options: { initiator?: Initiator | InitiatorKind | null; requestId?: string | null; meta?: JsonObject | null },
): Trigger {
  if (!isValidReason(reason)) throw new RangeError(`invalid reason ${JSON.stringify(reason)}`);
  const requestId = options.requestId ?? null;
  if (requestId !== null && !isValidId(requestId)) {
    throw new RangeError("requestId must be 1-64 characters of [A-Za-z0-9_-]");
  }
  const init = options.initiator ?? null;
  const who: Initiator =
    init === null
      ? { kind: initiatorKindFor(reason), identity: null }
      : typeof init === "string"
        ? { kind: init, identity: null }
        : init;
  return makeTrigger({ reason, initiator: who, channel: "api", requestId, meta: options.meta ?? null });
}
