/**
 * The one state machine that owns "ending": `active → ending → ended`, the first accepted
 * trigger wins, one `end_id` per session, and a request id always gets the same ack
 * (protocol.md §2.2). Pure bookkeeping: no I/O, no timers. Port of Python's
 * `endcall.agent.end_machine`.
 */
import { randomBytes } from "node:crypto";
import { isValidId, type AckStatus, type EndAck, type InitiatorKind, type JsonObject } from "endcall";

export type EndState = "active" | "ending" | "ended";

/** Where a trigger came from (the report's `end.channel`). */
export type Channel =
  | "rpc"
  | "data"
  | "server"
  | "tool"
  | "timer"
  | "api"
  | "disconnect"
  | "session"
  | "room"
  | "job";

export interface Initiator {
  kind: InitiatorKind;
  identity: string | null;
}

/** One attempt to end the session. */
export interface Trigger {
  reason: string;
  initiator: Initiator;
  channel: Channel;
  requestId: string | null;
  meta: JsonObject | null;
  /** What went wrong, for `agent-error`. */
  error: string | null;
  /** LiveKit's DisconnectReason name, when the trigger is a disconnect. */
  disconnectReason: string | null;
  /** Unix seconds. */
  at: number;
}

/** How this session ended (or that it has not yet). Times are Unix seconds. */
export interface EndRecord {
  endId: string;
  state: EndState;
  drainMs: number;
  reason: string | null;
  initiator: Initiator | null;
  channel: Channel | null;
  requestId: string | null;
  meta: JsonObject | null;
  requestedAt: number | null;
  acknowledgedAt: number | null;
  endedAt: number | null;
  disconnectReason: string | null;
  error: string | null;
}

export interface Verdict {
  ack: EndAck;
  /** This trigger started the end. */
  accepted: boolean;
  /** The ack is the remembered answer to a request id seen before. */
  replayed: boolean;
}

const nowSeconds = (): number => Date.now() / 1000;

function token(bytes: number): string {
  return randomBytes(bytes).toString("base64url");
}

/** A new `end_id` (`e_` + 16 url-safe characters). */
export function newEndId(): string {
  return "e_" + token(12);
}

/** An id for a trigger that has no request of its own (timers, the tool, `end()`). */
export function newRequestId(prefix = "x"): string {
  return `${prefix}_` + token(9);
}

const KIND_BY_REASON: Record<string, InitiatorKind> = {
  "assistant-ended-call": "agent",
  "server-ended-call": "server",
  "room-deleted": "server",
};

/** The usual initiator kind of a reason (protocol.md §3). */
export function initiatorKindFor(reason: string): InitiatorKind {
  if (reason.startsWith("customer-")) return "customer";
  return KIND_BY_REASON[reason] ?? "system";
}

/** A trigger with the optional fields filled. */
export function makeTrigger(
  t: Pick<Trigger, "reason" | "initiator" | "channel"> & Partial<Trigger>,
): Trigger {
  return {
    requestId: null,
    meta: null,
    error: null,
    disconnectReason: null,
    at: nowSeconds(),
    ...t,
  };
}

export class EndMachine {
  private readonly acks = new Map<string, EndAck>();
  private rec: EndRecord;
  private heldTrigger: Trigger | null = null;

  constructor(options: {
    drainMs: number;
    endId?: string;
    clock?: () => number;
    maxRemembered?: number;
  }) {
    if (options.endId !== undefined && !isValidId(options.endId)) {
      throw new RangeError("endId must be 1-64 characters of [A-Za-z0-9_-]");
    }
    if (!Number.isInteger(options.drainMs) || options.drainMs < 0) {
      throw new RangeError("drainMs must be an integer >= 0");
    }
    this.clock = options.clock ?? nowSeconds;
    this.maxRemembered = options.maxRemembered ?? 4096;
    this.rec = {
      endId: options.endId ?? newEndId(),
      state: "active",
      drainMs: options.drainMs,
      reason: null,
      initiator: null,
      channel: null,
      requestId: null,
      meta: null,
      requestedAt: null,
      acknowledgedAt: null,
      endedAt: null,
      disconnectReason: null,
      error: null,
    };
  }

  private readonly clock: () => number;
  private readonly maxRemembered: number;

  get record(): Readonly<EndRecord> {
    return this.rec;
  }
  get state(): EndState {
    return this.rec.state;
  }
  get endId(): string {
    return this.rec.endId;
  }
  /** The tentative trigger being held (the state is then still `active`). */
  get held(): Trigger | null {
    return this.heldTrigger;
  }

  /** Hold a tentative trigger instead of accepting it. True if it is now held; false when not
   * `active` or another is held (then only the held one's unset details are filled). */
  hold(trigger: Trigger): boolean {
    if (this.rec.state !== "active") return false;
    const held = this.heldTrigger;
    if (held !== null) {
      this.heldTrigger = {
        ...held,
        disconnectReason: held.disconnectReason ?? trigger.disconnectReason,
        error: held.error ?? trigger.error,
      };
      return false;
    }
    this.heldTrigger = trigger;
    return true;
  }

  /** Stop holding; the held trigger, or null. */
  takeHeld(): Trigger | null {
    const held = this.heldTrigger;
    this.heldTrigger = null;
    return held;
  }

  /** Decide on a trigger. Pure bookkeeping; never throws. */
  submit(trigger: Trigger): Verdict {
    const rid = trigger.requestId ?? newRequestId();
    const remembered = this.acks.get(rid);
    if (remembered !== undefined) {
      this.acks.delete(rid);
      this.acks.set(rid, remembered);
      return { ack: remembered, accepted: false, replayed: true };
    }
    let status: AckStatus;
    if (this.rec.state === "active") {
      const held = this.takeHeld();
      const disconnectReason = trigger.disconnectReason ?? held?.disconnectReason ?? null;
      this.rec = {
        ...this.rec,
        state: "ending",
        reason: trigger.reason,
        initiator: trigger.initiator,
        channel: trigger.channel,
        requestId: trigger.requestId,
        meta: trigger.meta,
        requestedAt: trigger.at,
        acknowledgedAt: this.clock(),
        disconnectReason,
        error: trigger.error,
      };
      status = "accepted";
    } else {
      status = this.rec.state === "ending" ? "already_ending" : "already_ended";
    }
    const ack: EndAck = {
      type: "end.ack",
      v: 1,
      id: rid,
      status,
      end_id: this.rec.endId,
      reason: this.rec.reason as string,
      drain_ms: this.rec.drainMs,
    };
    this.acks.set(rid, ack);
    while (this.acks.size > this.maxRemembered) {
      const oldest = this.acks.keys().next().value as string;
      this.acks.delete(oldest);
    }
    return { ack, accepted: status === "accepted", replayed: false };
  }

  /** Add details learnt after acceptance; only fields still unset are filled. */
  note(changes: { disconnectReason?: string | null; error?: string | null }): void {
    const fill: Partial<EndRecord> = {};
    if (this.rec.disconnectReason === null && changes.disconnectReason) {
      fill.disconnectReason = changes.disconnectReason;
    }
    if (this.rec.error === null && changes.error) fill.error = changes.error;
    this.rec = { ...this.rec, ...fill };
  }

  /** ending → ended (idempotent). Requests from now on get `already_ended`. */
  finish(): Readonly<EndRecord> {
    if (this.rec.state === "ending") {
      this.rec = { ...this.rec, state: "ended", endedAt: this.clock() };
    }
    return this.rec;
  }
}
