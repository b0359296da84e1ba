/**
 * `AgentEnds`: the ends the agent decides itself — the LLM's end tool (`assistant-ended-call`,
 * initiated by the agent participant, goodbye played in full; a second call while ending
 * returns nothing) and the timers (`exceeded-max-duration`, `silence-timed-out`, with the
 * goodbye configured for that reason). Port of Python's `endcall.agent.agent_ends`.
 */
import type { Call } from "./call.js";
import type { Decisions } from "./decisions.js";
import { captureTurn, goodbyePlan, toolResult, type ToolRunContext } from "./end_tool.js";
import type { Goodbyes } from "./goodbye.js";
import { logger } from "./log.js";

export class AgentEnds {
  constructor(
    private readonly call: Call,
    private readonly decisions: Decisions,
    private readonly goodbyes: Goodbyes,
  ) {}

  /** The LLM called the end tool; what the tool returns to it. */
  readonly onTool = (ctx: ToolRunContext): string | undefined => {
    try {
      if (this.call.machine.state !== "active") return undefined;
      const turn = captureTurn(ctx);
      const reason = "assistant-ended-call";
      const goodbye = this.goodbyes.for(reason);
      let identity: string | null = null;
      try {
        identity = this.call.ctx.room.localParticipant?.identity || null;
      } catch {
        identity = null;
      }
      this.decisions.trigger(reason, "agent", "tool", { identity, plan: goodbyePlan(turn, goodbye) });
      return toolResult(turn, goodbye);
    } catch (e) {
      logger.error("the end tool failed", e);
      return undefined;
    }
  };

  readonly onMaxDuration = (): void => this.onTimer("exceeded-max-duration");
  readonly onSilence = (): void => this.onTimer("silence-timed-out");

  private onTimer(reason: string): void {
    const say = this.goodbyes.for(reason);
    this.decisions.trigger(reason, "system", "timer", { plan: say ? { say } : null });
  }
}
