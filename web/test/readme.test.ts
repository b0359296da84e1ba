/** web/README.md against the code: the documented `agentEnded` shape is the `AgentEndState`
 * type (checked by tsc through `expectTypeOf`, and the README row by text). */
import { readFileSync } from "node:fs";
import { describe, expect, expectTypeOf, it } from "vitest";
import type { AgentEndState } from "endcall";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

describe("web/README.md", () => {
  it("documents agentEnded as the AgentEndState type", () => {
    expectTypeOf<AgentEndState["state"]>().toEqualTypeOf<"ending" | "ended">();
    expectTypeOf<AgentEndState["reason"]>().toEqualTypeOf<string | null>();
    expectTypeOf<AgentEndState["endId"]>().toEqualTypeOf<string | null>();
    const row = readme.split("\n").find((line) => line.startsWith("| `agentEnded` |"));
    expect(row).toBeDefined();
    expect(row).toContain(
      '`{state: "ending" \\| "ended", reason: string \\| null, endId: string \\| null}`',
    );
  });
});
