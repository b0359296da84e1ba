/**
 * The subset of a livekit-client `Room` that endcall uses, typed structurally so a real `Room`
 * and a test double both fit without casts; plus how the agent participant is found and how its
 * `endcall.*` attributes are read.
 */
import { ATTR_END_ID, ATTR_REASON, ATTR_STATE, CLIENT_REASON_PREFIX } from "./protocol";

/** livekit-client's `ParticipantKind.AGENT` (protobuf `ParticipantInfo_Kind.AGENT`). */
export const PARTICIPANT_KIND_AGENT = 4;
/** Attribute every livekit-agents agent sets on itself. */
export const AGENT_STATE_ATTRIBUTE = "lk.agent.state";

export const EVENT_ATTRIBUTES = "participantAttributesChanged";
export const EVENT_LEFT = "participantDisconnected";
export const EVENT_DATA = "dataReceived";
export const EVENT_DISCONNECTED = "disconnected";
export const EVENT_CONNECTION_STATE = "connectionStateChanged";
/** livekit-client's `RoomEvent` names endcall listens to. */
export const RoomEvents = {
  ParticipantAttributesChanged: EVENT_ATTRIBUTES,
  ParticipantDisconnected: EVENT_LEFT,
  DataReceived: EVENT_DATA,
  Disconnected: EVENT_DISCONNECTED,
  ConnectionStateChanged: EVENT_CONNECTION_STATE,
} as const;

export interface EndCallParticipant {
  readonly identity: string;
  /** `ParticipantKind`; 4 is AGENT. */
  readonly kind?: number;
  readonly attributes: Readonly<Record<string, string>>;
}

export interface EndCallLocalParticipant {
  readonly identity: string;
  /**
   * The participant's sid. livekit-client gives the local participant a new one on every join,
   * so it names the room's current *connection*: an end belongs to the connection it started
   * on, and a new connection of the same `Room` starts fresh. Without it (a double that does not
   * set it), every connection of the room counts as one.
   */
  readonly sid?: string;
  performRpc(params: {
    destinationIdentity: string;
    method: string;
    payload: string;
    responseTimeout?: number;
  }): Promise<string>;
  publishData(
    data: Uint8Array,
    options?: { reliable?: boolean; destinationIdentities?: string[]; topic?: string },
  ): Promise<void>;
}

/** The part of livekit-client's `Room` that endcall needs. */
export interface EndCallRoom {
  readonly name: string;
  readonly localParticipant: EndCallLocalParticipant;
  readonly remoteParticipants: ReadonlyMap<string, EndCallParticipant>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: string, listener: (...args: any[]) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: string, listener: (...args: any[]) => void): unknown;
  disconnect(stopTracks?: boolean): Promise<void>;
}

/** The agent: `identity` if given, else the participant whose kind is AGENT, else one with the
 * `lk.agent.state` attribute. */
export function findAgent(room: EndCallRoom, identity?: string): EndCallParticipant | undefined {
  const people = [...room.remoteParticipants.values()];
  if (identity) return people.find((p) => p.identity === identity);
  return (
    people.find((p) => p.kind === PARTICIPANT_KIND_AGENT) ??
    people.find((p) => p.attributes[AGENT_STATE_ATTRIBUTE] !== undefined)
  );
}

/** The agent's end state, from its `endcall.*` attributes. */
export interface AgentEndState {
  /** `ending` or `ended`. */
  state: "ending" | "ended";
  /**
   * The effective reason (`endcall.reason`): a canonical reason such as `assistant-ended-call`
   * or `exceeded-max-duration`, or a custom one; null if the agent has not written it.
   */
  reason: string | null;
  endId: string | null;
}

/** The agent's end state when the agent is ending or has ended the call, else null. */
export function agentEndState(agent: EndCallParticipant | undefined): AgentEndState | null {
  const attrs = agent?.attributes;
  const state = attrs?.[ATTR_STATE];
  if (state !== "ending" && state !== "ended") return null;
  return { state, reason: attrs?.[ATTR_REASON] ?? null, endId: attrs?.[ATTR_END_ID] ?? null };
}

/** True when the reason says someone other than the customer ended the call. */
export const endedByAgent = (state: AgentEndState | null): state is AgentEndState =>
  !!state && !state.reason?.startsWith(CLIENT_REASON_PREFIX);

/**
 * Calls `listener` with the agent's end state whenever the agent (someone other than the
 * customer) ends the call: its `endcall.state` becomes `ending`/`ended` with a reason that does
 * not start with `customer-`. Returns the function that stops listening.
 */
export function onAgentEnded(
  room: EndCallRoom,
  listener: (state: AgentEndState) => void,
  agentIdentity?: string,
): () => void {
  let last = "";
  const check = (): void => {
    const state = agentEndState(findAgent(room, agentIdentity));
    const key = JSON.stringify(state);
    if (endedByAgent(state) && key !== last) {
      last = key;
      listener(state);
    }
  };
  room.on(EVENT_ATTRIBUTES, check);
  check();
  return () => room.off(EVENT_ATTRIBUTES, check);
}
