/**
 * The drain (step 2 of the end path): a customer end interrupts the agent's speech
 * (`interruptOnCustomerEnd`) and says no goodbye; the tool, `maxDuration` and `silenceTimeout`
 * let the goodbye play out in full. The caller bounds it with `drainTimeout`. Running tool
 * calls are then left to `session.shutdown({drain: true})`, which drains the activity (Node's
 * session has no public list of running tool tasks). Port of Python's `endcall.agent.drain`.
 */
import { waitSpeech, waitTurn } from "./end_tool.js";
import type { GoodbyePlan } from "./goodbye.js";
import { logger } from "./log.js";
import type { Trigger } from "./machine.js";
import type { SessionLike, SpeechHandleLike } from "./surface.js";

export async function drain(
  session: SessionLike,
  trigger: Trigger,
  plan: GoodbyePlan | null,
  options: { interruptOnCustomerEnd: boolean; closing: () => boolean },
): Promise<void> {
  if (trigger.initiator.kind === "customer" && options.interruptOnCustomerEnd) {
    try {
      const fut = session.interrupt({ force: true }) as { await?: Promise<unknown> } | undefined;
      if (fut && fut.await instanceof Promise) await fut.await.catch(() => undefined);
    } catch (e) {
      logger.debug(`interrupt failed: ${String(e)}`);
    }
  }
  if (plan === null) return;
  if (plan.turn) await waitTurn(plan.turn);
  if (plan.say && !options.closing()) {
    let handle: SpeechHandleLike | null = null;
    try {
      handle = session.say(plan.say, { allowInterruptions: false });
    } catch (e) {
      // e.g. a realtime model without a TTS: have the model say it
      logger.debug(`say() failed (${String(e)}); asking the model instead`);
      try {
        handle = session.generateReply({
          instructions: `Say exactly this to the user: "${plan.say}"`,
          allowInterruptions: false,
        });
      } catch (e2) {
        logger.warn(`could not say the goodbye: ${String(e2)}`);
      }
    }
    if (handle !== null) await waitSpeech(handle);
  }
}
