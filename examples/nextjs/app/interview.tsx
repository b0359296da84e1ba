"use client";
/**
 * The call, on `@livekit/components-react`'s session API, ended with endcall's
 * `useEndInterview` (`endcall/react`).
 *
 * - **One `Room` for every call in the tab**, as LiveKit's starters do: Start connects it again,
 *   with a fresh token (a new room and a new dispatch of the agent), and the hook starts fresh
 *   on each new connection (`state` back to `idle`, the tab-close beacon armed again).
 * - **The hook lives above the views that unmount**: `Interview` owns it; `CallView` is swapped
 *   out as soon as the room disconnects and only gets `endInterview` and `state` from it. A hook
 *   inside `CallView` would be unmounted by its own end (unmounting aborts an end in flight).
 * - **`endInterview()` alone ends the call**: it disconnects the room when the agent has
 *   acknowledged (or no channel did). No `session.end()` / `room.disconnect()` next to it.
 * - **The end token**: `/api/token` mints one per room with the participant token (`useSession`
 *   does not hand out the token it connected with); the hook gets the current room's.
 */
import {
  RoomAudioRenderer,
  SessionProvider,
  StartAudio,
  useAgent,
  useSession,
  useSessionMessages,
  type UseSessionReturn,
} from "@livekit/components-react";
import { ATTR_REASON, ATTR_REPORT, ATTR_STATE, type EndCallOutcome } from "endcall";
import { useEndInterview, type UseEndInterview } from "endcall/react";
import { Room, TokenSource } from "livekit-client";
import { useEffect, useMemo, useRef, useState, type ReactElement } from "react";
import type { TokenResponse } from "./api/token/route";

/** The browser's REST fallback and tab-close beacon: this app's proxy to `endcall serve`. */
const FALLBACK_URL = "/api/end";

const AGENT_END_MESSAGES: Record<string, string> = {
  "assistant-ended-call": "The interviewer ended the interview.",
  "exceeded-max-duration": "Time is up: the interview reached its maximum duration.",
  "silence-timed-out": "The interview ended after a long silence.",
  "server-ended-call": "The interview was ended by the organiser.",
  "worker-shutdown": "The interview was interrupted by a server restart.",
};

export function InterviewApp({ beaconReason }: { beaconReason: string }): ReactElement {
  // one Room for every call in this tab; useSession connects it again on every start()
  const [room] = useState(() => new Room());
  const endTokens = useRef(new Map<string, string>());
  const tokenSource = useMemo(
    () =>
      TokenSource.custom(async () => {
        // no body: the route alone decides the room, the identity and the agent
        const response = await fetch("/api/token", { method: "POST", cache: "no-store" });
        if (!response.ok) throw new Error(`/api/token answered ${response.status}`);
        const { serverUrl, roomName, participantToken, endToken } = (await response.json()) as TokenResponse;
        endTokens.current.set(roomName, endToken);
        return { serverUrl, participantToken };
      }),
    [],
  );
  const session = useSession(tokenSource, { room, agentConnectTimeoutMilliseconds: 30_000 });
  return (
    <SessionProvider session={session}>
      <Interview session={session} endTokens={endTokens.current} beaconReason={beaconReason} />
    </SessionProvider>
  );
}

interface PastCall {
  room: string;
  outcome: EndCallOutcome;
}

function Interview(props: {
  session: UseSessionReturn;
  endTokens: ReadonlyMap<string, string>;
  beaconReason: string;
}): ReactElement {
  const { session, endTokens, beaconReason } = props;
  const connected = session.isConnected;
  const roomName = session.room.name;
  // here, above CallView (which unmounts when the room disconnects): the end survives it
  const end = useEndInterview({
    fallbackUrl: FALLBACK_URL,
    token: endTokens.get(roomName),
    beaconReason,
    meta: { page: "nextjs", button: "end-interview" },
  });
  const [calls, setCalls] = useState(0);
  const [starting, setStarting] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const [history, setHistory] = useState<PastCall[]>([]);
  // the server-rendered button stays disabled until React runs here (no click is lost)
  const [hydrated, setHydrated] = useState(false);
  useEffect(() => setHydrated(true), []);

  const endInterview = (): void => {
    const name = roomName;
    void end.endInterview().then((outcome) =>
      // a double click shares one request: one entry
      setHistory((past) =>
        past.some((p) => p.outcome.requestId === outcome.requestId) ? past : [...past, { room: name, outcome }],
      ),
    );
  };

  const start = (): void => {
    setStarting(true);
    setFailure(null);
    setCalls((n) => n + 1);
    session
      .start()
      .catch((e: unknown) => setFailure(e instanceof Error ? e.message : String(e)))
      .finally(() => setStarting(false));
  };

  return (
    <>
      <RoomAudioRenderer />
      <StartAudio label="Click to hear the interviewer" />
      <section className="status">
        <span data-testid="connection" className={connected ? "pill ok" : "pill off"}>
          {session.connectionState}
        </span>
        <span className="pill" data-testid="calls">
          call {calls}
        </span>
        <span className="pill" data-testid="room">
          {connected ? roomName : "no room"}
        </span>
      </section>

      {connected ? (
        <CallView endInterview={endInterview} state={end.state} agentEnded={end.agentEnded} />
      ) : (
        <section className="welcome">
          <p>{calls === 0 ? "Ready when you are." : "The interview is over. You can start another one."}</p>
          <button
            className="start-button"
            data-testid="start-button"
            disabled={!hydrated || starting || session.connectionState !== "disconnected"}
            onClick={start}
          >
            {starting ? "Starting…" : calls === 0 ? "Start interview" : "Start another interview"}
          </button>
        </section>
      )}

      {failure && (
        <p className="banner bad" data-testid="failure">
          {failure}
        </p>
      )}
      <p className="muted" data-testid="end-state">
        end: {end.state}
      </p>
      {end.outcome && <Outcome outcome={end.outcome} />}
      {history.length > 0 && (
        <ol className="history" data-testid="history">
          {history.map(({ room: name, outcome: past }) => (
            <li key={past.requestId || name} data-room={name} data-status={past.status}>
              {name}: {past.status} via {past.via}
            </li>
          ))}
        </ol>
      )}
    </>
  );
}

/** The live call: swapped out as soon as the room disconnects, so it holds no end state. */
function CallView(props: {
  endInterview: () => void;
  state: UseEndInterview["state"];
  agentEnded: UseEndInterview["agentEnded"];
}): ReactElement {
  const { endInterview, state, agentEnded } = props;
  const agent = useAgent();
  const { messages } = useSessionMessages();
  const attributes = agent.attributes;
  return (
    <section className="call" data-testid="call-view">
      <p>
        <span className="pill" data-testid="agent-state">
          interviewer: {agent.state}
        </span>
      </p>
      <ol className="transcript" data-testid="transcript">
        {messages.length === 0 && <li className="muted">Waiting for the interviewer…</li>}
        {messages.map((m) => (
          <li key={m.id} className={m.type === "userTranscript" ? "line you" : "line interviewer"}>
            {m.message}
          </li>
        ))}
      </ol>
      {agentEnded && (
        <div className="banner agent" data-testid="agent-ended">
          {AGENT_END_MESSAGES[agentEnded.reason ?? ""] ?? `The interview was ended (${agentEnded.reason ?? "unknown"}).`}
        </div>
      )}
      <button
        className="end-button"
        data-testid="end-button"
        disabled={state !== "idle" || agentEnded !== null}
        onClick={endInterview}
      >
        {state === "idle" ? "End interview" : "Ending…"}
      </button>
      <dl className="endstate">
        <dt>end state</dt>
        <dd data-testid="endcall-state">{attributes[ATTR_STATE] ?? "active"}</dd>
        <dt>reason</dt>
        <dd data-testid="endcall-reason">{attributes[ATTR_REASON] ?? "—"}</dd>
        <dt>report</dt>
        <dd data-testid="endcall-report">{attributes[ATTR_REPORT] ?? "—"}</dd>
      </dl>
    </section>
  );
}

function Outcome({ outcome }: { outcome: EndCallOutcome }): ReactElement {
  const acknowledged = outcome.status !== "unacknowledged";
  const endId = outcome.ack && "end_id" in outcome.ack ? (outcome.ack.end_id ?? null) : null;
  return (
    <p
      className={`ack ${acknowledged ? "good" : "bad"}`}
      data-testid="ack"
      data-outcome={JSON.stringify({
        status: outcome.status,
        via: outcome.via,
        requestId: outcome.requestId,
        endId,
        elapsedMs: outcome.elapsedMs,
        errors: outcome.errors,
      })}
    >
      {acknowledged
        ? `Acknowledged via ${outcome.via.toUpperCase()} in ${Math.round(outcome.elapsedMs)} ms (${outcome.status})`
        : `Not acknowledged (${outcome.errors.at(-1)?.code ?? "no answer"}): you have left the interview.`}
    </p>
  );
}
