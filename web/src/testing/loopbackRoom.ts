/**
 * `LoopbackRoom`: a test double of livekit-client's `Room` for pages that run against the
 * endcall loopback server (Python `endcall.testing.LoopbackServer` + its WebSocket bridge,
 * `endcall.testing.bridge`) instead of a LiveKit server. It implements the part of `Room` that
 * `endCall()` / `useEndInterview()` and a typical agent page use, with livekit-client's event
 * names, argument orders, `RpcError` codes and `performRpc` timeouts. No media.
 *
 * ```ts
 * const room = new LoopbackRoom();
 * await room.connect("ws://127.0.0.1:7880/loopback", token, { room: "r1", identity: "c1" });
 * ```
 */

/** livekit-client's `DisconnectReason` numbers (protobuf). */
export const DisconnectReason = {
  UNKNOWN_REASON: 0,
  CLIENT_INITIATED: 1,
  DUPLICATE_IDENTITY: 2,
  SERVER_SHUTDOWN: 3,
  PARTICIPANT_REMOVED: 4,
  ROOM_DELETED: 5,
  STATE_MISMATCH: 6,
  JOIN_FAILURE: 7,
  MIGRATION: 8,
  SIGNAL_CLOSE: 9,
  ROOM_CLOSED: 10,
} as const;

/** livekit-client's `ParticipantKind` numbers. */
export const ParticipantKind = { STANDARD: 0, INGRESS: 1, EGRESS: 2, SIP: 3, AGENT: 4 } as const;

/** livekit-client's `DataPacket_Kind`. */
export const DataPacketKind = { RELIABLE: 0, LOSSY: 1 } as const;

/** The `RpcError` codes livekit-client uses for transport failures. */
export const RpcErrorCode = {
  APPLICATION_ERROR: 1500,
  CONNECTION_TIMEOUT: 1501,
  RESPONSE_TIMEOUT: 1502,
  RECIPIENT_DISCONNECTED: 1503,
  RESPONSE_PAYLOAD_TOO_LARGE: 1504,
  SEND_FAILED: 1505,
  UNSUPPORTED_METHOD: 1400,
  RECIPIENT_NOT_FOUND: 1401,
  REQUEST_PAYLOAD_TOO_LARGE: 1402,
} as const;

/** Same shape as livekit-client's `RpcError` (`code`, `message`, `data`). */
export class LoopbackRpcError extends Error {
  override name = "RpcError";
  constructor(
    readonly code: number,
    message: string,
    readonly data?: string,
  ) {
    super(message);
  }
}

/** A participant as the page sees it (livekit-client `Participant` fields endcall reads). */
export class LoopbackParticipant {
  disconnectReason: number | undefined;
  constructor(
    readonly sid: string,
    readonly identity: string,
    public name: string,
    public metadata: string,
    readonly kind: number,
    public attributes: Record<string, string>,
  ) {}
  get isAgent(): boolean {
    return this.kind === ParticipantKind.AGENT;
  }
}

interface WireParticipant {
  sid: string;
  identity: string;
  name: string;
  metadata: string;
  kind: number;
  attributes: Record<string, string>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listener = (...args: any[]) => void;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Message = Record<string, any>;

const fromWire = (p: WireParticipant): LoopbackParticipant =>
  new LoopbackParticipant(p.sid, p.identity, p.name, p.metadata, p.kind, { ...p.attributes });

const toBase64 = (data: Uint8Array): string => {
  let s = "";
  for (const b of data) s += String.fromCharCode(b);
  return btoa(s);
};

const fromBase64 = (text: string): Uint8Array => {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
};

const byteLength = (s: string): number => new TextEncoder().encode(s).length;

/** The local participant: RPC, data and attributes go through the bridge. */
export class LoopbackLocalParticipant extends LoopbackParticipant {
  constructor(
    private readonly room: LoopbackRoom,
    p: WireParticipant,
  ) {
    super(p.sid, p.identity, p.name, p.metadata, p.kind, { ...p.attributes });
  }

  /** As livekit-client: `responseTimeout` (default 15,000 ms) bounds the wait here; the
   * recipient is given at least 8,000 ms. Failures reject with an `RpcError`-shaped error. */
  async performRpc(params: {
    destinationIdentity: string;
    method: string;
    payload: string;
    responseTimeout?: number;
  }): Promise<string> {
    const responseTimeout = params.responseTimeout ?? 15_000;
    if (byteLength(params.payload) > 15_360) {
      throw new LoopbackRpcError(
        RpcErrorCode.REQUEST_PAYLOAD_TOO_LARGE,
        "Request payload too large",
      );
    }
    const answer = this.room._request({
      op: "perform_rpc",
      destination: params.destinationIdentity,
      method: params.method,
      payload: params.payload,
      response_timeout_ms: Math.max(responseTimeout, 8_000),
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LoopbackRpcError(RpcErrorCode.RESPONSE_TIMEOUT, "Response timeout")),
        responseTimeout,
      );
    });
    try {
      const msg = await Promise.race([answer, timeout]);
      return String(msg.payload ?? "");
    } finally {
      clearTimeout(timer);
      answer.catch(() => undefined);
    }
  }

  async publishData(
    data: Uint8Array,
    options: { reliable?: boolean; destinationIdentities?: string[]; topic?: string } = {},
  ): Promise<void> {
    await this.room._request({
      op: "publish_data",
      data_b64: toBase64(data),
      reliable: options.reliable ?? true,
      destinations: options.destinationIdentities ?? [],
      topic: options.topic ?? "",
    });
  }

  async setAttributes(attributes: Record<string, string>): Promise<void> {
    await this.room._request({ op: "set_attributes", attributes });
  }

  /** Answer RPCs addressed to this participant (livekit-client's `registerRpcMethod`). */
  registerRpcMethod(
    method: string,
    handler: (data: {
      requestId: string;
      callerIdentity: string;
      payload: string;
      responseTimeout: number;
    }) => Promise<string>,
  ): void {
    this.room._rpcHandlers.set(method, handler);
    void this.room._request({ op: "register_rpc", method }).catch(() => undefined);
  }
}

/** livekit-client's `TextStreamReader` shape: iterate for chunks, or `readAll()`. */
export class LoopbackTextStreamReader implements AsyncIterable<string> {
  private readonly chunks: string[] = [];
  private done = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(
    readonly info: {
      id: string;
      topic: string;
      timestamp: number;
      mimeType: string;
      attributes: Record<string, string>;
    },
  ) {}

  /** @internal */
  _push(text: string): void {
    this.chunks.push(text);
    this.wake?.();
  }

  /** @internal */
  _close(error?: string): void {
    this.done = true;
    if (error) this.error = new Error(error);
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk !== undefined) {
        yield chunk;
        continue;
      }
      if (this.done) {
        if (this.error) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  async readAll(): Promise<string> {
    let all = "";
    for await (const chunk of this) all += chunk;
    return all;
  }
}

export type TextStreamHandler = (
  reader: LoopbackTextStreamReader,
  participantInfo: { identity: string },
) => void;

export interface LoopbackConnectOptions {
  /** Room to join (with a LiveKit token the bridge takes room and identity from the token). */
  room: string;
  identity: string;
  name?: string;
  kind?: number;
  attributes?: Record<string, string>;
  /** Send `leave` on `pagehide`/`beforeunload`, as livekit-client does (default true). */
  disconnectOnPageLeave?: boolean;
}

/**
 * The `Room` double. Events (livekit-client names and arguments): `participantConnected`
 * (participant), `participantDisconnected` (participant, reason), `participantAttributesChanged`
 * (changed, participant), `participantMetadataChanged` (previous, participant), `dataReceived`
 * (payload, participant | undefined, kind, topic), `connectionStateChanged` (state),
 * `disconnected` (reason).
 */
export class LoopbackRoom {
  name = "";
  sid = "";
  state: "disconnected" | "connecting" | "connected" = "disconnected";
  localParticipant!: LoopbackLocalParticipant;
  readonly remoteParticipants = new Map<string, LoopbackParticipant>();
  /** @internal */
  readonly _rpcHandlers = new Map<
    string,
    Parameters<LoopbackLocalParticipant["registerRpcMethod"]>[1]
  >();
  private ws: WebSocket | undefined;
  private seq = 0;
  private readonly pending = new Map<
    number,
    { resolve: (m: Message) => void; reject: (e: unknown) => void }
  >();
  private readonly listeners = new Map<string, Set<Listener>>();
  private pageLeave: (() => void) | undefined;
  private readonly textHandlers = new Map<string, TextStreamHandler>();
  private readonly textStreams = new Map<string, LoopbackTextStreamReader>();

  /** livekit-client's `registerTextStreamHandler` (call it before or after `connect`). */
  registerTextStreamHandler(topic: string, handler: TextStreamHandler): void {
    if (this.textHandlers.has(topic)) {
      throw new Error(`A text stream handler for topic "${topic}" has already been set.`);
    }
    this.textHandlers.set(topic, handler);
    if (this.state === "connected") {
      void this._request({ op: "register_text_stream", topic }).catch(() => undefined);
    }
  }

  unregisterTextStreamHandler(topic: string): void {
    this.textHandlers.delete(topic);
  }

  on(event: string, listener: Listener): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return this;
  }

  off(event: string, listener: Listener): this {
    this.listeners.get(event)?.delete(listener);
    return this;
  }

  once(event: string, listener: Listener): this {
    const wrapped: Listener = (...args) => {
      this.off(event, wrapped);
      listener(...args);
    };
    return this.on(event, wrapped);
  }

  emit(event: string, ...args: unknown[]): boolean {
    const set = this.listeners.get(event);
    if (!set || set.size === 0) return false;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (e) {
        console.error(`LoopbackRoom: ${event} listener failed`, e);
      }
    }
    return true;
  }

  getParticipantByIdentity(identity: string): LoopbackParticipant | undefined {
    if (this.localParticipant?.identity === identity) return this.localParticipant;
    return this.remoteParticipants.get(identity);
  }

  /** Connect to the bridge at `url` (`ws://…/loopback`) and join. */
  async connect(url: string, token: string | undefined, opts: LoopbackConnectOptions): Promise<void> {
    if (this.state !== "disconnected") throw new Error("already connected");
    this.setState("connecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot reach the loopback bridge at ${url}`));
    });
    ws.onmessage = (ev) => this.onMessage(String(ev.data));
    ws.onclose = () => this.onClose();
    let joined: Message;
    try {
      joined = await this._request({
        op: "join",
        room: opts.room,
        identity: opts.identity,
        name: opts.name ?? "",
        kind: opts.kind ?? ParticipantKind.STANDARD,
        attributes: opts.attributes ?? {},
        ...(token ? { token } : {}),
      });
    } catch (e) {
      ws.close();
      this.setState("disconnected");
      throw e;
    }
    this.name = joined.room.name;
    this.sid = joined.room.sid;
    this.localParticipant = new LoopbackLocalParticipant(this, joined.local);
    for (const p of joined.participants as WireParticipant[]) {
      this.remoteParticipants.set(p.identity, fromWire(p));
    }
    for (const topic of this.textHandlers.keys()) {
      await this._request({ op: "register_text_stream", topic });
    }
    if ((opts.disconnectOnPageLeave ?? true) && typeof window !== "undefined") {
      this.pageLeave = () => void this.disconnect();
      window.addEventListener("pagehide", this.pageLeave);
      window.addEventListener("beforeunload", this.pageLeave);
    }
    this.setState("connected");
  }

  /** Leave the room (`CLIENT_INITIATED` for the others); emits `disconnected` locally. */
  async disconnect(_stopTracks = true): Promise<void> {
    if (this.state === "disconnected") return;
    try {
      await this._request({ op: "leave" });
    } catch {
      // already gone: still disconnected locally
    }
    this.finish(DisconnectReason.CLIENT_INITIATED);
  }

  /** @internal */
  _request(msg: Message): Promise<Message> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new LoopbackRpcError(RpcErrorCode.SEND_FAILED, "not connected"));
    }
    const seq = ++this.seq;
    return new Promise<Message>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      ws.send(JSON.stringify({ ...msg, seq }));
    });
  }

  private setState(state: LoopbackRoom["state"]): void {
    if (this.state === state) return;
    this.state = state;
    this.emit("connectionStateChanged", state);
  }

  private finish(reason: number): void {
    if (this.state === "disconnected") return;
    if (this.pageLeave && typeof window !== "undefined") {
      window.removeEventListener("pagehide", this.pageLeave);
      window.removeEventListener("beforeunload", this.pageLeave);
    }
    for (const reader of this.textStreams.values()) reader._close("room disconnected");
    this.textStreams.clear();
    this.setState("disconnected");
    this.emit("disconnected", reason);
    try {
      this.ws?.close();
    } catch {
      // ignore
    }
  }

  private onClose(): void {
    for (const { reject } of this.pending.values()) {
      reject(new LoopbackRpcError(RpcErrorCode.SEND_FAILED, "connection closed"));
    }
    this.pending.clear();
    this.finish(DisconnectReason.SIGNAL_CLOSE);
  }

  private onMessage(text: string): void {
    const msg = JSON.parse(text) as Message;
    if ((msg.op === "ok" || msg.op === "error") && this.pending.has(msg.seq)) {
      const { resolve, reject } = this.pending.get(msg.seq)!;
      this.pending.delete(msg.seq);
      if (msg.op === "ok") resolve(msg);
      else reject(new LoopbackRpcError(msg.code, msg.message, msg.data ?? undefined));
      return;
    }
    switch (msg.op) {
      case "participant_connected": {
        const p = fromWire(msg.participant);
        this.remoteParticipants.set(p.identity, p);
        this.emit("participantConnected", p);
        break;
      }
      case "participant_disconnected": {
        const p = this.remoteParticipants.get(msg.identity);
        if (!p) break;
        this.remoteParticipants.delete(msg.identity);
        p.disconnectReason = msg.reason;
        this.emit("participantDisconnected", p, msg.reason);
        break;
      }
      case "attributes_changed": {
        const p = this.getParticipantByIdentity(msg.identity);
        if (!p) break;
        p.attributes = { ...msg.attributes };
        this.emit("participantAttributesChanged", msg.changed, p);
        break;
      }
      case "metadata_changed": {
        const p = this.getParticipantByIdentity(msg.identity);
        if (!p) break;
        const previous = p.metadata;
        p.metadata = msg.metadata;
        this.emit("participantMetadataChanged", previous, p);
        break;
      }
      case "data_received": {
        const from = msg.from ? this.remoteParticipants.get(msg.from) : undefined;
        const kind = msg.reliable ? DataPacketKind.RELIABLE : DataPacketKind.LOSSY;
        this.emit("dataReceived", fromBase64(msg.data_b64), from, kind, msg.topic || undefined);
        break;
      }
      case "text_stream_open": {
        const handler = this.textHandlers.get(msg.topic);
        if (!handler) break;
        const reader = new LoopbackTextStreamReader({
          id: msg.stream_id,
          topic: msg.topic,
          timestamp: msg.timestamp,
          mimeType: "text/plain",
          attributes: msg.attributes ?? {},
        });
        this.textStreams.set(msg.stream_id, reader);
        try {
          handler(reader, { identity: msg.from });
        } catch (e) {
          console.error("LoopbackRoom: text stream handler failed", e);
        }
        break;
      }
      case "text_stream_chunk":
        this.textStreams.get(msg.stream_id)?._push(msg.text);
        break;
      case "text_stream_close":
        this.textStreams.get(msg.stream_id)?._close(msg.error ?? undefined);
        this.textStreams.delete(msg.stream_id);
        break;
      case "rpc_request":
        void this.answerRpc(msg);
        break;
      case "disconnected":
        this.finish(msg.reason);
        break;
    }
  }

  private async answerRpc(msg: Message): Promise<void> {
    const handler = this._rpcHandlers.get(msg.method);
    const reply = (body: Message): void => {
      if (this.ws?.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ op: "rpc_response", id: msg.id, ...body }));
      }
    };
    if (!handler) {
      reply({ error: { code: RpcErrorCode.UNSUPPORTED_METHOD, message: "Method not supported" } });
      return;
    }
    try {
      const payload = await handler({
        requestId: String(msg.id),
        callerIdentity: msg.caller,
        payload: msg.payload,
        responseTimeout: msg.response_timeout_ms,
      });
      reply({ payload });
    } catch (e) {
      const err = e as { code?: unknown; message?: unknown; data?: unknown };
      reply({
        error: {
          code: typeof err.code === "number" ? err.code : RpcErrorCode.APPLICATION_ERROR,
          message: typeof err.message === "string" ? err.message : "Application error",
          data: typeof err.data === "string" ? err.data : undefined,
        },
      });
    }
  }
}
