/** The built package, as Next.js (App Router) sees it (issue 24): the React entry starts with
 * `"use client"` (so a Server Component may import it), the core imports in plain Node with no
 * DOM globals (a Server Component may import it too), and `endcall/server` runs there, imports
 * nothing and is in no browser entry. Builds with the real tsup options (tsup.config.ts) into a
 * temporary directory, without type declarations. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "tsup";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { options } from "../tsup.config";

const WEB = resolve(__dirname, "..");
let out = "";
const read = (file: string): string => readFileSync(join(out, file), "utf-8");

beforeAll(async () => {
  out = mkdtempSync(join(tmpdir(), "endcall-build-"));
  await build({ ...options, config: false, dts: false, silent: true, outDir: out });
}, 120_000);
afterAll(() => {
  if (out) rmSync(out, { recursive: true, force: true });
});

/** The directive prologue: the string-literal statements before anything else (comments and
 * whitespace skipped), as ECMAScript defines it. */
function directives(code: string): string[] {
  const found: string[] = [];
  let rest = code;
  for (;;) {
    rest = rest.replace(/^(\s+|\/\/[^\n]*\n|\/\*[\s\S]*?\*\/)+/, "");
    const m = /^(["'])([^"'\\\n]*)\1\s*(;|\n|$)/.exec(rest);
    if (!m) return found;
    found.push(m[2]!);
    rest = rest.slice(m[0].length);
  }
}

/** Run `code` in a plain Node process (no DOM globals), as an ES module. */
function node(code: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, ["--input-type=module", "-e", code], { encoding: "utf-8", cwd: out });
}

describe("built for Next.js", () => {
  it('dist/react.js and dist/react.cjs begin with "use client"', () => {
    expect(directives(read("react.js"))[0]).toBe("use client");
    expect(directives(read("react.cjs"))).toContain("use client");
  });

  it("the other entries are not client modules", () => {
    for (const file of ["index.js", "index.cjs", "server.js", "server.cjs"]) {
      expect(directives(read(file)), file).not.toContain("use client");
    }
  });

  it("the core imports in plain Node without window or document, and works there", () => {
    const url = pathToFileURL(join(out, "index.js")).href;
    const run = node(`
      if (typeof window !== "undefined" || typeof document !== "undefined" || typeof globalThis.navigator?.sendBeacon === "function") throw new Error("DOM globals in this process");
      const m = await import(${JSON.stringify(url)});
      const request = m.parseRequest('{"type":"end.request","v":1,"id":"r1"}', { origin: "client" });
      const stop = m.installEndBeacon({ name: "r", localParticipant: {}, remoteParticipants: new Map(), on() {}, off() {} }, { fallbackUrl: "/v1/end", token: "t" });
      stop();
      console.log(JSON.stringify({ id: request.id, exports: Object.keys(m).length }));
    `);
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { id: string; exports: number };
    expect(result.id).toBe("r1");
    expect(result.exports).toBeGreaterThan(30);
    const cjs = spawnSync(process.execPath, ["-e", `const m = require(${JSON.stringify(join(out, "index.cjs"))}); console.log(typeof m.endCall)`], { encoding: "utf-8" });
    expect(cjs.stdout.trim(), cjs.stderr).toBe("function");
  });

  it("endcall/server runs in plain Node, and imports nothing (no Node-only modules)", () => {
    for (const file of ["server.js", "server.cjs"]) {
      const code = read(file);
      expect(code, file).not.toMatch(/\bfrom\s*["']|\brequire\(|\bimport\(/);
    }
    const url = pathToFileURL(join(out, "server.js")).href;
    const run = node(`
      const { mintEndToken, endProxy } = await import(${JSON.stringify(url)});
      const token = await mintEndToken({ room: "r", identity: "i", ttl: 60, apiKey: "k", apiSecret: "s".repeat(32) });
      const handler = endProxy({ target: undefined });
      console.log(JSON.stringify({ parts: token.split(".").length, status: (await handler(new Request("http://x/v1/end", { method: "POST", body: "{}" }))).status }));
    `);
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ parts: 3, status: 500 });
  });

  it("no browser entry contains the server helpers", () => {
    for (const file of ["index.js", "index.cjs", "react.js", "react.cjs", "testing.js", "testing.cjs"]) {
      const code = read(file);
      expect(code, file).not.toMatch(/mintEndToken|endProxy|HMAC/);
    }
  });

  it("package.json exports every entry, endcall/server included, in both formats", () => {
    const pkg = JSON.parse(readFileSync(join(WEB, "package.json"), "utf-8")) as {
      exports: Record<string, string | { import: { default: string; types: string }; require: { default: string; types: string } }>;
    };
    const entries = Object.keys(options.entry).sort();
    const exported = Object.keys(pkg.exports)
      .filter((key) => key !== "./package.json")
      .map((key) => (key === "." ? "index" : key.slice(2)))
      .sort();
    expect(exported).toEqual(entries);
    for (const [key, target] of Object.entries(pkg.exports)) {
      if (typeof target === "string") continue;
      const name = key === "." ? "index" : key.slice(2);
      expect(target.import.default).toBe(`./dist/${name}.js`);
      expect(target.require.default).toBe(`./dist/${name}.cjs`);
      expect(target.import.types).toBe(`./dist/${name}.d.ts`);
      read(`${name}.js`);
      read(`${name}.cjs`);
    }
  });
});
