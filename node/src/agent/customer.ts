/**
 * `Presence`: who the customer is, their joins and leaves, and the graces that hold an end.
 *
 * The customer is the participant RoomIO links the session to (published as
 * `endcall.customer`). When they leave without a request (`customer-disconnected`), the end is
 * tentative for `disconnectGraceMs`: a tab being closed sends LiveKit's leave *before* its
 * `sendBeacon` end request reaches the agent through the fallback server, and that request
 * explains the end better. The room being deleted and the worker shutting the job down are
 * tentative for `shutdownGraceMs` the same way, when nothing else is held. A customer who
 * dropped without leaving and rejoins within the grace simply goes on. Port of Python's
 * `endcall.agent.customer`.
 */
import { DisconnectReason } from "@livekit/rtc-node";
import { ATTR_CUSTOMER, type InitiatorKind } from "endcall";
import type { Call } from "./call.js";
import { logger } from "./log.js";
import { makeTrigger, type Channel, type Trigger } from "./machine.js";
import type { RemoteParticipantLike } from "./surface.js";
import { deferred } from "./waits.js";

/** LiveKit's DisconnectReason name (`CLIENT_INITIATED`…) for its number. */
export function disconnectReasonName(code: number | null | undefined): string {
  const value = code ?? DisconnectReason.UNKNOWN_REASON;
  return (DisconnectReason as unknown as Record<number, string>)[value] ?? String(value);
}

export class Presence {
  private customerIdentity: string | null = null;
  private published: string | null = null;
  private graceTimer: ReturnType<typeof setTimeout> | null = null;
  private holdingSystemEnd = false;
  private settledNow = true;
  private settledWaiters = deferred<void>();
  private linkTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly call: Call,
    private readonly submit: (trigger: Trigger) => void,
    readonly disconnectGraceMs: number,
    readonly shutdownGraceMs: number,
  ) {
    this.settledWaiters.resolve();
  }

  /** The customer's identity, as last seen. */
  get customer(): string | null {
    return this.customerIdentity;
  }

  get longestGraceMs(): number {
    return Math.max(this.disconnectGraceMs, this.shutdownGraceMs);
  }

  /** Resolves when no grace is running. */
  settled(): Promise<void> {
    return this.settledNow ? Promise.resolve() : this.settledWaiters.promise;
  }

  /** Look up the participant RoomIO links the session to; the customer's identity. */
  refresh(): string | null {
    let linked: { identity: string } | undefined;
    try {
      linked = this.call.session._roomIO?.linkedParticipant;
    } catch {
      linked = undefined;
    }
    if (linked && linked.identity !== this.published) {
      this.customerIdentity = linked.identity;
      if (this.call.attrs !== null) {
        // the fallback server refuses to escalate for anyone else (protocol.md §4)
        this.published = linked.identity;
        this.call.setAttributes({ [ATTR_CUSTOMER]: linked.identity });
      }
    }
    return this.customerIdentity;
  }

  /** Look again every `everyMs` until RoomIO has linked the session to its customer. */
  watchLink(everyMs = 50): void {
    if (this.refresh() !== null || this.call.machine.state !== "active") return;
    this.linkTimer = setTimeout(() => this.watchLink(everyMs), everyMs);
    this.linkTimer.unref?.();
  }

  stop(): void {
    if (this.linkTimer !== null) clearTimeout(this.linkTimer);
    this.linkTimer = null;
  }

  // ------------------------------------------------------------------ room events

  readonly onParticipantConnected = (participant: RemoteParticipantLike): void => {
    try {
      const machine = this.call.machine;
      const held = machine.held;
      if (held !== null && held.initiator.identity === participant.identity && !this.call.sessionClosing()) {
        machine.takeHeld();
        this.cancelGrace();
        logger.info(`the customer ${participant.identity} is back; the call goes on`);
      }
      // RoomIO links the customer in its own handler; look again a moment later
      setTimeout(() => this.refresh(), 0);
      setTimeout(() => this.refresh(), 50);
    } catch (e) {
      logger.error("participantConnected handler failed", e);
    }
  };

  readonly onParticipantDisconnected = (participant: RemoteParticipantLike): void => {
    try {
      const customer = this.customerIdentity;
      if (customer === null || participant.identity !== customer) {
        this.refresh();
        return;
      }
      const code = participant.disconnectReason ?? DisconnectReason.UNKNOWN_REASON;
      const name = disconnectReasonName(code);
      if (this.call.machine.state !== "active") {
        this.call.machine.note({ disconnectReason: name });
        return;
      }
      if (!this.closeOnDisconnect()) {
        logger.info(`the customer left (${name}); closeOnDisconnect=false`);
        return;
      }
      if (code === DisconnectReason.ROOM_DELETED) this.systemEnd("room-deleted", "server", "room", name);
      else this.customerLeft(customer, "disconnect", name);
    } catch (e) {
      logger.error("participantDisconnected handler failed", e);
    }
  };

  private closeOnDisconnect(): boolean {
    try {
      const io = this.call.session._roomIO as { inputOptions?: { closeOnDisconnect?: boolean } } | undefined;
      return io?.inputOptions?.closeOnDisconnect ?? true;
    } catch {
      return true;
    }
  }

  // ------------------------------------------------------------------ tentative ends

  /** The customer left without a request: tentative for `disconnectGraceMs`. */
  customerLeft(identity: string | null, channel: Channel, disconnectReason: string | null): void {
    const trigger = makeTrigger({
      reason: "customer-disconnected",
      initiator: { kind: "customer", identity },
      channel,
      disconnectReason,
    });
    if (this.tentative(trigger, this.disconnectGraceMs)) {
      logger.info(
        `the customer left (${disconnectReason ?? channel}); waiting ${this.disconnectGraceMs} ms for an end request explaining it`,
      );
    }
  }

  /** The room was deleted or the worker shuts the job down: tentative for `shutdownGraceMs`
   * when nothing else is held, else at once. */
  systemEnd(reason: string, kind: InitiatorKind, channel: Channel, disconnectReason: string | null): void {
    const trigger = makeTrigger({ reason, initiator: { kind, identity: null }, channel, disconnectReason });
    if (this.call.machine.held !== null && !this.holdingSystemEnd) {
      this.submit(trigger); // it beats a customer leaving, as any other trigger
    } else if (this.tentative(trigger, this.shutdownGraceMs, true)) {
      logger.info(`${reason}; waiting ${this.shutdownGraceMs} ms for an end request already on its way`);
    }
  }

  cancelGrace(): void {
    if (this.graceTimer !== null) clearTimeout(this.graceTimer);
    this.graceTimer = null;
    this.holdingSystemEnd = false;
    this.markSettled();
  }

  /** The server closed the room: a held end is accepted now; otherwise the customer is gone. */
  roomClosed(disconnectReason: string): void {
    const machine = this.call.machine;
    let held = machine.takeHeld();
    this.cancelGrace();
    if (held === null) {
      held = makeTrigger({
        reason: "customer-disconnected",
        initiator: { kind: "customer", identity: this.customerIdentity },
        channel: "room",
        disconnectReason,
      });
    }
    if (machine.state === "active") this.submit(held);
  }

  private tentative(trigger: Trigger, graceMs: number, system = false): boolean {
    if (graceMs <= 0) {
      this.submit(trigger);
      return false;
    }
    if (!this.call.machine.hold(trigger)) return false;
    this.holdingSystemEnd = system;
    if (this.settledNow) {
      this.settledNow = false;
      this.settledWaiters = deferred<void>();
    }
    this.graceTimer = setTimeout(() => this.graceOver(), graceMs);
    return true;
  }

  private graceOver(): void {
    this.graceTimer = null;
    this.holdingSystemEnd = false;
    const machine = this.call.machine;
    const held = machine.takeHeld();
    if (held !== null && machine.state === "active") this.submit(held);
    this.markSettled();
  }

  private markSettled(): void {
    if (!this.settledNow) {
      this.settledNow = true;
      this.settledWaiters.resolve();
    }
  }
}
