// After `next build`: what must stay on the server is in the server build and nowhere in the
// client bundle (.next/static/**/*.js), and endcall's browser code is in the client bundle.
//
// - `endcall/server` (mintEndToken, endProxy: used by the two route handlers) and
//   livekit-server-sdk (AccessToken: the token route) must not reach the browser.
// - Each marker is first looked up where it must be (the installed package, then .next/server),
//   so a marker that no longer matches the code fails the check instead of passing it.
// - The client bundle must hold endcall's core and React entry (the page's useEndInterview), so
//   the scan is known to look at the files the browser loads.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const next = join(root, ".next");

/** Strings only that code has, which survive minification (error messages). */
const SERVER_ONLY = [
  { what: "endcall/server mintEndToken", file: "node_modules/endcall/dist/server.js", text: "mintEndToken needs Web Crypto" },
  { what: "endcall/server endProxy", file: "node_modules/endcall/dist/server.js", text: "the end proxy has no valid target URL" },
  { what: "livekit-server-sdk AccessToken", file: "node_modules/livekit-server-sdk/dist/AccessToken.js", text: "api-key and api-secret must be set" },
];
const IN_CLIENT = [
  { what: "endcall core (endCall)", file: "node_modules/endcall/dist/index.js", text: "end_interview" },
  { what: "endcall/react useEndInterview", file: "node_modules/endcall/dist/react.js", text: "no room in options or RoomContext" },
];

function jsFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...jsFiles(path));
    else if (/\.(m?js|cjs)$/.test(name)) out.push(path);
  }
  return out;
}

const read = (files) => files.map((path) => ({ path, code: readFileSync(path, "utf-8") }));
let client;
let server;
try {
  client = read(jsFiles(join(next, "static")));
  server = read(jsFiles(join(next, "server")));
} catch (error) {
  console.log(`client bundle check FAILED: no build in ${relative(process.cwd(), next) || next} (run next build): ${error.message}`);
  process.exit(1);
}
const problems = [];
if (client.length === 0) problems.push(".next/static has no JavaScript");
for (const marker of [...SERVER_ONLY, ...IN_CLIENT]) {
  if (!readFileSync(join(root, marker.file), "utf-8").includes(marker.text)) {
    problems.push(`marker for ${marker.what} (${JSON.stringify(marker.text)}) is not in ${marker.file}: update this check`);
  }
}
for (const marker of SERVER_ONLY) {
  if (!server.some((f) => f.code.includes(marker.text))) {
    problems.push(`${marker.what} is not in the server build (.next/server): the routes do not use it, or the marker is stale`);
  }
  const leaked = client.filter((f) => f.code.includes(marker.text)).map((f) => relative(root, f.path));
  if (leaked.length) problems.push(`${marker.what} is in the client bundle: ${leaked.join(", ")}`);
}
for (const marker of IN_CLIENT) {
  if (!client.some((f) => f.code.includes(marker.text))) {
    problems.push(`${marker.what} is not in the client bundle: the scan is not looking at the page's code`);
  }
}
const bytes = client.reduce((n, f) => n + f.code.length, 0);
if (problems.length) {
  console.log(`client bundle check FAILED (${client.length} files, ${bytes} B):\n- ${problems.join("\n- ")}`);
  process.exit(1);
}
console.log(
  `client bundle check ok: ${client.length} files (${bytes} B) in .next/static hold endcall's browser code and no endcall/server or livekit-server-sdk code`,
);
