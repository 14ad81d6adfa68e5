// herd's dashboard: a TypeScript single-page app (Preact), built into dist/, which herd
// embeds and serves at `/`. The build is deterministic: the test command rebuilds dist/ from
// these sources and fails if it differs from what is committed.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    target: "es2022",
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 600,
    reportCompressedSize: false,
  },
});
