import { defineConfig } from "tsup";

// Three entries; `endcall/react` and `endcall/testing` import the core as the package `endcall`
// (external), so the core is never duplicated and its in-flight registry is shared.
export default defineConfig({
  entry: { index: "src/index.ts", react: "src/react.ts", testing: "src/testing.ts" },
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: false,
  clean: true,
  treeshake: true,
  target: "es2022",
  platform: "browser",
  external: ["endcall", "react", "livekit-client", "@livekit/components-react"],
});
