/**
 * `endcall`: the browser half of the endcall protocol. `endCall(room)` ends a LiveKit
 * voice-agent call and reports whether the agent acknowledged it; the protocol codec; the
 * tab-close beacon; helpers to read the agent's end state. No React here (see `endcall/react`).
 */
export * from "./protocol";
export {
  endCall,
  newRequestId,
  type Channel,
  type EndCallError,
  type EndCallOptions,
  type EndCallOutcome,
  type EndCallStatus,
  type FallbackAck,
} from "./endCall";
export { installEndBeacon, type EndBeaconOptions } from "./beacon";
export {
  AGENT_STATE_ATTRIBUTE,
  PARTICIPANT_KIND_AGENT,
  RoomEvents,
  agentEndState,
  findAgent,
  onAgentEnded,
  type AgentEndState,
  type EndCallLocalParticipant,
  type EndCallParticipant,
  type EndCallRoom,
} from "./room";
