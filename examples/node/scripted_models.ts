/**
 * Scripted model plugins for running a real `voice.AgentSession` (Node) without any provider:
 * the TypeScript twins of `endcall.testing`'s Python `ScriptedLLM`, `ScriptedSTT` and `TimedTTS`
 * (py/endcall/testing/models.py), so the Node example interview agent plays the same interview
 * as the Python one in the demo and the tests.
 *
 * - {@link ScriptedLLM} answers each `chat()` with the next item of a script: text, tool calls,
 *   or a {@link Turn} combining both. After a tool call the session calls `chat()` again with
 *   the tool's output: that consumes the next item.
 * - {@link TimedTTS} synthesizes silence whose length follows the text, so speech takes real
 *   time to play out and can be interrupted.
 * - {@link ScriptedSTT} is a streaming STT fed with text: `stt.say("my answer")` makes the
 *   session receive a final user transcript, as a real STT would after the user spoke.
 *
 * @livekit/agents 1.9.0 ships `voice.testing.FakeLLM` (answers keyed by the exact user input) and
 * `stt.testing.FakeSTT` (speech scheduled from the first audio frame), but no fake TTS; neither
 * fits an interview driven by typed answers, so these follow the Python models instead.
 */
import { AudioFrame } from '@livekit/rtc-node';
import {
  type APIConnectOptions,
  DEFAULT_API_CONNECT_OPTIONS,
  asLanguageCode,
  llm,
  shortuuid,
  stt,
  tts,
} from '@livekit/agents';

/** A function call the scripted LLM makes: `{ name: "end_call", args: {} }`. */
export interface ToolCall {
  name: string;
  args?: Record<string, unknown>;
}

/** One LLM response: optional text, then tool calls, after `delayMs`. */
export interface Turn {
  text?: string;
  toolCalls?: ToolCall[];
  delayMs?: number;
}

export type ScriptItem = string | Turn;

function asTurn(item: ScriptItem): Turn {
  return typeof item === 'string' ? { text: item } : item;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** An LLM answering each `chat()` with the next script item, then `fallback` forever. */
export class ScriptedLLM extends llm.LLM {
  #script: ScriptItem[];
  #fallback: ScriptItem;
  /** the number of `chat()` calls so far */
  calls = 0;

  constructor(script: ScriptItem[] = [], { fallback = '' }: { fallback?: ScriptItem } = {}) {
    super();
    this.#script = [...script];
    this.#fallback = fallback;
  }

  label(): string {
    return 'endcall.testing.ScriptedLLM';
  }

  override get model(): string {
    return 'scripted';
  }

  override get provider(): string {
    return 'endcall.testing';
  }

  /** Script items not consumed yet. */
  get remaining(): number {
    return this.#script.length;
  }

  chat({
    chatCtx,
    toolCtx,
    connOptions = DEFAULT_API_CONNECT_OPTIONS,
  }: {
    chatCtx: llm.ChatContext;
    toolCtx?: llm.ToolContextLike;
    connOptions?: APIConnectOptions;
    parallelToolCalls?: boolean;
    toolChoice?: llm.ToolChoice;
    extraKwargs?: Record<string, unknown>;
  }): llm.LLMStream {
    this.calls += 1;
    const item = this.#script.length > 0 ? this.#script.shift()! : this.#fallback;
    return new ScriptedLLMStream(this, asTurn(item), { chatCtx, toolCtx, connOptions });
  }
}

class ScriptedLLMStream extends llm.LLMStream {
  #turn: Turn;

  constructor(
    owner: ScriptedLLM,
    turn: Turn,
    params: { chatCtx: llm.ChatContext; toolCtx?: llm.ToolContextLike; connOptions: APIConnectOptions },
  ) {
    super(owner, params);
    this.#turn = turn;
  }

  protected async run(): Promise<void> {
    const turn = this.#turn;
    const id = shortuuid('scripted_');
    if (turn.delayMs) await sleep(turn.delayMs);
    const text = turn.text ?? '';
    if (text) {
      this.queue.put({ id, delta: { role: 'assistant', content: text } });
    }
    if (turn.toolCalls && turn.toolCalls.length > 0) {
      const toolCalls = turn.toolCalls.map((call) =>
        llm.FunctionCall.create({
          callId: shortuuid('call_'),
          name: call.name,
          args: JSON.stringify(call.args ?? {}),
        }),
      );
      this.queue.put({ id, delta: { role: 'assistant', toolCalls } });
    }
    const words = text.split(/\s+/).filter(Boolean).length;
    this.queue.put({
      id,
      usage: {
        completionTokens: words,
        promptTokens: 0,
        promptCachedTokens: 0,
        totalTokens: words,
      },
    });
  }
}

export interface TimedTTSOptions {
  /** seconds of audio per character of the stripped text (default 0.01) */
  secondsPerChar?: number;
  /** never shorter than this (seconds, default 0.05) */
  minSeconds?: number;
  sampleRate?: number;
}

/**
 * A non-streaming TTS producing silent PCM whose duration follows the text
 * (`secondsPerChar` × the stripped text's length, at least `minSeconds`). Synthesis is instant;
 * playout takes real time because the session's audio output plays frames in real time. The
 * session wraps it in a sentence `StreamAdapter`.
 */
export class TimedTTS extends tts.TTS {
  label = 'endcall.testing.TimedTTS';
  readonly secondsPerChar: number;
  readonly minSeconds: number;
  /** every text synthesized */
  readonly requests: string[] = [];

  constructor({ secondsPerChar = 0.01, minSeconds = 0.05, sampleRate = 24000 }: TimedTTSOptions = {}) {
    super(sampleRate, 1, { streaming: false });
    this.secondsPerChar = secondsPerChar;
    this.minSeconds = minSeconds;
  }

  override get model(): string {
    return 'timed';
  }

  override get provider(): string {
    return 'endcall.testing';
  }

  /** Seconds of audio synthesized for `text`. */
  durationOf(text: string): number {
    return Math.max(this.secondsPerChar * text.trim().length, this.minSeconds);
  }

  synthesize(text: string, connOptions?: APIConnectOptions, abortSignal?: AbortSignal): tts.ChunkedStream {
    this.requests.push(text);
    return new TimedChunkedStream(this, text, connOptions, abortSignal);
  }

  stream(): tts.SynthesizeStream {
    throw new Error('TimedTTS is not streaming: the session wraps it in a StreamAdapter');
  }
}

class TimedChunkedStream extends tts.ChunkedStream {
  label = 'endcall.testing.TimedChunkedStream';
  #timed: TimedTTS;

  constructor(timed: TimedTTS, text: string, connOptions?: APIConnectOptions, abortSignal?: AbortSignal) {
    super(text, timed, connOptions, abortSignal);
    this.#timed = timed;
  }

  protected async run(): Promise<void> {
    const rate = this.#timed.sampleRate;
    const total = Math.round(this.#timed.durationOf(this.inputText) * rate);
    const requestId = shortuuid('timed_');
    const chunk = Math.round(rate / 10); // 100 ms frames
    for (let done = 0; done < total; done += chunk) {
      const n = Math.min(chunk, total - done);
      this.queue.put({
        requestId,
        segmentId: requestId,
        frame: new AudioFrame(new Int16Array(n), rate, 1, n),
        final: done + n >= total,
      });
    }
  }
}

/**
 * A streaming STT fed with text. `say(text)` delivers START_OF_SPEECH, an interim and a
 * FINAL_TRANSCRIPT, then END_OF_SPEECH to the open recognition stream(s), as if the user had
 * said `text`; `say` before the session opened its stream is kept and delivered when it opens.
 * Audio frames pushed by the session are ignored.
 */
export class ScriptedSTT extends stt.STT {
  label = 'endcall.testing.ScriptedSTT';
  #streams = new Set<ScriptedSpeechStream>();
  #pending: string[] = [];
  readonly language: string;

  constructor({ language = 'en' }: { language?: string } = {}) {
    super({ streaming: true, interimResults: true });
    this.language = language;
  }

  override get model(): string {
    return 'scripted';
  }

  override get provider(): string {
    return 'endcall.testing';
  }

  /** The user says `text`. */
  say(text: string): void {
    const open = [...this.#streams].filter((s) => s.open);
    if (open.length === 0) {
      this.#pending.push(text);
      return;
    }
    for (const s of open) s.say(text);
  }

  protected async _recognize(): Promise<stt.SpeechEvent> {
    return { type: stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives: [this.speechData('')] };
  }

  speechData(text: string): stt.SpeechData {
    return { language: asLanguageCode(this.language), text, startTime: 0, endTime: 0, confidence: 1 };
  }

  stream(options?: { connOptions?: APIConnectOptions }): stt.SpeechStream {
    const s = new ScriptedSpeechStream(this, options?.connOptions);
    this.#streams.add(s);
    const pending = this.#pending;
    this.#pending = [];
    for (const text of pending) s.say(text);
    return s;
  }

  /** @internal */
  forget(s: ScriptedSpeechStream): void {
    this.#streams.delete(s);
  }
}

class ScriptedSpeechStream extends stt.SpeechStream {
  label = 'endcall.testing.ScriptedSpeechStream';
  #owner: ScriptedSTT;
  #open = true;

  constructor(owner: ScriptedSTT, connOptions?: APIConnectOptions) {
    super(owner, undefined, connOptions);
    this.#owner = owner;
  }

  get open(): boolean {
    return this.#open && !this.closed;
  }

  say(text: string): void {
    if (!this.open) return;
    const data = this.#owner.speechData(text);
    const T = stt.SpeechEventType;
    this.queue.put({ type: T.START_OF_SPEECH });
    this.queue.put({ type: T.INTERIM_TRANSCRIPT, alternatives: [data] });
    this.queue.put({ type: T.FINAL_TRANSCRIPT, alternatives: [data] });
    this.queue.put({ type: T.END_OF_SPEECH, alternatives: [data] });
  }

  protected async run(): Promise<void> {
    try {
      // audio is ignored: the transcript comes from say()
      for await (const _ of this.input) {
        void _;
      }
    } finally {
      this.#open = false;
      this.#owner.forget(this);
    }
  }
}
