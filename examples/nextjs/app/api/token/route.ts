/**
 * `POST /api/token`: a fresh interview for the page's `TokenSource.custom`: a new room, a
 * participant token for a new candidate identity, and an endcall end token for the same room and
 * identity (for `useEndInterview`'s REST fallback and tab-close beacon).
 *
 * The agent is dispatched here, by name, in the token's room configuration. Nothing the client
 * sends goes into the token: the request body is never read. LiveKit's React starter copies
 * the client's `room_config` into the token, which lets the candidate choose the agent and its
 * job metadata (where the report goes, the ids it is filed under). Private settings belong in a
 * server-side dispatch (`AgentDispatchClient.createDispatch`), not in a token the browser holds.
 *
 * A real app authenticates the candidate first and takes the room and identity from its own
 * records.
 */
import { randomBytes } from "node:crypto";
import { mintEndToken } from "endcall/server";
import { AccessToken, RoomAgentDispatch, RoomConfiguration } from "livekit-server-sdk";

/** Both tokens' lifetime: at least the longest interview (the agent's limit is 30 minutes). */
const TTL_SECONDS = 2 * 60 * 60;

export interface TokenResponse {
  serverUrl: string;
  roomName: string;
  participantIdentity: string;
  participantToken: string;
  endToken: string;
}

export async function POST(): Promise<Response> {
  const serverUrl = process.env.LIVEKIT_URL;
  const apiKey = process.env.LIVEKIT_API_KEY;
  const apiSecret = process.env.LIVEKIT_API_SECRET;
  if (!serverUrl || !apiKey || !apiSecret) {
    return Response.json(
      { code: "internal", message: "set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET" },
      { status: 500 },
    );
  }
  const agentName = process.env.AGENT_NAME || "interview-agent";
  const roomName = `interview-${randomBytes(4).toString("hex")}`;
  const identity = `candidate-${randomBytes(3).toString("hex")}`;

  const token = new AccessToken(apiKey, apiSecret, { identity, name: "Candidate", ttl: TTL_SECONDS });
  token.addGrant({ room: roomName, roomJoin: true, canPublish: true, canPublishData: true, canSubscribe: true });
  // the agent by name and without metadata: the browser can read everything in this token
  token.roomConfig = new RoomConfiguration({ agents: [new RoomAgentDispatch({ agentName })] });

  const body: TokenResponse = {
    serverUrl,
    roomName,
    participantIdentity: identity,
    participantToken: await token.toJwt(),
    endToken: await mintEndToken({ room: roomName, identity, ttl: TTL_SECONDS, apiKey, apiSecret }),
  };
  return Response.json(body, { headers: { "Cache-Control": "no-store" } });
}
