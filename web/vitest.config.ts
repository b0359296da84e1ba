import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const src = (file: string): string => fileURLToPath(new URL(`./src/${file}`, import.meta.url));

export default defineConfig({
  resolve: {
    // the entries import the core by its package name, as the built files do
    alias: [
      { find: /^endcall\/testing$/, replacement: src("testing.ts") },
      { find: /^endcall$/, replacement: src("index.ts") },
    ],
  },
  test: {
    include: ["test/**/*.test.{ts,tsx}"],
    environment: "node",
    testTimeout: 20_000,
  },
});
