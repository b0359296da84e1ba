/**
 * Deleting the call's own room, and never another one that took its name. LiveKit deletes
 * rooms by name; after the room was deleted under the agent, a reloaded page may join a *new*
 * room with the same name. So: while the agent is connected, the room of that name is its own —
 * delete it; when the agent was disconnected because the room is gone (`ROOM_DELETED`,
 * `ROOM_CLOSED`) — never; when the agent left for another reason (the job disconnected first) —
 * only when RoomService lists the name with the call's sid (`livekit-server-sdk`, loaded
 * lazily; if it cannot be checked the room is left alone: it closes by itself once everyone
 * left). Port of Python's `endcall.agent.own_room`.
 */
import { DisconnectReason } from "@livekit/rtc-node";
import { logger } from "./log.js";
import type { JobContextLike } from "./surface.js";
import { withTimeout } from "./waits.js";

export type Outcome = "deleted" | "gone" | "replaced" | "unverified";

const GONE = new Set<number>([DisconnectReason.ROOM_DELETED, DisconnectReason.ROOM_CLOSED]);
const CHECK_TIMEOUT_MS = 3_000;

interface JobInfo {
  info?: { url?: string; apiKey?: string; apiSecret?: string };
}

async function roomNow(ctx: JobContextLike, name: string, sid: string): Promise<"same" | "gone" | "replaced" | null> {
  const info = (ctx as unknown as JobInfo).info;
  if (!info?.url || !info.apiKey || !info.apiSecret) return null;
  try {
    const sdk = (await import("livekit-server-sdk")) as unknown as {
      RoomServiceClient: new (url: string, key: string, secret: string) => {
        listRooms(names: string[]): Promise<{ name: string; sid: string }[]>;
      };
    };
    const client = new sdk.RoomServiceClient(info.url, info.apiKey, info.apiSecret);
    const r = await withTimeout(client.listRooms([name]), CHECK_TIMEOUT_MS);
    if (!r.done || !r.ok) return null;
    const current = r.value.filter((room) => room.name === name);
    if (!current.length) return "gone";
    return current[0]?.sid === sid ? "same" : "replaced";
  } catch (e) {
    logger.debug(`could not check the room: ${String(e)}`);
    return null;
  }
}

export async function deleteOwnRoom(
  ctx: JobContextLike,
  options: { connected: boolean; disconnectReason: number | null; roomName: string; roomSid: string | null; delete: () => Promise<void> },
): Promise<Outcome> {
  if (options.connected) {
    await options.delete();
    return "deleted";
  }
  if (options.disconnectReason !== null && GONE.has(options.disconnectReason)) return "gone";
  if (options.roomSid === null) {
    logger.info("the room is left alone: its sid is unknown, so it cannot be told from a new room of that name");
    return "unverified";
  }
  const now = await roomNow(ctx, options.roomName, options.roomSid);
  if (now === "same") {
    await options.delete();
    return "deleted";
  }
  if (now === null) {
    logger.info("the room is left alone: it could not be checked to be this call's (it closes once everyone left)");
    return "unverified";
  }
  return now;
}
