/**
 * `endCall.tool`: the LLM's end function tool (`end_call` by default), and how its goodbye is
 * played out in full. The tool call makes the session `ending` with `assistant-ended-call` at
 * once; the end path then waits for the turn that called the tool and says the goodbye:
 *
 * - **pipeline LLM**: with a fixed `goodbye` the tool returns `undefined` (no reply is
 *   generated) and the end path waits for the calling turn, then says the goodbye with
 *   interruptions disallowed; without one it returns "say goodbye to the user" and the model's
 *   reply (the same speech handle) is the goodbye.
 * - **realtime model with `autoToolReplyGeneration`**: the tool returns the goodbye instruction
 *   and the end path waits for the next speech the session creates (at most 5 s) and its
 *   playout, as `@livekit/agents`' `beta.createEndCallTool` does.
 *
 * Waits use `addDoneCallback`, never `waitForPlayout()` from the tool's own async context (the
 * SDK throws `SpeechHandleCircularWaitError` there). Port of Python's `endcall.agent.end_tool`.
 */
import { llm } from "@livekit/agents";
import { logger } from "./log.js";
import type { GoodbyePlan, ToolTurn } from "./goodbye.js";
import type { SessionLike, SpeechHandleLike } from "./surface.js";

export const END_CALL_NAME = "end_call";
export const END_CALL_DESCRIPTION =
  "Ends the call. Call it when the conversation is over: the user clearly said they are " +
  "done, or you have finished and said everything you had to say. Do not call it when the " +
  "user asks to pause, hold or be transferred, or when their intent is unclear. It is the " +
  "last thing you do: the goodbye is said for you and the call is then disconnected.";

/** What LLM providers accept as a function name. */
export const TOOL_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;
export const REALTIME_REPLY_TIMEOUT_MS = 5_000;

/** The minimal RunContext the tool reads. */
export interface ToolRunContext {
  session: SessionLike & { currentAgent?: unknown };
  speechHandle: SpeechHandleLike | null;
}

/** Wait until a speech handle is done, from any async context. */
export function waitSpeech(handle: SpeechHandleLike): Promise<void> {
  if (handle.done()) return Promise.resolve();
  return new Promise((resolve) => handle.addDoneCallback(() => resolve()));
}

function realtimeAutoReply(ctx: ToolRunContext): boolean {
  try {
    const agent = ctx.session.currentAgent as { getActivityOrThrow?: () => { llm?: unknown } } | undefined;
    const model = agent?.getActivityOrThrow?.().llm;
    return model instanceof llm.RealtimeModel && Boolean(model.capabilities.autoToolReplyGeneration);
  } catch {
    return false;
  }
}

/** Record the calling turn; for an auto-replying realtime model, catch its next speech. */
export function captureTurn(ctx: ToolRunContext): ToolTurn {
  const autoReply = realtimeAutoReply(ctx);
  const turn: ToolTurn = { handle: ctx.speechHandle ?? null, autoReply, reply: null };
  if (autoReply) {
    const session = ctx.session;
    turn.reply = new Promise<SpeechHandleLike | null>((resolve) => {
      const onCreated = (ev: { speechHandle?: SpeechHandleLike }): void => {
        const handle = ev?.speechHandle;
        if (!handle || handle === ctx.speechHandle) return;
        clearTimeout(timer);
        session.off("speech_created", onCreated);
        resolve(handle);
      };
      const timer = setTimeout(() => {
        session.off("speech_created", onCreated);
        resolve(null);
      }, REALTIME_REPLY_TIMEOUT_MS);
      session.on("speech_created", onCreated);
    });
  }
  return turn;
}

/** Wait for the calling turn, then (realtime auto reply) for the model's reply. */
export async function waitTurn(turn: ToolTurn): Promise<void> {
  if (turn.handle !== null) await waitSpeech(turn.handle);
  if (turn.autoReply && turn.reply !== null) {
    const reply = await turn.reply;
    if (reply === null) {
      logger.warn("the realtime model did not reply to the end tool in time");
      return;
    }
    await waitSpeech(reply);
  }
}

/** What the drain does after the tool call. */
export function goodbyePlan(turn: ToolTurn, goodbye: string | null): GoodbyePlan {
  return { turn, say: turn.autoReply ? null : goodbye };
}

/** What the end tool returns to the LLM (undefined: no reply is generated). */
export function toolResult(turn: ToolTurn, goodbye: string | null): string | undefined {
  if (turn.autoReply) {
    return goodbye ? `Say exactly this goodbye to the user, nothing else: "${goodbye}"` : "say goodbye to the user";
  }
  return goodbye ? undefined : "say goodbye to the user";
}

/** Check the tool's name and description (throws `RangeError`). */
export function checkToolOptions(name: string, description: string): void {
  if (!TOOL_NAME.test(name)) {
    throw new RangeError(
      `toolName ${JSON.stringify(name)} must be 1-64 characters of [A-Za-z0-9_-], not starting with a digit or '-'`,
    );
  }
  if (!description.trim()) throw new RangeError("toolDescription must not be empty");
}

/** The end FunctionTool; `onCall(ctx)` returns the tool output (undefined: no reply). */
export function makeEndTool(
  onCall: (ctx: ToolRunContext) => string | undefined,
  name: string = END_CALL_NAME,
  description: string = END_CALL_DESCRIPTION,
) {
  checkToolOptions(name, description);
  return llm.tool({
    name,
    description,
    execute: async (_args, { ctx }) => onCall(ctx as unknown as ToolRunContext),
  });
}
