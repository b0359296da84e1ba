/**
 * Where the page gets its room: `GET api/session` (served by examples/token_server.py or by
 * `endcall demo`) answers which server to use and the tokens. `loopback` joins the endcall
 * loopback through its WebSocket bridge; `livekit` joins a real LiveKit server.
 */
import { Room } from "livekit-client";
import { LoopbackRoom } from "endcall/testing";
import type { EndCallRoom } from "endcall";

export interface SessionConfig {
  mode: "loopback" | "livekit";
  /** Bridge URL (ws://…/loopback) or the LiveKit server URL (wss://…). */
  url: string;
  /** LiveKit access token for this participant. */
  token: string;
  room: string;
  identity: string;
  /** The fallback server's `POST /v1/end`, or null. */
  fallbackUrl: string | null;
  /** Token for the fallback server and the tab-close beacon (an endcall end token). */
  endToken: string | null;
  /** Show the "type your answer" box (the demo's stand-in for speech). */
  answerBox: boolean;
  /** Reason sent by the tab-close beacon. */
  beaconReason: string;
  /** After an acknowledged end, how long to stay for the "submitted" state (ms). */
  stayForReportMs: number;
  title: string;
}

/** A room of either kind, with the calls the page needs beyond `EndCallRoom`. */
export type PageRoom = EndCallRoom & {
  registerTextStreamHandler(
    topic: string,
    handler: (
      reader: AsyncIterable<string> & { info: { id: string; attributes?: Record<string, string> } },
      participant: { identity: string },
    ) => void,
  ): void;
  localParticipant: EndCallRoom["localParticipant"];
};

export async function loadSession(): Promise<SessionConfig> {
  const resp = await fetch(`api/session${window.location.search}`, { cache: "no-store" });
  if (!resp.ok) throw new Error(`api/session answered ${resp.status}`);
  return (await resp.json()) as SessionConfig;
}

export async function joinRoom(
  config: SessionConfig,
  beforeConnect: (room: PageRoom) => void,
): Promise<PageRoom> {
  if (config.mode === "loopback") {
    const room = new LoopbackRoom();
    // for the browser tests and debugging from the console
    (window as unknown as { endcallRoom: unknown }).endcallRoom = room;
    beforeConnect(room as unknown as PageRoom);
    await room.connect(config.url, config.token, { room: config.room, identity: config.identity });
    return room as unknown as PageRoom;
  }
  const room = new Room();
  beforeConnect(room as unknown as PageRoom);
  await room.connect(config.url, config.token);
  await room.localParticipant.setMicrophoneEnabled(true).catch(() => undefined);
  return room as unknown as PageRoom;
}

/** Compile-time proof that the loopback double fits endcall's structural `Room` type. */
export const fitsEndCallRoom = (room: LoopbackRoom): EndCallRoom => room;
