/**
 * The package's layout rules, as Python's tests/rules: the reports wing knows nothing of rooms
 * (never imports the agent wing or an rtc/agents SDK), nothing in the library imports the test
 * doubles (`src/testing`, the `endcall-agent/testing` entry), and no browser-only code comes in.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL("../src", import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith(".ts") ? [path] : [];
  });
}

/** Every module specifier a file imports or re-exports (static and dynamic). */
function imports(path: string): string[] {
  const text = readFileSync(path, "utf-8");
  const found: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/g)) found.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) found.push(m[1]!);
  return found;
}

const wing = (name: string) => files(join(SRC, name)).map((p) => [relative(SRC, p), imports(p)] as const);

describe("layout rules", () => {
  it("the scan sees imports (the rules below can fail)", () => {
    const endCall = imports(join(SRC, "agent", "end_call.ts"));
    expect(endCall).toContain("../reports/sink.js");
    expect(endCall).toContain("endcall");
  });

  it("the reports wing imports neither the agent wing nor a LiveKit SDK", () => {
    for (const [file, specs] of wing("reports")) {
      const bad = specs.filter((s) => s.includes("/agent/") || s.startsWith("../agent") || s.startsWith("@livekit/"));
      expect(bad, file).toEqual([]);
    }
  });

  it("nothing outside src/testing imports the test doubles", () => {
    for (const [file, specs] of [...wing("agent"), ...wing("reports"), ["index.ts", imports(join(SRC, "index.ts"))] as const]) {
      expect(specs.filter((s) => s.includes("testing")), file).toEqual([]);
    }
  });

  it("no browser or React code", () => {
    for (const file of files(SRC)) {
      const bad = imports(file).filter((s) => ["react", "livekit-client", "@livekit/components-react"].includes(s));
      expect(bad, relative(SRC, file)).toEqual([]);
    }
  });
});
