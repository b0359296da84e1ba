// Checks what `npm pack` would publish (only dist/, README.md, package.json, LICENSE), that the
// core entry imports neither React nor livekit-client, that the React entry begins with
// "use client" and that no browser entry carries endcall/server. Run after `npm run build`.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const [pack] = JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: root, encoding: "utf-8" }));
const files = pack.files.map((f) => f.path).sort();
const stray = files.filter((f) => !/^(dist\/[^/]+|README\.md|package\.json|LICENSE)$/.test(f));
let failed = stray.length > 0;
console.log(`npm pack: ${files.length} files, ${pack.size} B packed${stray.length ? `; unexpected: ${stray.join(", ")}` : ""}`);
for (const file of ["dist/index.js", "dist/index.cjs"]) {
  const code = readFileSync(resolve(root, file), "utf-8");
  const bad = ["react", "@livekit/components-react", "livekit-client"].filter(
    (dep) => code.includes(`from '${dep}'`) || code.includes(`from "${dep}"`) || code.includes(`require("${dep}")`),
  );
  if (bad.length) {
    failed = true;
    console.log(`${file} imports ${bad.join(", ")}: the core must not`);
  }
}
// Next.js: the React entry is a client module; no browser entry carries the server helpers
for (const file of ["dist/react.js", "dist/react.cjs"]) {
  const head = readFileSync(resolve(root, file), "utf-8").replace(/^(['"])use strict\1;?\s*/, "");
  if (!/^(['"])use client\1/.test(head)) {
    failed = true;
    console.log(`${file} does not begin with "use client"`);
  }
}
for (const file of ["dist/index.js", "dist/index.cjs", "dist/react.js", "dist/react.cjs"]) {
  if (/mintEndToken|endProxy/.test(readFileSync(resolve(root, file), "utf-8"))) {
    failed = true;
    console.log(`${file} contains endcall/server code: it must stay out of browser entries`);
  }
}
console.log(
  failed
    ? "package check FAILED"
    : 'package check ok: core imports no React and no livekit-client; react entry is "use client"; no server code in browser entries',
);
process.exit(failed ? 1 : 0);
