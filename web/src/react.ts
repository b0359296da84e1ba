/**
 * `endcall/react`: `useEndInterview()`, the React binding of `endCall`. The room comes from the
 * options or from `@livekit/components-react`'s RoomContext. Imports the core from `endcall`
 * (never bundled into this entry), so the hook and `endCall` share one in-flight registry.
 *
 * An end belongs to one connection of the room: when the same `Room` connects again (LiveKit's
 * starters reuse one `Room` for every call), the hook starts fresh (`state` back to `idle`, no
 * outcome, the beacon armed again), and the next `endInterview()` sends a new request.
 */
"use client";
import { useMaybeRoomContext } from "@livekit/components-react";
import { useCallback, useEffect, useRef, useState } from "react";
import {
  RoomEvents,
  endCall,
  installEndBeacon,
  onAgentEnded,
  type AgentEndState,
  type EndCallError,
  type EndCallOptions,
  type EndCallOutcome,
  type EndCallRoom,
} from "endcall";

export type EndInterviewState = "idle" | "ending" | "ended";

export interface UseEndInterviewOptions extends EndCallOptions {
  /** Default: the room of the surrounding `<LiveKitRoom>` / `RoomContext`. */
  room?: EndCallRoom;
  /** Send the `pagehide` beacon (default true; needs `fallbackUrl` and `token`). */
  beacon?: boolean;
  /** The beacon's reason (default `customer-ended-call`). */
  beaconReason?: string;
}

export interface UseEndInterview {
  /** Ends the call; a double click gets the same promise. Never rejects. */
  endInterview: () => Promise<EndCallOutcome>;
  /** `idle` → `ending` (endInterview running) → `ended` (it finished, or the room disconnected). */
  state: EndInterviewState;
  outcome: EndCallOutcome | null;
  /** Set when the agent (not the customer) ended the call: its `endcall.state` and reason. */
  agentEnded: AgentEndState | null;
  /** The last error of an unacknowledged outcome, else null. */
  error: EndCallError | null;
}

export function useEndInterview(options: UseEndInterviewOptions = {}): UseEndInterview {
  const contextRoom: EndCallRoom | undefined = useMaybeRoomContext();
  const room = options.room ?? contextRoom;
  const [state, setState] = useState<EndInterviewState>("idle");
  const [outcome, setOutcome] = useState<EndCallOutcome | null>(null);
  const [agentEnded, setAgentEnded] = useState<AgentEndState | null>(null);
  const latest = useRef(options);
  latest.current = options;
  /** One controller per running endInterview: unmounting aborts them (no timer or listener
   * outlives the component) and no state is set after unmount. */
  const running = useRef(new Set<AbortController>());
  const mounted = useRef(false);
  /** The connection the state belongs to: the local participant's sid (new on every join). */
  const connection = useRef(room?.localParticipant?.sid);
  const { agentIdentity, fallbackUrl, token, beacon, beaconReason } = options;

  useEffect(() => {
    mounted.current = true;
    const live = running.current;
    return () => {
      mounted.current = false;
      for (const controller of live) controller.abort();
    };
  }, []);

  useEffect(() => {
    if (!room) return;
    const ended = (): void => setState("ended");
    const watch = (): (() => void) => onAgentEnded(room, setAgentEnded, agentIdentity);
    let stopWatching = (): void => {};
    /** A new connection of the room (a new local participant sid): start fresh. */
    const connected = (): void => {
      const sid = room.localParticipant?.sid;
      if (sid === connection.current) return;
      connection.current = sid;
      setState("idle");
      setOutcome(null);
      setAgentEnded(null);
      stopWatching();
      stopWatching = watch();
    };
    connected();
    room.on(RoomEvents.ConnectionStateChanged, connected);
    room.on(RoomEvents.Disconnected, ended);
    stopWatching = watch();
    const stopBeacon =
      beacon === false || !fallbackUrl || !token
        ? () => {}
        : installEndBeacon(room, { fallbackUrl, token, reason: beaconReason, agentIdentity });
    return () => {
      room.off(RoomEvents.ConnectionStateChanged, connected);
      room.off(RoomEvents.Disconnected, ended);
      stopWatching();
      stopBeacon();
    };
  }, [room, agentIdentity, fallbackUrl, token, beacon, beaconReason]);

  const endInterview = useCallback((): Promise<EndCallOutcome> => {
    const controller = new AbortController();
    const userSignal = latest.current.signal;
    const forward = (): void => controller.abort();
    if (userSignal?.aborted) forward();
    userSignal?.addEventListener("abort", forward);
    running.current.add(controller);
    const startedOn = connection.current;
    setState((s) => (s === "ended" ? s : "ending"));
    const call = room
      ? endCall(room, { ...latest.current, signal: controller.signal })
      : Promise.resolve<EndCallOutcome>({
          status: "unacknowledged",
          via: "none",
          ack: null,
          requestId: "",
          elapsedMs: 0,
          errors: [{ channel: "request", code: "no_room", message: "no room in options or RoomContext" }],
        });
    return call.then((result) => {
      userSignal?.removeEventListener("abort", forward);
      running.current.delete(controller);
      // (an end of an earlier connection does not overwrite the current connection's state)
      if (mounted.current && connection.current === startedOn) {
        setOutcome(result);
        setState("ended");
      }
      return result;
    });
  }, [room]);

  const error = outcome?.status === "unacknowledged" ? (outcome.errors.at(-1) ?? null) : null;
  return { endInterview, state, outcome, agentEnded, error };
}
