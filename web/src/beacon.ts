/**
 * The tab-close beacon: on `pagehide` (not `beforeunload`, which mobile browsers skip and which
 * breaks the back/forward cache) send the end.request to the fallback server with
 * `navigator.sendBeacon`, once per connection of a room, unless the call has already ended.
 */
import { currentCall, buildRequest, newRequestId, withRoom } from "./endCall";
import { agentEndState, findAgent, type EndCallRoom } from "./room";

export interface EndBeaconOptions {
  /** The fallback server's `POST /v1/end` URL. */
  fallbackUrl: string;
  /** Put in the body as `"token"` (a beacon cannot set headers). */
  token: string;
  /** Default `customer-ended-call`; must start with `customer-`. Ignored while an `endCall`
   * is in flight: its request (same id, same reason) is sent instead. */
  reason?: string;
  agentIdentity?: string;
}

/** The connection (local participant sid) each room last sent its beacon on: a new connection
 * of the same `Room` arms the beacon again. */
const sent = new WeakMap<EndCallRoom, string | undefined>();

/** Listen for `pagehide`; returns the function that stops listening. A no-op outside browsers. */
export function installEndBeacon(room: EndCallRoom, options: EndBeaconOptions): () => void {
  if (typeof window == "undefined" || !options.fallbackUrl || !options.token) return () => {};
  const onPageHide = (): void => {
    const call = currentCall(room);
    const sid = room.localParticipant?.sid;
    // Sent on this connection already; ended: our end was acknowledged, or the agent is already
    // ending/has ended the call.
    if ((sent.has(room) && sent.get(room) === sid) || call?.acked || agentEndState(findAgent(room, options.agentIdentity))) return;
    try {
      const request = call?.request ?? buildRequest(call?.requestId ?? newRequestId(), options.reason);
      const body = withRoom(request, room, { token: options.token });
      sent.set(room, sid);
      // a string body goes out as text/plain;charset=UTF-8, which needs no CORS preflight
      navigator.sendBeacon?.(options.fallbackUrl, body);
    } catch {
      // a bad reason option: nothing can be sent
    }
  };
  window.addEventListener("pagehide", onPageHide);
  return () => window.removeEventListener("pagehide", onPageHide);
}
