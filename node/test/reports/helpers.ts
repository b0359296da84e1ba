/** Test helpers for the reports wing: temp dirs, running Python's endcall, a local receiver. */

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const PYTHON = "/work/main/.venv/bin/python";

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "endcall-node-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Run a Python snippet with endcall importable; its stdout. */
export function py(code: string, env: Record<string, string> = {}): string {
  return execFileSync(PYTHON, ["-c", code], {
    encoding: "utf-8",
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
}

export const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
export const SECRET2 = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

export interface Received {
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  at: number;
}

/** A receiver answering `answer(request number, received)` (status, headers; or "hang"). */
export async function receiver(
  answer: (n: number, r: Received) => { status: number; headers?: Record<string, string> } | "hang" | "huge",
): Promise<{ url: string; got: Received[]; close: () => Promise<void> }> {
  const got: Received[] = [];
  const sockets = new Set<import("node:net").Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const r = { headers: req.headers, body: Buffer.concat(chunks), at: Date.now() };
      got.push(r);
      const a = answer(got.length, r);
      if (a === "hang") return; // never answers
      if (a === "huge") {
        res.writeHead(200, { "content-length": String(1024 ** 3) });
        const chunk = Buffer.alloc(1 << 20, 120);
        const pump = () => {
          while (res.write(chunk)) {
            /* fill the socket until the client stops reading */
          }
        };
        res.on("drain", pump);
        pump();
        return;
      }
      res.writeHead(a.status, a.headers ?? {});
      res.end("ok");
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    got,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
