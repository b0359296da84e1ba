/**
 * The mock interview page: the interviewer's lines, the candidate's answers, an "End interview"
 * button, the live end state, and "Interview submitted ✓" once the agent reports
 * `endcall.report=delivered`. All end-of-call logic is `useEndInterview()` from `endcall/react`;
 * the room reaches it through LiveKit's RoomContext.
 */
import { RoomAudioRenderer, RoomContext, StartAudio } from "@livekit/components-react";
import {
  useEffect,
  useRef,
  useState,
  useSyncExternalStore,
  type FormEvent,
  type ReactElement,
  type ReactNode,
} from "react";
import { findAgent, type EndCallParticipant } from "endcall";
import { useEndInterview } from "endcall/react";
import type { Room } from "livekit-client";
import { joinRoom, loadSession, type PageRoom, type SessionConfig } from "./session";
import { TranscriptStore, type Line } from "./transcript";

const DISCONNECT_REASONS: Record<number, string> = {
  1: "you left",
  4: "removed from the room",
  5: "the room was closed",
  9: "connection lost",
  10: "the room was closed",
};

const AGENT_END_MESSAGES: Record<string, string> = {
  "assistant-ended-call": "The interviewer ended the interview.",
  "assistant-said-end-call-phrase": "The interviewer ended the interview.",
  "exceeded-max-duration": "Time is up: the interview reached its maximum duration.",
  "silence-timed-out": "The interview ended after a long silence.",
  "server-ended-call": "The interview was ended by the organiser.",
  "worker-shutdown": "The interview was interrupted by a server restart.",
  "agent-error": "The interview stopped because of a technical problem.",
};

export function App(): ReactElement {
  const [config, setConfig] = useState<SessionConfig | null>(null);
  const [room, setRoom] = useState<PageRoom | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const storeRef = useRef<TranscriptStore | null>(null);

  useEffect(() => {
    let cancelled = false;
    loadSession()
      .then(async (cfg) => {
        setConfig(cfg);
        document.title = `${cfg.title} · endcall`;
        let joined: PageRoom | null = null;
        const transcript = new TranscriptStore((identity) => {
          const p = joined?.remoteParticipants.get(identity);
          return p ? p.kind === 4 || p.attributes["lk.agent.state"] !== undefined : false;
        });
        storeRef.current = transcript;
        joined = await joinRoom(cfg, (r) => transcript.attach(r));
        if (!cancelled) setRoom(joined);
      })
      .catch((e: unknown) => setFailure(String(e instanceof Error ? e.message : e)));
    return () => {
      cancelled = true;
    };
  }, []);

  if (failure) return <Shell title="Mock interview">Could not join: {failure}</Shell>;
  if (!config || !room || !storeRef.current) {
    return (
      <Shell title={config?.title ?? "Mock interview"}>
        <p data-testid="connection" className="muted">
          connecting
        </p>
      </Shell>
    );
  }
  return (
    <RoomContext.Provider value={room as unknown as Room}>
      {config.mode === "livekit" && (
        <>
          {/* a real LiveKit room: play the interviewer's voice */}
          <RoomAudioRenderer />
          <StartAudio label="Click to hear the interviewer" />
        </>
      )}
      <Interview config={config} room={room} transcript={storeRef.current} />
    </RoomContext.Provider>
  );
}

function Shell(props: { title: string; children: ReactNode }): ReactElement {
  return (
    <main className="page">
      <header className="top">
        <h1>{props.title}</h1>
        <span className="brand">endcall demo</span>
      </header>
      {props.children}
    </main>
  );
}

function useRoomVersion(room: PageRoom): number {
  const [version, setVersion] = useState(0);
  useEffect(() => {
    const bump = (): void => setVersion((v) => v + 1);
    const events = [
      "participantConnected",
      "participantDisconnected",
      "participantAttributesChanged",
      "disconnected",
      "connectionStateChanged",
    ];
    for (const e of events) room.on(e, bump);
    return () => {
      for (const e of events) room.off(e, bump);
    };
  }, [room]);
  return version;
}

function Interview(props: {
  config: SessionConfig;
  room: PageRoom;
  transcript: TranscriptStore;
}): ReactElement {
  const { config, room, transcript } = props;
  const lines = useSyncExternalStore(transcript.subscribe, transcript.snapshot);
  useRoomVersion(room);
  const [disconnectReason, setDisconnectReason] = useState<number | null>(null);
  const [answer, setAnswer] = useState("");
  const [lastAgent, setLastAgent] = useState<EndCallParticipant | undefined>(undefined);
  const startedAt = useRef(Date.now());
  const [now, setNow] = useState(Date.now());

  const { endInterview, state, outcome, agentEnded, error } = useEndInterview({
    fallbackUrl: config.fallbackUrl ?? undefined,
    token: config.endToken ?? undefined,
    beaconReason: config.beaconReason,
    disconnect: false,
    meta: { button: "end-interview" },
  });

  useEffect(() => {
    const onDisconnected = (reason?: number): void => setDisconnectReason(reason ?? 0);
    room.on("disconnected", onDisconnected);
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => {
      room.off("disconnected", onDisconnected);
      clearInterval(timer);
    };
  }, [room]);

  const agent = findAgent(room);
  useEffect(() => {
    if (agent) setLastAgent({ ...agent, attributes: { ...agent.attributes } });
  });
  const shown = agent ?? lastAgent;
  const attrs = shown?.attributes ?? {};
  const endState = attrs["endcall.state"] ?? "active";
  const report = attrs["endcall.report"] ?? null;
  const submitted = report === "delivered";
  const connected = disconnectReason === null;

  // After our end was handled, stay until the report is delivered (or the room goes away, or
  // a bound passes), then leave. An unacknowledged end leaves at once: the person can always go.
  useEffect(() => {
    if (!outcome || !connected) return;
    if (outcome.status === "unacknowledged" || submitted) {
      void room.disconnect();
      return;
    }
    const t = setTimeout(() => void room.disconnect(), config.stayForReportMs);
    return () => clearTimeout(t);
  }, [outcome, submitted, connected, room, config.stayForReportMs]);

  // The agent ended the call and then left (its job is over): nothing more will happen here.
  const agentGone = !agent && !!lastAgent && endState !== "active";
  useEffect(() => {
    if (connected && agentGone) void room.disconnect();
  }, [connected, agentGone, room]);
  // why we left, when we left on our own (CLIENT_INITIATED)
  const leftBecause = outcome
    ? "you ended the interview"
    : agentGone
      ? "the interviewer left"
      : null;

  const sendAnswer = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    const text = answer.trim();
    if (!text || !agent) return;
    setAnswer("");
    transcript.typedAnswer(text);
    await room.localParticipant.publishData(new TextEncoder().encode(JSON.stringify({ text })), {
      reliable: true,
      topic: "demo.answer",
      destinationIdentities: [agent.identity],
    });
  };

  const elapsed = Math.max(0, Math.floor((now - startedAt.current) / 1000));
  const agentMessage = agentEnded
    ? (AGENT_END_MESSAGES[agentEnded.reason ?? ""] ??
      `The interview was ended (${agentEnded.reason ?? "unknown reason"}).`)
    : null;

  return (
    <Shell title={config.title}>
      <section className="status">
        <span data-testid="connection" className={connected ? "pill ok" : "pill off"}>
          {connected
            ? "connected"
            : `disconnected — ${
                (disconnectReason === 1 && leftBecause) ||
                DISCONNECT_REASONS[disconnectReason] ||
                `reason ${disconnectReason}`
              }`}
        </span>
        <span className="pill">room {room.name}</span>
        <span className="pill">
          {String(Math.floor(elapsed / 60)).padStart(2, "0")}:{String(elapsed % 60).padStart(2, "0")}
        </span>
        <span className="pill" data-testid="agent-state">
          interviewer: {shown ? (attrs["lk.agent.state"] ?? "present") : "not here yet"}
        </span>
      </section>

      {agentMessage && (
        <div className="banner agent" data-testid="agent-ended">
          {agentMessage}
        </div>
      )}

      <ol className="transcript" data-testid="transcript">
        {lines.length === 0 && <li className="muted">Waiting for the interviewer…</li>}
        {lines.map((line: Line) => (
          <li key={line.id} className={`line ${line.who}`} data-who={line.who}>
            <span className="who">{line.who === "interviewer" ? "Interviewer" : "You"}</span>
            <span className="text">{line.text}</span>
          </li>
        ))}
      </ol>

      {config.answerBox && connected && state === "idle" && !agentEnded && (
        <form className="answer" onSubmit={(e) => void sendAnswer(e)}>
          <input
            data-testid="answer-input"
            value={answer}
            onChange={(e) => setAnswer(e.target.value)}
            placeholder="Type your answer (stands in for speaking in this demo)"
          />
          <button type="submit" data-testid="answer-send" disabled={!agent}>
            Send
          </button>
        </form>
      )}

      <section className="end">
        <button
          className="end-button"
          data-testid="end-button"
          disabled={state !== "idle" || !connected || !!agentEnded}
          onClick={() => void endInterview()}
        >
          {state === "idle" ? "End interview" : state === "ending" ? "Ending…" : "Interview ended"}
        </button>
        <dl className="endstate" data-testid="end-state">
          <dt>end state</dt>
          <dd data-testid="endcall-state">{endState}</dd>
          <dt>reason</dt>
          <dd data-testid="endcall-reason">{attrs["endcall.reason"] ?? "—"}</dd>
          <dt>report</dt>
          <dd data-testid="endcall-report">{report ?? "—"}</dd>
        </dl>
      </section>

      {outcome && (
        <p
          className={`ack ${outcome.status === "unacknowledged" ? "bad" : "good"}`}
          data-testid="ack"
          data-outcome={JSON.stringify({
            status: outcome.status,
            via: outcome.via,
            elapsedMs: outcome.elapsedMs,
            ack: outcome.ack,
            errors: outcome.errors,
          })}
        >
          {outcome.status === "unacknowledged"
            ? `Not acknowledged (${error?.code ?? "no answer"}) — you have left the interview.`
            : `Acknowledged via ${outcome.via.toUpperCase()} in ${Math.round(outcome.elapsedMs)} ms (${
                outcome.ack && "acked_by" in outcome.ack && outcome.ack.acked_by === "server"
                  ? "the interviewer did not answer: the server closed the room"
                  : outcome.status
              })`}
        </p>
      )}

      {submitted && (
        <div className="banner done" data-testid="submitted">
          Interview submitted ✓
        </div>
      )}
    </Shell>
  );
}
