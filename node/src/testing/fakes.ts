/**
 * Small fakes of the rtc-node `Room` surface and of the `AgentSession` / `JobContext` parts
 * EndCall uses (`@livekit/agents` ships no room fakes): enough to drive EndCall's channels,
 * signals and end path in-process — an RPC call, a data packet, the server's attribute write,
 * a participant leaving, the room being deleted, the session closing.
 */
import { EventEmitter } from "node:events";
import type {
  JobContextLike,
  LocalParticipantLike,
  RemoteParticipantLike,
  RoomLike,
  SessionLike,
  SpeechHandleLike,
} from "../agent/surface.js";

export class FakeSpeechHandle implements SpeechHandleLike {
  private isDone = false;
  private readonly callbacks: ((h: unknown) => void)[] = [];
  constructor(readonly text = "") {}
  done(): boolean {
    return this.isDone;
  }
  finish(): void {
    if (this.isDone) return;
    this.isDone = true;
    for (const cb of this.callbacks.splice(0)) cb(this);
  }
  waitForPlayout(): Promise<void> {
    return this.isDone ? Promise.resolve() : new Promise((r) => this.addDoneCallback(() => r()));
  }
  addDoneCallback(callback: (h: unknown) => void): void {
    if (this.isDone) callback(this);
    else this.callbacks.push(callback);
  }
}

export class FakeLocalParticipant implements LocalParticipantLike {
  attributes: Record<string, string> = {};
  readonly rpc = new Map<string, (data: { requestId: string; callerIdentity: string; payload: string; responseTimeout: number }) => Promise<string>>();
  readonly published: { data: string; topic?: string | undefined; destinations?: string[] | undefined }[] = [];
  readonly attributeWrites: Record<string, string>[] = [];
  failAttributes = false;
  constructor(
    readonly identity: string,
    private readonly room: FakeRoom,
  ) {}
  registerRpcMethod(method: string, handler: (data: { requestId: string; callerIdentity: string; payload: string; responseTimeout: number }) => Promise<string>): void {
    this.rpc.set(method, handler);
  }
  unregisterRpcMethod(method: string): void {
    this.rpc.delete(method);
  }
  async publishData(data: Uint8Array, options: { reliable?: boolean; destination_identities?: string[]; topic?: string }): Promise<void> {
    this.published.push({ data: new TextDecoder().decode(data), topic: options.topic, destinations: options.destination_identities });
  }
  async setAttributes(attributes: Record<string, string>): Promise<void> {
    if (this.failAttributes) throw new Error("permission denied");
    this.attributeWrites.push({ ...attributes });
    this.attributes = { ...this.attributes, ...attributes };
  }
  /** The LiveKit server API writing one of our attributes (the fallback server). */
  serverWrites(attributes: Record<string, string>): void {
    this.attributes = { ...this.attributes, ...attributes };
    this.room.emit("participantAttributesChanged", attributes, this);
  }
  /** What a caller gets from an RPC: the response, or the thrown error. */
  async call(method: string, caller: string, payload: string): Promise<string> {
    const handler = this.rpc.get(method);
    if (!handler) throw Object.assign(new Error("unsupported method"), { code: 1400 });
    return handler({ requestId: "rpc1", callerIdentity: caller, payload, responseTimeout: 8000 });
  }
}

export class FakeRoom extends EventEmitter implements RoomLike {
  readonly remoteParticipants = new Map<string, RemoteParticipantLike>();
  localParticipant: FakeLocalParticipant | undefined;
  isConnected = true;
  constructor(
    readonly name = "interview-1",
    agentIdentity = "agent-1",
  ) {
    super();
    this.localParticipant = new FakeLocalParticipant(agentIdentity, this);
  }
  join(identity: string, kind = 0): RemoteParticipantLike {
    const p: RemoteParticipantLike = { identity, kind, attributes: {}, disconnectReason: undefined };
    this.remoteParticipants.set(identity, p);
    this.emit("participantConnected", p);
    return p;
  }
  leave(identity: string, disconnectReason = 1): void {
    const p = this.remoteParticipants.get(identity);
    if (!p) return;
    p.disconnectReason = disconnectReason;
    this.remoteParticipants.delete(identity);
    this.emit("participantDisconnected", p);
  }
  /** A data packet from `identity` (undefined: a sender the SDK does not name). */
  data(identity: string | undefined, topic: string, payload: string): void {
    const p = identity === undefined ? undefined : this.remoteParticipants.get(identity);
    this.emit("dataReceived", new TextEncoder().encode(payload), p, 0, topic);
  }
  disconnect(reason: number): void {
    this.isConnected = false;
    this.emit("disconnected", reason);
  }
}

export class FakeSession extends EventEmitter implements SessionLike {
  userState = "listening";
  history = { items: [] as unknown[], toJSON: () => ({ items: this.history.items }) };
  _started = true;
  _closing = false;
  _startedAt = Date.now();
  _recordedEvents: unknown[] = [];
  sessionOptions: { userAwayTimeout: number | null } = { userAwayTimeout: 15 };
  _roomIO: { linkedParticipant?: { identity: string }; inputOptions: { closeOnDisconnect: boolean } } = {
    inputOptions: { closeOnDisconnect: true },
  };
  readonly said: FakeSpeechHandle[] = [];
  readonly shutdowns: { drain?: boolean | undefined; reason?: string | undefined }[] = [];
  interrupts = 0;
  /** `close` is emitted this long after `shutdown()` (null: never). */
  closeDelayMs: number | null = 0;
  /** Goodbyes finish playing this long after `say()` (null: never). */
  sayPlayoutMs: number | null = 0;

  link(identity: string): void {
    this._roomIO.linkedParticipant = { identity };
  }
  shutdown(options?: { drain?: boolean; reason?: string }): void {
    this.shutdowns.push({ drain: options?.drain, reason: options?.reason });
    if (this._closing) return;
    this._closing = true;
    if (this.closeDelayMs !== null) setTimeout(() => this.close(options?.reason ?? "user_initiated"), this.closeDelayMs);
  }
  /** Emit `close` (RoomIO, an error, the job). */
  close(reason: string, error: unknown = null): void {
    this._closing = true;
    this._started = false;
    this.emit("close", { type: "close", reason, error, createdAt: Date.now() });
  }
  interrupt(): unknown {
    this.interrupts += 1;
    return { await: Promise.resolve() };
  }
  say(text: string): SpeechHandleLike {
    const h = new FakeSpeechHandle(text);
    this.said.push(h);
    if (this.sayPlayoutMs !== null) setTimeout(() => h.finish(), this.sayPlayoutMs);
    return h;
  }
  generateReply(): SpeechHandleLike {
    return this.say("(generated)");
  }
  addItem(item: Record<string, unknown>): void {
    this.history.items.push(item);
    this.emit("conversation_item_added", { type: "conversation_item_added", item, createdAt: Date.now() });
  }
}

export class FakeJobContext implements JobContextLike {
  readonly shutdownCallbacks: (() => Promise<void>)[] = [];
  readonly shutdownReasons: string[] = [];
  roomsDeleted = 0;
  /** What `makeSessionReport` returns/throws (default: throws, like a recording RecorderIO). */
  sessionReport: (() => unknown) | null = null;
  readonly job: { id: string; agentName: string; room: { sid: string; name: string } };
  constructor(readonly room: FakeRoom = new FakeRoom()) {
    this.job = { id: "AJ_1", agentName: "interview-agent", room: { sid: "RM_1", name: room.name } };
  }
  addShutdownCallback(callback: () => Promise<void>): void {
    this.shutdownCallbacks.push(callback);
  }
  shutdown(reason?: string): void {
    this.shutdownReasons.push(reason ?? "");
  }
  async deleteRoom(): Promise<void> {
    this.roomsDeleted += 1;
  }
  makeSessionReport(): unknown {
    if (this.sessionReport === null) throw new Error("Cannot create the AgentSession report, the RecorderIO is still recording");
    return this.sessionReport();
  }
  /** The job's own end: session closed (already, by the caller), then shutdown callbacks. */
  async runShutdownCallbacks(): Promise<void> {
    await Promise.allSettled(this.shutdownCallbacks.map((cb) => cb()));
  }
}
