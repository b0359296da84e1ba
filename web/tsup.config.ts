import { defineConfig, type Options } from "tsup";

/**
 * Four entries; `endcall/react` and `endcall/testing` import the core as the package `endcall`
 * (external), so the core is never duplicated and its in-flight registry is shared.
 * `endcall/server` (end tokens, the proxy route) is for backends: no browser entry imports it.
 *
 * `treeshake` stays off: esbuild already tree-shakes the bundle, and tsup's extra Rollup pass
 * drops module directives, so `dist/react.{js,cjs}` would lose their `"use client"` (which lets a
 * Next.js Server Component import the hook's module). `test/build.test.ts` checks it is there.
 */
export const options = {
  entry: { index: "src/index.ts", react: "src/react.ts", testing: "src/testing.ts", server: "src/server.ts" },
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: false,
  clean: true,
  treeshake: false,
  target: "es2022",
  platform: "browser",
  external: ["endcall", "react", "livekit-client", "@livekit/components-react"],
} satisfies Options;

export default defineConfig(options);
