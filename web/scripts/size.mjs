// Prints the min+gzip size of each entry as an app would ship it (esbuild, minified, tree-shaken;
// livekit-client, react, @livekit/components-react and the core itself — for the other entries —
// excluded) and fails when a budget is exceeded. Builds `dist/` first when it is missing.
import { build } from "esbuild";
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { resolve } from "node:path";

const dist = resolve(import.meta.dirname, "../dist");
// a fresh clone has no dist/: build it first rather than fail on a missing file
if (!["index.js", "react.js", "testing.js", "server.js"].every((f) => existsSync(resolve(dist, f)))) {
  console.log("dist/ is missing or incomplete: running `npm run build` first");
  execSync("npm run build", { cwd: resolve(import.meta.dirname, ".."), stdio: "inherit" });
}
const external = ["endcall", "react", "livekit-client", "@livekit/components-react"];

const core = (names) => `export { ${names} } from "${dist}/index.js";`;
// Budgets (issue 5): the core as an app imports it <= 3 KB, the react entry <= 1.5 KB; a React
// app ships the core parts the hook uses plus the react entry, so that sum is held to 4.5 KB.
// `endcall/server` (issue 24) is for backends, never in a browser bundle: <= 3 KB of its own.
const cases = [
  { name: "endcall: endCall (the core)", code: core("endCall"), budget: 3072 },
  {
    name: "endcall: what useEndInterview uses",
    code: core("endCall, installEndBeacon, onAgentEnded, RoomEvents"),
  },
  { name: "endcall/react (core excluded)", code: `export * from "${dist}/react.js";`, budget: 1536 },
  {
    name: "React app: endcall/react + its core",
    code: `export * from "${dist}/react.js";`,
    bundleCore: true,
    budget: 4608,
  },
  { name: "endcall: every export (codec incl. reports)", code: `export * from "${dist}/index.js";` },
  { name: "endcall/testing (test doubles)", code: `export * from "${dist}/testing.js";` },
  { name: "endcall/server (backends only)", code: `export * from "${dist}/server.js";`, budget: 3072 },
];

let failed = false;
for (const { name, code, budget, bundleCore } of cases) {
  const result = await build({
    stdin: { contents: code, resolveDir: dist, loader: "js" },
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    platform: "browser",
    write: false,
    external: bundleCore ? external.filter((e) => e !== "endcall") : external,
    alias: bundleCore ? { endcall: `${dist}/index.js` } : {},
  });
  const bytes = result.outputFiles[0].contents;
  const gz = gzipSync(bytes, { level: 9 }).length;
  const over = budget !== undefined && gz > budget;
  failed ||= over;
  const limit = budget === undefined ? "" : ` (budget ${budget} B${over ? ": OVER" : ""})`;
  console.log(`${name.padEnd(46)} ${String(bytes.length).padStart(6)} B min  ${String(gz).padStart(5)} B min+gzip${limit}`);
}
process.exit(failed ? 1 : 0);
