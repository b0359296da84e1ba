/**
 * The parts of `@livekit/agents` (JobContext, AgentSession) and `@livekit/rtc-node` (Room,
 * participants) that EndCall uses, as structural types: the real objects satisfy them, and
 * tests can pass small fakes. Nothing here is behaviour.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listener = (...args: any[]) => void;

export interface Emitter {
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
}

export interface ParticipantLike {
  identity: string;
  attributes: Record<string, string>;
}

export interface RemoteParticipantLike extends ParticipantLike {
  /** `ParticipantKind` (STANDARD = 0, AGENT = 4). */
  kind: number;
  /** `DisconnectReason`, once gone. */
  disconnectReason?: number | undefined;
}

export interface LocalParticipantLike extends ParticipantLike {
  registerRpcMethod(
    method: string,
    handler: (data: { requestId: string; callerIdentity: string; payload: string; responseTimeout: number }) => Promise<string>,
  ): void;
  unregisterRpcMethod(method: string): void;
  publishData(
    data: Uint8Array,
    options: { reliable?: boolean; destination_identities?: string[]; topic?: string },
  ): Promise<void>;
  setAttributes(attributes: Record<string, string>): Promise<void>;
}

export interface RoomLike extends Emitter {
  readonly name?: string | undefined;
  readonly isConnected: boolean;
  localParticipant?: LocalParticipantLike | undefined;
  remoteParticipants: Map<string, RemoteParticipantLike>;
}

export interface SpeechHandleLike {
  done(): boolean;
  waitForPlayout(): Promise<void>;
  addDoneCallback(callback: (handle: unknown) => void): void;
}

export interface SessionLike extends Emitter {
  readonly userState: string;
  readonly history: unknown;
  readonly usage?: { modelUsage: unknown[] } | undefined;
  readonly _started?: boolean;
  readonly _closing?: boolean;
  readonly _startedAt?: number | undefined;
  readonly _recordedEvents?: unknown[];
  readonly sessionOptions?: { userAwayTimeout?: number | null } | undefined;
  _roomIO?: { linkedParticipant?: { identity: string } | undefined } | undefined;
  shutdown(options?: { drain?: boolean; reason?: string }): void;
  interrupt(options?: { force?: boolean }): unknown;
  say(text: string, options?: { allowInterruptions?: boolean }): SpeechHandleLike;
  generateReply(options?: { instructions?: string; allowInterruptions?: boolean }): SpeechHandleLike;
}

export interface JobLike {
  id: string;
  agentName: string;
  room?: { sid: string; name: string } | undefined;
}

export interface JobContextLike {
  readonly room: RoomLike;
  readonly job: JobLike;
  addShutdownCallback(callback: () => Promise<void>): void;
  shutdown(reason?: string): void;
  deleteRoom(roomName?: string): Promise<void>;
  makeSessionReport(session?: never): unknown;
}
