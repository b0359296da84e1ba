// Checks what `npm pack` would publish (only dist/, README.md, package.json, LICENSE) and that
// the core entry imports neither React nor livekit-client. Run after `npm run build`.
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
console.log(failed ? "package check FAILED" : "package check ok: core imports no React and no livekit-client");
process.exit(failed ? 1 : 0);
