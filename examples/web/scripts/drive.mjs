// A tiny remote control for Debian's Chromium through playwright-core (never a downloaded
// browser). Used by `endcall demo` and tests/e2e: reads one JSON command per line on stdin,
// answers one JSON line per command on stdout ({"id", "ok", "value"} or {"id", "ok": false,
// "error"}). Page console messages and errors go to stderr, prefixed with the page id.
//
//   {"id":1,"cmd":"open","page":"p1","url":"http://127.0.0.1:8080/?room=r1"}
//   {"id":2,"cmd":"click","page":"p1","testid":"end-button"}
//   {"id":3,"cmd":"fill","page":"p1","testid":"answer-input","text":"…"}
//   {"id":4,"cmd":"wait_text","page":"p1","testid":"ack","pattern":"Acknowledged","timeout_ms":10000}
//   {"id":5,"cmd":"text","page":"p1","testid":"endcall-state"}
//   {"id":6,"cmd":"screenshot","page":"p1","path":"test-output/x.png"}
//   {"id":7,"cmd":"close","page":"p1"}          (a tab close: pagehide runs)
//   {"id":8,"cmd":"quit"}
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
// FAKE_AUDIO: a WAV file the fake microphone plays (real-server runs publish it over WebRTC)
const fakeAudio = process.env.FAKE_AUDIO;
const browser = await chromium.launch({
  executablePath,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    ...(fakeAudio ? [`--use-file-for-fake-audio-capture=${fakeAudio}%noloop`] : []),
  ],
});
const context = await browser.newContext({ viewport: { width: 900, height: 760 } });
const pages = new Map();

const byTestId = (page, testid) => page.locator(`[data-testid="${testid}"]`);

function pageOf(cmd) {
  const page = pages.get(cmd.page);
  if (!page) throw new Error(`no page ${cmd.page}`);
  return page;
}

const commands = {
  async open(cmd) {
    const page = await context.newPage();
    page.on("console", (m) => process.stderr.write(`[${cmd.page}] ${m.type()}: ${m.text()}\n`));
    page.on("pageerror", (e) => process.stderr.write(`[${cmd.page}] pageerror: ${e.message}\n`));
    pages.set(cmd.page, page);
    await page.goto(cmd.url, { waitUntil: "load", timeout: cmd.timeout_ms ?? 15000 });
    return null;
  },
  async click(cmd) {
    await byTestId(pageOf(cmd), cmd.testid).click({ timeout: cmd.timeout_ms ?? 10000 });
    return Date.now();
  },
  async fill(cmd) {
    await byTestId(pageOf(cmd), cmd.testid).fill(cmd.text, { timeout: cmd.timeout_ms ?? 10000 });
    return null;
  },
  async press(cmd) {
    await byTestId(pageOf(cmd), cmd.testid).press(cmd.key, { timeout: cmd.timeout_ms ?? 10000 });
    return null;
  },
  async wait_text(cmd) {
    const re = new RegExp(cmd.pattern);
    const locator = byTestId(pageOf(cmd), cmd.testid);
    const deadline = Date.now() + (cmd.timeout_ms ?? 10000);
    let last = null;
    while (Date.now() < deadline) {
      if ((await locator.count()) > 0) {
        last = await locator.first().innerText();
        if (re.test(last)) return last;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`[data-testid=${cmd.testid}] did not match /${cmd.pattern}/ (last: ${JSON.stringify(last)})`);
  },
  async text(cmd) {
    const locator = byTestId(pageOf(cmd), cmd.testid);
    return (await locator.count()) > 0 ? await locator.first().innerText() : null;
  },
  async eval(cmd) {
    return await pageOf(cmd).evaluate(cmd.expression);
  },
  async screenshot(cmd) {
    mkdirSync(dirname(cmd.path), { recursive: true });
    await pageOf(cmd).screenshot({ path: cmd.path, fullPage: true });
    return cmd.path;
  },
  async close(cmd) {
    const page = pageOf(cmd);
    pages.delete(cmd.page);
    await page.close({ runBeforeUnload: cmd.runBeforeUnload ?? false });
    return null;
  },
  async quit() {
    await browser.close();
    return null;
  },
};

const out = (msg) => process.stdout.write(JSON.stringify(msg) + "\n");
out({ id: 0, ok: true, value: { ready: true, version: browser.version() } });

async function handle(cmd) {
  try {
    const fn = commands[cmd.cmd];
    if (!fn) throw new Error(`unknown command ${cmd.cmd}`);
    out({ id: cmd.id, ok: true, value: (await fn(cmd)) ?? null });
  } catch (e) {
    out({ id: cmd.id, ok: false, error: String(e && e.message ? e.message : e) });
  }
}

// commands run concurrently (one page may be waited on while another is clicked)
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    out({ id: null, ok: false, error: "not JSON" });
    continue;
  }
  if (cmd.cmd === "quit") {
    await handle(cmd);
    break;
  }
  void handle(cmd);
}
await browser.close().catch(() => {});
process.exit(0);
