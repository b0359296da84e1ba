// Vite config of the example page. The `endcall` package is taken from ../../web/src (no build
// of the package needed); React, LiveKit and components-react resolve from this folder only.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const web = fileURLToPath(new URL("../../web/src/", import.meta.url));
const testingEntry = existsSync(`${web}testing.ts`)
  ? `${web}testing.ts`
  : `${web}testing/loopbackRoom.ts`;

export default defineConfig({
  base: "./",
  resolve: {
    alias: [
      { find: /^endcall\/react$/, replacement: `${web}react.ts` },
      { find: /^endcall\/testing$/, replacement: testingEntry },
      { find: /^endcall$/, replacement: `${web}index.ts` },
    ],
    dedupe: ["react", "react-dom", "@livekit/components-react", "livekit-client"],
  },
  esbuild: { jsx: "automatic" },
  build: { outDir: "dist", sourcemap: true, chunkSizeWarningLimit: 2000 },
  server: { host: "127.0.0.1" },
});
