/**
 * The interview itself, shared by the Node example agent: the script (the same greeting,
 * questions and closing line as examples/interview_agent.py), the interviewer `Agent`, the
 * scripted models and the scenario settings a demo/test dispatch carries in its metadata.
 */
import { voice } from '@livekit/agents';
import type { Room } from '@livekit/rtc-node';
import { type ScriptItem, ScriptedLLM, ScriptedSTT, TimedTTS } from './scripted_models.js';

export const GREETING = 'Hello, and thank you for joining this interview.';
export const QUESTIONS = [
  'First question: tell me about a system you built that you are proud of.',
  'Second question: how did you know it was working in production?',
  'Third question: what would you change if you built it again?',
] as const;
/** text that appears in the transcript when each question is asked */
export const QUESTION_MARKERS = ['First question', 'Second question', 'Third question'] as const;
export const CLOSING = 'Thank you, that was my last question.';
export const GOODBYE = 'Thank you for your time. Goodbye!';
/** seconds */
export const MAX_DURATION = 30 * 60;
/** seconds */
export const SILENCE_TIMEOUT = 120;
/** the end tool's name, as the Python example's (`EndCall`'s default) */
export const END_TOOL = 'end_call';

export const INSTRUCTIONS = `You are a friendly, concise technical interviewer.
Ask these questions one at a time, in order, and wait for each answer:
${QUESTIONS.map((q) => `- ${q}`).join('\n')}
Acknowledge each answer in one short sentence before the next question.
After the third answer say "${CLOSING}" and call the ${END_TOOL} tool. Call ${END_TOOL} earlier only
if the candidate clearly wants to stop. Never say goodbye yourself: it is said for you.`;

/** The interviewer: greets, asks the first question, then the LLM runs the interview. */
export class InterviewAgent extends voice.Agent {
  constructor(tools: ConstructorParameters<typeof voice.Agent>[0]['tools']) {
    super({ instructions: INSTRUCTIONS, tools });
  }

  override async onEnter(): Promise<void> {
    this.session.say(`${GREETING} ${QUESTIONS[0]}`);
  }
}

export interface Models {
  stt: ScriptedSTT;
  llm: ScriptedLLM;
  tts: TimedTTS;
}

/** The scripted models of the Python example's `scripted_models()`: the LLM follows the
 * interview script (and, with `agentEnds`, calls the end tool after the third answer);
 * `stt.say(text)` is the candidate speaking; the TTS produces timed audio. */
export function scriptedModels({ agentEnds = false }: { agentEnds?: boolean } = {}): Models {
  const last: ScriptItem = agentEnds
    ? { text: CLOSING, toolCalls: [{ name: END_TOOL }] }
    : `${CLOSING} Take your time if you want to add anything.`;
  const llm = new ScriptedLLM([`Thanks. ${QUESTIONS[1]}`, `I see. ${QUESTIONS[2]}`, last], {
    fallback: 'Thank you.',
  });
  return { stt: new ScriptedSTT(), llm, tts: new TimedTTS({ secondsPerChar: 0.03 }) };
}

/** What a demo/test scenario changes, from the job's dispatch metadata
 * (`{"scenario": {"agent_ends": true, "max_duration": 12, ...}}`), as `ScriptedSettings` in
 * the Python example. Durations in seconds. */
export interface ScriptedSettings {
  agentEnds: boolean;
  maxDuration: number | null;
  silenceTimeout: number | null;
  rpcDisabled: boolean;
}

export function settingsFromMetadata(metadata: string | undefined): ScriptedSettings {
  const settings: ScriptedSettings = {
    agentEnds: false,
    maxDuration: MAX_DURATION,
    silenceTimeout: SILENCE_TIMEOUT,
    rpcDisabled: false,
  };
  let doc: unknown;
  try {
    doc = JSON.parse(metadata || '{}');
  } catch {
    return settings;
  }
  const raw = doc && typeof doc === 'object' ? (doc as Record<string, unknown>).scenario : undefined;
  if (!raw || typeof raw !== 'object') return settings;
  const s = raw as Record<string, unknown>;
  if (typeof s.agent_ends === 'boolean') settings.agentEnds = s.agent_ends;
  if (typeof s.rpc_disabled === 'boolean') settings.rpcDisabled = s.rpc_disabled;
  if (typeof s.max_duration === 'number' || s.max_duration === null) settings.maxDuration = s.max_duration;
  if (typeof s.silence_timeout === 'number' || s.silence_timeout === null) {
    settings.silenceTimeout = s.silence_timeout;
  }
  return settings;
}

/** The demo page's answer box stands in for speech: `demo.answer` packets feed the scripted
 * STT, as if the candidate had said them. */
export function listenForTypedAnswers(room: Room, stt: ScriptedSTT): void {
  room.on('dataReceived', (payload: Uint8Array, _participant?: unknown, _kind?: unknown, topic?: string) => {
    if (topic !== 'demo.answer') return;
    try {
      const text: unknown = JSON.parse(new TextDecoder().decode(payload)).text;
      if (typeof text === 'string' && text.trim()) stt.say(text.trim());
    } catch {
      // not an answer
    }
  });
}
