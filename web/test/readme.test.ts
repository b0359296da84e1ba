/** web/README.md against the code: the documented `agentEnded` shape is the `AgentEndState`
 * type (checked by tsc through `expectTypeOf`, and the README row by text). */
import { readFileSync } from "node:fs";
import { describe, expect, expectTypeOf, it } from "vitest";
import type { AgentEndState } from "endcall";
import type { EndProxyOptions } from "../src/server";

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

  it("documents every endProxy option, and no other", () => {
    const all: Record<keyof EndProxyOptions, true> = { target: true, timeoutMs: true, maxBodyBytes: true, getClientAddress: true, fetch: true };
    const table = readme.split("### `endProxy`")[1]!.split("| option | default | meaning |")[1]!.split("\n\n")[0]!;
    const rows = table.split("\n").filter((line) => line.startsWith("| `")).map((line) => line.split("`")[1]);
    expect(rows.sort()).toEqual(Object.keys(all).sort());
  });

  it("names the three entries a Next.js app uses and the one-Room rule", () => {
    for (const text of ['"use client"', "endcall/server", "mintEndToken", "endProxy", "--forwarded-allow-ips", "## One `Room`, many calls", "npm pack"]) {
      expect(readme).toContain(text);
    }
  });
});
