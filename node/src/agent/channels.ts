/**
 * The three ways an `end.request` reaches the agent (protocol.md §4), behind one `decide`:
 *
 * 1. **RPC** method `<method>` (`localParticipant.registerRpcMethod`): the response is the
 *    `end.ack`; protocol errors are thrown as `RpcError(4400|4403|4426|4500, message,
 *    data = end.error JSON)`.
 * 2. **Data**: a reliable packet on topic `<method>` from a participant; the answer (`end.ack`
 *    or `end.error`) goes back on topic `<method>.ack`, to the sender only.
 * 3. **Server channel**: the `endcall.request` attribute written on the agent's own participant
 *    by the LiveKit server API (origin `server`). The ack is the agent's attributes; a refusal
 *    is the end.error in `endcall.error`.
 *
 * A data packet whose sender the SDK does not name is *not* the server: it is ignored (logged,
 * rate-limited). Acks wait for `beforeAck` (the accepted end being durable). Nothing here
 * throws into the room's event loop. Port of Python's `endcall.agent.channels`.
 */
import { RpcError } from "@livekit/rtc-node";
import {
  ATTR_REQUEST,
  ProtocolError,
  ackTopic,
  encodeAck,
  encodeError,
  parseRequest,
  rpcCode,
  type EndAck,
  type EndRequest,
  type Origin,
} from "endcall";
import { LogLimiter, logger } from "./log.js";
import type { Channel } from "./machine.js";
import type { ParticipantLike, RemoteParticipantLike, RoomLike } from "./surface.js";

/** Authorize and submit one parsed request; return its ack or throw `ProtocolError`. */
export type Decide = (request: EndRequest, origin: Origin, channel: Channel, caller: string | null) => EndAck;

const encoder = new TextEncoder();

export class Channels {
  private attached = false;
  private readonly limiter = new LogLimiter();
  private lastAttrRequest: string | null = null;
  private readonly pendingSends = new Set<Promise<void>>();
  readonly ackTopic: string;

  constructor(
    private readonly room: RoomLike,
    private readonly opts: {
      method: string;
      decide: Decide;
      beforeAck?: () => Promise<unknown>;
      /** Writes a refused server-channel request's end.error (`endcall.error`). */
      refuse?: (errorJson: string) => void;
    },
  ) {
    this.ackTopic = ackTopic(opts.method);
  }

  get method(): string {
    return this.opts.method;
  }

  attach(): void {
    if (this.attached) return;
    const local = this.room.localParticipant;
    if (local === undefined) throw new Error("the room is not connected (no local participant): call ctx.connect() first");
    this.attached = true;
    local.registerRpcMethod(this.opts.method, this.onRpc);
    this.room.on("dataReceived", this.onData);
    this.room.on("participantAttributesChanged", this.onAttributes);
    // the fallback server may have written the request before we were listening
    const current = local.attributes?.[ATTR_REQUEST];
    if (current) this.onAttrRequest(current);
  }

  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    try {
      this.room.localParticipant?.unregisterRpcMethod(this.opts.method);
    } catch (e) {
      logger.debug(`unregisterRpcMethod failed: ${String(e)}`);
    }
    this.room.off("dataReceived", this.onData);
    this.room.off("participantAttributesChanged", this.onAttributes);
  }

  /** Detach, and wait (bounded) for data acks being sent. */
  async close(timeoutMs = 2_000): Promise<void> {
    this.detach();
    const all = Promise.allSettled([...this.pendingSends]);
    await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs))]);
  }

  // ------------------------------------------------------------------ decide

  private answer(raw: string | Uint8Array, origin: Origin, channel: Channel, caller: string | null): EndAck | ProtocolError {
    try {
      const request = parseRequest(raw, { origin });
      return this.opts.decide(request, origin, channel, caller);
    } catch (e) {
      if (e instanceof ProtocolError) {
        if (this.limiter.allow()) {
          logger.warn(
            `rejected end request over ${channel} from ${caller ?? "the server"}: ${e.code}: ${e.message} (request id ${e.requestId})`,
          );
        }
        return e;
      }
      logger.error(`failed to handle an end request over ${channel}`, e);
      return new ProtocolError("internal", `the agent failed: ${e instanceof Error ? e.name : typeof e}`);
    }
  }

  // ------------------------------------------------------------------ RPC

  private readonly onRpc = async (data: { callerIdentity: string; payload: string }): Promise<string> => {
    const answer = this.answer(data.payload, "client", "rpc", data.callerIdentity);
    if (answer instanceof ProtocolError) {
      throw new RpcError(rpcCode(answer.code), answer.message.slice(0, 256), encodeError(answer));
    }
    if (this.opts.beforeAck) {
      try {
        await this.opts.beforeAck();
      } catch (e) {
        logger.warn(`waiting before the ack failed: ${String(e)}`);
      }
    }
    return encodeAck(answer);
  };

  // ------------------------------------------------------------------ data

  private readonly onData = (
    payload: Uint8Array,
    participant?: RemoteParticipantLike,
    _kind?: unknown,
    topic?: string,
  ): void => {
    try {
      if (topic !== this.opts.method) return;
      if (participant === undefined || participant === null) {
        // the server API, or a participant the SDK does not know (yet): not provable
        if (this.limiter.allow()) {
          logger.warn(
            `ignored an end request on ${JSON.stringify(topic)} from a sender the room does not name ` +
              `(the server channel is the ${ATTR_REQUEST} attribute)`,
          );
        }
        return;
      }
      const answer = this.answer(payload, "client", "data", participant.identity);
      let body: string;
      try {
        body = answer instanceof ProtocolError ? encodeError(answer) : encodeAck(answer);
      } catch {
        return;
      }
      const send = this.sendAck(body, participant.identity);
      this.pendingSends.add(send);
      void send.finally(() => this.pendingSends.delete(send));
    } catch (e) {
      logger.error("data handler failed", e);
    }
  };

  private async sendAck(body: string, identity: string): Promise<void> {
    try {
      if (this.opts.beforeAck) await this.opts.beforeAck();
      const local = this.room.localParticipant;
      if (local === undefined) return;
      await local.publishData(encoder.encode(body), {
        reliable: true,
        destination_identities: [identity],
        topic: this.ackTopic,
      });
    } catch (e) {
      if (this.limiter.allow()) logger.warn(`could not send the data ack to ${identity}: ${String(e)}`);
    }
  }

  // ------------------------------------------------------------------ server attribute

  private readonly onAttributes = (changed: Record<string, string>, participant: ParticipantLike): void => {
    try {
      if (participant.identity !== this.room.localParticipant?.identity) return;
      const value = changed[ATTR_REQUEST];
      if (value) this.onAttrRequest(value);
    } catch (e) {
      logger.error("attributes handler failed", e);
    }
  };

  private onAttrRequest(value: string): void {
    if (value === this.lastAttrRequest) return;
    this.lastAttrRequest = value;
    const answer = this.answer(value, "server", "server", null);
    if (answer instanceof ProtocolError && answer.requestId && this.opts.refuse) {
      try {
        this.opts.refuse(encodeError(answer));
      } catch (e) {
        logger.error(`could not publish the refusal of ${answer.requestId}`, e);
      }
    }
  }
}
