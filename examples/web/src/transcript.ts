/**
 * The interview transcript from LiveKit's `lk.transcription` text streams (what livekit-agents
 * publishes for the agent's speech and the user's recognized speech), plus answers typed in
 * the demo's answer box until their transcription arrives.
 */
import type { PageRoom } from "./session";

export interface Line {
  id: string;
  who: "interviewer" | "candidate";
  text: string;
  final: boolean;
}

export class TranscriptStore {
  private lines: Line[] = [];
  private readonly listeners = new Set<() => void>();
  private typed = 0;

  constructor(private readonly isAgent: (identity: string) => boolean) {}

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  snapshot = (): Line[] => this.lines;

  private set(lines: Line[]): void {
    this.lines = lines;
    for (const l of this.listeners) l();
  }

  private upsert(line: Line): void {
    const i = this.lines.findIndex((l) => l.id === line.id);
    if (i === -1) {
      // a transcription of a typed answer replaces the typed line
      const typed = this.lines.findIndex(
        (l) => l.id.startsWith("typed-") && line.who === "candidate" && l.text === line.text,
      );
      if (typed !== -1) {
        this.set(this.lines.map((l, j) => (j === typed ? line : l)));
        return;
      }
      this.set([...this.lines, line]);
    } else {
      this.set(this.lines.map((l, j) => (j === i ? line : l)));
    }
  }

  typedAnswer(text: string): void {
    this.upsert({ id: `typed-${++this.typed}`, who: "candidate", text, final: true });
  }

  /** Register on the room (before connecting, so no stream is missed). */
  attach(room: PageRoom): void {
    room.registerTextStreamHandler("lk.transcription", (reader, participant) => {
      void this.read(reader, participant.identity);
    });
  }

  private async read(
    reader: AsyncIterable<string> & { info: { id: string; attributes?: Record<string, string> } },
    identity: string,
  ): Promise<void> {
    const attrs = reader.info.attributes ?? {};
    const id = attrs["lk.segment_id"] ?? reader.info.id;
    const who = this.isAgent(identity) ? "interviewer" : "candidate";
    const previous = this.lines.find((l) => l.id === id)?.text ?? "";
    let text = "";
    try {
      for await (const chunk of reader) {
        text += chunk;
        this.upsert({ id, who, text: previous + text, final: false });
      }
    } catch {
      // the stream was cut (room disconnected): keep what arrived
    }
    // a segment is sent as several streams; the last one carries lk.transcription_final=true
    const final = attrs["lk.transcription_final"] === "true";
    const full = final && text ? text : previous + text;
    if (full.trim()) this.upsert({ id, who, text: full, final });
  }
}
