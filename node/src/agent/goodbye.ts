/**
 * The goodbye said before an agent-side end (the tool, `maxDuration`, `silenceTimeout`,
 * `end({goodbye})`): `Goodbyes` picks it per reason, `GoodbyePlan` is what the drain must wait
 * for / say before the session may close. Port of the goodbye half of Python's
 * `endcall.agent.end_tool`.
 */
import { isValidReason } from "endcall";
import type { SpeechHandleLike } from "./surface.js";

/** The key of a goodbye mapping used for every reason it does not name. */
export const ANY_REASON = "*";

/** One text for every reason, or reason → text (`"*"` covers the others). */
export type GoodbyeOption = string | Readonly<Record<string, string>> | null | undefined;

export class Goodbyes {
  private readonly byReason: Record<string, string> = {};

  constructor(goodbye: GoodbyeOption) {
    if (goodbye === null || goodbye === undefined) return;
    if (typeof goodbye === "string") {
      if (goodbye) this.byReason[ANY_REASON] = goodbye;
      return;
    }
    if (typeof goodbye !== "object" || Array.isArray(goodbye)) {
      throw new TypeError("goodbye must be a string, an object of reason to text, or null");
    }
    for (const [reason, text] of Object.entries(goodbye)) {
      if (reason !== ANY_REASON && !isValidReason(reason)) {
        throw new RangeError(`goodbye: ${JSON.stringify(reason)} is not a reason (or "*")`);
      }
      if (typeof text !== "string") throw new TypeError(`goodbye[${JSON.stringify(reason)}] must be a string`);
      if (text) this.byReason[reason] = text;
    }
  }

  /** The goodbye for `reason`, or null. */
  for(reason: string): string | null {
    return this.byReason[reason] ?? this.byReason[ANY_REASON] ?? null;
  }
}

/** The turn in which the LLM called the end tool. */
export interface ToolTurn {
  handle: SpeechHandleLike | null;
  /** The model answers the tool result on its own (realtime auto reply). */
  autoReply: boolean;
  /** The next speech created after the call (realtime auto reply only). */
  reply: Promise<SpeechHandleLike | null> | null;
}

/** What the drain must wait for / say before the session may close. */
export interface GoodbyePlan {
  turn?: ToolTurn | null;
  say?: string | null;
}
