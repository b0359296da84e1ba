/**
 * `endcall/testing`: a TEST DOUBLE of the livekit-client `Room` subset that `endCall` uses, plus
 * a scripted fake agent that speaks the endcall protocol. For unit tests of pages that end calls;
 * it is not LiveKit (no network, no media). Never imported by the library itself.
 */
import {
  ATTR_END_ID,
  ATTR_REASON,
  ATTR_REQUEST_ID,
  ATTR_STATE,
  DEFAULT_METHOD,
  PARTICIPANT_KIND_AGENT,
  ProtocolError,
  RoomEvents,
  ackTopic,
  encodeAck,
  encodeError,
  parseRequest,
  rpcCode,
  type AckStatus,
  type EndCallLocalParticipant,
  type EndCallParticipant,
  type EndCallRoom,
} from "endcall";

/** livekit-client's `RpcError.ErrorCode` values. */
export const RpcErrorCode = {
  APPLICATION_ERROR: 1500,
  CONNECTION_TIMEOUT: 1501,
  RESPONSE_TIMEOUT: 1502,
  RECIPIENT_DISCONNECTED: 1503,
  SEND_FAILED: 1505,
  UNSUPPORTED_METHOD: 1400,
  RECIPIENT_NOT_FOUND: 1401,
} as const;

/** Shaped like livekit-client's `RpcError` (`code`, `message`, `data`). */
export class FakeRpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: string,
  ) {
    super(message);
    this.name = "RpcError";
  }
}

export interface RpcParams {
  destinationIdentity: string;
  method: string;
  payload: string;
  responseTimeout?: number;
}
export interface PublishOptions {
  reliable?: boolean;
  destinationIdentities?: string[];
  topic?: string;
}
/** Answers an RPC sent by the local participant; the default throws RECIPIENT_NOT_FOUND. */
export type RpcHandler = (params: RpcParams) => Promise<string>;

export class FakeParticipant implements EndCallParticipant {
  attributes: Record<string, string>;
  constructor(
    readonly identity: string,
    readonly kind = 0,
    attributes: Record<string, string> = {},
  ) {
    this.attributes = { ...attributes };
  }
}

export class FakeLocalParticipant implements EndCallLocalParticipant {
  /** Every RPC the page performed, in order. */
  readonly rpcCalls: RpcParams[] = [];
  /** Every data packet the page published, in order. */
  readonly published: Array<{ data: Uint8Array; options: PublishOptions }> = [];
  /** Handlers by destination identity (set by `FakeAgent`). */
  readonly rpcHandlers = new Map<string, RpcHandler>();
  /** Called for every published packet (set by `FakeAgent`); may throw to make publishData fail. */
  onPublish: ((data: Uint8Array, options: PublishOptions) => void) | undefined;
  /** A new sid on every `FakeRoom.connect()`, as livekit-client gives one on every join. */
  sid = "PA_fake_1";

  constructor(
    readonly identity: string,
    private readonly room: FakeRoom,
  ) {}

  performRpc(params: RpcParams): Promise<string> {
    this.rpcCalls.push(params);
    const handler = this.rpcHandlers.get(params.destinationIdentity);
    if (!handler || !this.room.remoteParticipants.has(params.destinationIdentity)) {
      return Promise.reject(new FakeRpcError(RpcErrorCode.RECIPIENT_NOT_FOUND, "Recipient not found"));
    }
    return handler(params);
  }

  async publishData(data: Uint8Array, options: PublishOptions = {}): Promise<void> {
    this.published.push({ data, options });
    this.onPublish?.(data, options);
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listener = (...args: any[]) => void;

/**
 * The Room subset `endCall` uses, in memory. Events use livekit-client's `RoomEvent` names. It
 * starts connected (its first connection); `disconnect()` then `connect()` is the next
 * connection of the same room object, as LiveKit's starters reuse one `Room` for every call.
 */
export class FakeRoom implements EndCallRoom {
  readonly localParticipant: FakeLocalParticipant;
  readonly remoteParticipants = new Map<string, FakeParticipant>();
  /** How many times `disconnect()` was called. */
  disconnectCalls = 0;
  /** How many connections the room has had (the one it starts with counts). */
  connections = 1;
  state: "connected" | "disconnected" = "connected";
  private readonly listeners = new Map<string, Set<Listener>>();

  constructor(
    readonly name = "interview-1",
    localIdentity = "candidate-1",
  ) {
    this.localParticipant = new FakeLocalParticipant(localIdentity, this);
  }

  on(event: string, listener: Listener): this {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(listener);
    return this;
  }

  off(event: string, listener: Listener): this {
    this.listeners.get(event)?.delete(listener);
    return this;
  }

  emit(event: string, ...args: unknown[]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) listener(...args);
  }

  /** Listeners currently attached (all events, or one): a leak check for tests. */
  listenerCount(event?: string): number {
    if (event) return this.listeners.get(event)?.size ?? 0;
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }

  /** Leave: like livekit-client, the remote participants are forgotten (no event for each),
   * then `connectionStateChanged` ("disconnected") and `disconnected` (CLIENT_INITIATED). */
  async disconnect(): Promise<void> {
    this.disconnectCalls += 1;
    if (this.state === "disconnected") return;
    this.state = "disconnected";
    this.remoteParticipants.clear();
    this.emit(RoomEvents.ConnectionStateChanged, "disconnected");
    this.emit(RoomEvents.Disconnected, 1 /* CLIENT_INITIATED */);
  }

  /** Connect again (a no-op while connected): a new connection of this room object, with a new
   * local participant sid and no remote participants yet (add a `FakeAgent` for the new call);
   * emits `connectionStateChanged` ("connected") and `connected`, as livekit-client does. */
  async connect(_url?: string, _token?: string): Promise<void> {
    if (this.state === "connected") return;
    this.connections += 1;
    this.localParticipant.sid = `PA_fake_${this.connections}`;
    this.state = "connected";
    this.emit(RoomEvents.ConnectionStateChanged, "connected");
    this.emit("connected");
  }

  addParticipant(identity: string, kind = 0, attributes: Record<string, string> = {}): FakeParticipant {
    const participant = new FakeParticipant(identity, kind, attributes);
    this.remoteParticipants.set(identity, participant);
    this.emit("participantConnected", participant);
    return participant;
  }

  /** The participant leaves: removed first, then `participantDisconnected` (as livekit-client). */
  removeParticipant(identity: string): void {
    const participant = this.remoteParticipants.get(identity);
    if (!participant) return;
    this.remoteParticipants.delete(identity);
    this.emit(RoomEvents.ParticipantDisconnected, participant);
  }

  setAttributes(identity: string, changed: Record<string, string>): void {
    const participant = this.remoteParticipants.get(identity);
    if (!participant) throw new Error(`no participant ${identity}`);
    participant.attributes = { ...participant.attributes, ...changed };
    this.emit(RoomEvents.ParticipantAttributesChanged, changed, participant);
  }

  /** A data packet from a remote participant to the page. */
  receiveData(from: string, payload: string | Uint8Array, topic?: string): void {
    const data = typeof payload == "string" ? new TextEncoder().encode(payload) : payload;
    this.emit(RoomEvents.DataReceived, data, this.remoteParticipants.get(from), 0, topic);
  }
}

/** How the fake agent answers on a channel. */
export type AgentBehaviour =
  | "ack" // answer with an end.ack
  | "silent" // never answer
  | "unsupported" // RPC: UNSUPPORTED_METHOD (no handler); data: ignore
  | "forbidden" // answer with end.error forbidden
  | "fail"; // RPC: APPLICATION_ERROR; data: publishData rejects

export interface FakeAgentOptions {
  identity?: string;
  rpc?: AgentBehaviour;
  data?: AgentBehaviour;
  method?: string;
  endId?: string;
  drainMs?: number;
  /** Delay before answering, in ms (default 0). */
  delayMs?: number;
  /** Set `endcall.*` attributes as the real agent does (default true). */
  attributes?: boolean;
}

/**
 * A scripted agent in a `FakeRoom`: kind AGENT, answers end.requests on RPC and data as told,
 * with the real agent's state machine (first request accepted, later ones `already_ending`,
 * a repeated id gets the same answer) and its `endcall.*` attributes.
 */
export class FakeAgent {
  readonly identity: string;
  readonly participant: FakeParticipant;
  /** Every end.request the agent received, with its channel. */
  readonly received: Array<{ channel: "rpc" | "data"; id: string; reason: string }> = [];
  private endReason: string | undefined;
  private readonly answers = new Map<string, AckStatus>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(
    readonly room: FakeRoom,
    private readonly options: FakeAgentOptions = {},
  ) {
    this.identity = options.identity ?? "agent-1";
    this.participant = room.addParticipant(this.identity, PARTICIPANT_KIND_AGENT, {
      "lk.agent.state": "listening",
      ...(options.attributes === false ? {} : { [ATTR_STATE]: "active" }),
    });
    const method = options.method ?? DEFAULT_METHOD;
    room.localParticipant.rpcHandlers.set(this.identity, (params) => this.onRpc(params, method));
    room.localParticipant.onPublish = (data, publish) => this.onData(data, publish, method);
  }

  get endId(): string {
    return this.options.endId ?? "e_fake";
  }

  /** The agent ends the call itself (e.g. `assistant-ended-call`, `exceeded-max-duration`). */
  end(reason: string, state: "ending" | "ended" = "ending"): void {
    this.endReason ??= reason;
    this.room.setAttributes(this.identity, {
      [ATTR_STATE]: state,
      [ATTR_REASON]: this.endReason,
      [ATTR_END_ID]: this.endId,
    });
  }

  /** The agent finishes: `endcall.state=ended`, then it leaves the room. */
  finish(leave = true): void {
    this.end(this.endReason ?? "customer-ended-call", "ended");
    if (leave) this.room.removeParticipant(this.identity);
  }

  /** Cancel pending delayed answers. */
  dispose(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private later<T>(value: () => T): Promise<T> {
    const ms = this.options.delayMs ?? 0;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        try {
          resolve(value());
        } catch (error) {
          reject(error as Error);
        }
      }, ms);
      this.timers.add(timer);
    });
  }

  /** The real agent's state machine: one ack per request id, first one accepted. */
  private answer(payload: string, channel: "rpc" | "data"): string {
    const request = parseRequest(payload, { origin: "client" });
    this.received.push({ channel, id: request.id, reason: request.reason });
    let status = this.answers.get(request.id);
    if (!status) {
      status = this.endReason ? "already_ending" : "accepted";
      this.answers.set(request.id, status);
    }
    if (status === "accepted") this.endReason = request.reason;
    if (this.options.attributes !== false) {
      this.room.setAttributes(this.identity, {
        [ATTR_STATE]: "ending",
        [ATTR_REASON]: this.endReason!,
        [ATTR_END_ID]: this.endId,
        [ATTR_REQUEST_ID]: request.id,
      });
    }
    return encodeAck({
      id: request.id,
      status,
      end_id: this.endId,
      reason: this.endReason!,
      drain_ms: this.options.drainMs ?? 1_000,
    });
  }

  private onRpc(params: RpcParams, method: string): Promise<string> {
    const behaviour = this.options.rpc ?? "ack";
    if (params.method !== method || behaviour === "unsupported") {
      return Promise.reject(new FakeRpcError(RpcErrorCode.UNSUPPORTED_METHOD, "Method not supported at destination"));
    }
    if (behaviour === "silent") return new Promise(() => {});
    if (behaviour === "fail") {
      return this.later(() => {
        throw new FakeRpcError(RpcErrorCode.APPLICATION_ERROR, "Application error in method handler");
      });
    }
    if (behaviour === "forbidden") {
      const error = new ProtocolError("forbidden", "only the customer may end this call", null);
      return this.later(() => {
        throw new FakeRpcError(rpcCode("forbidden"), error.message, encodeError(error));
      });
    }
    return this.later(() => this.answer(params.payload, "rpc"));
  }

  private onData(data: Uint8Array, publish: PublishOptions, method: string): void {
    if (publish.topic !== method || !publish.destinationIdentities?.includes(this.identity)) return;
    const behaviour = this.options.data ?? "ack";
    if (behaviour === "fail") throw new Error("data channel closed");
    if (behaviour !== "ack" && behaviour !== "forbidden") return;
    const payload = new TextDecoder().decode(data);
    void this.later(() => {
      const reply =
        behaviour === "ack"
          ? this.answer(payload, "data")
          : encodeError({ id: parseRequest(payload, { origin: "client" }).id, code: "forbidden", message: "no" });
      this.room.receiveData(this.identity, reply, ackTopic(method));
    }).catch(() => {});
  }
}

// The loopback Room double (browser participant of the Python loopback server, over its bridge).
export {
  LoopbackLocalParticipant,
  LoopbackParticipant,
  LoopbackRoom,
  LoopbackRpcError,
  LoopbackTextStreamReader,
  type LoopbackConnectOptions,
} from "./testing/loopbackRoom";
