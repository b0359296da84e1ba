/**
 * The Node agent of `bench/ack_latency.py --agent node`: joins the bench's room on a real
 * livekit-server as the agent (@livekit/rtc-node), starts a real `voice.AgentSession` (a
 * `FakeLLM`, no STT/TTS/VAD, RoomIO on the room) and endcall-agent's `EndCall` with a
 * `MemorySink` (the report is kept in memory: its delivery is not measured), and registers
 * `echo` (returns its payload) on the same local participant. Prints `ready` on a line of its
 * own once the customer is in the room and linked; then serves until stdin closes or SIGTERM,
 * finishes the end (`EndCall.onSessionEnd`), prints `done <json>` (the end's state and reason,
 * the reports the sink got, and each RPC handler's own time in-process) and exits.
 *
 * Run by bench/ack_latency.py, which passes the room through the environment:
 * `ENDCALL_BENCH_URL`, `ENDCALL_BENCH_TOKEN` (an agent token for the room),
 * `ENDCALL_BENCH_CUSTOMER` (the customer's identity). Uses node/'s build (`node/dist`, so
 * `cd node && npm run build` first) and node/'s dependencies: a bare specifier is resolved
 * from node/package.json, which needs `node --experimental-import-meta-resolve` on Node 20.
 */
const NODE_PKG = new URL("../node/package.json", import.meta.url).href;

function fromNode(specifier) {
  try {
    return import.meta.resolve(specifier, NODE_PKG);
  } catch (e) {
    throw new Error(
      `cannot resolve ${specifier} from node/ (run with node --experimental-import-meta-resolve, ` +
        `after cd node && npm ci): ${e}`,
    );
  }
}

const { JobContext, initializeLogger, runWithJobContextAsync, voice } = await import(fromNode("@livekit/agents"));
const { Room, RoomEvent } = await import(fromNode("@livekit/rtc-node"));
const { EndCall } = await import(new URL("../node/dist/index.js", import.meta.url).href);
const { MemorySink } = await import(new URL("../node/dist/testing/index.js", import.meta.url).href);

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (bench/node_ack_agent.mjs is run by bench/ack_latency.py)`);
  return v;
}

async function until(pred, what, ms = 30_000) {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function stats(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.round((p / 100) * (sorted.length - 1)))];
  const r = (x) => Math.round(x * 1000) / 1000;
  return { calls: sorted.length, p50_ms: r(at(50)), p99_ms: r(at(99)) };
}

async function main() {
  const url = env("ENDCALL_BENCH_URL");
  const token = env("ENDCALL_BENCH_TOKEN");
  const customer = env("ENDCALL_BENCH_CUSTOMER");
  initializeLogger({ pretty: false, level: process.env.ENDCALL_BENCH_LOG_LEVEL ?? "warn" });

  const room = new Room();
  await room.connect(url, token, { autoSubscribe: true, dynacast: false });
  // time every RPC handler in-process (the kit's and echo alike): what of the round trip is
  // the handler itself
  const handlerMs = {};
  const register = room.localParticipant.registerRpcMethod.bind(room.localParticipant);
  room.localParticipant.registerRpcMethod = (method, handler) =>
    register(method, async (data) => {
      const t0 = performance.now();
      try {
        return await handler(data);
      } finally {
        (handlerMs[method] ??= []).push(performance.now() - t0);
      }
    });
  const identity = room.localParticipant.identity;
  const roomName = room.name;
  const shutdowns = [];
  // a JobContext as the job runner makes one (fake-job mode: no worker behind it)
  const ctx = new JobContext(
    {},
    {
      acceptArguments: { name: identity, identity, metadata: "" },
      job: { id: "AJ_bench_ack", agentName: "bench-ack", room: { name: roomName, sid: "RM_bench_ack" }, attributes: {} },
      url,
      token,
      workerId: "bench",
      fakeJob: true,
    },
    room,
    () => undefined,
    (reason) => shutdowns.push(reason),
    {},
  );

  await runWithJobContextAsync(ctx, async () => {
    const session = new voice.AgentSession({ llm: new voice.testing.FakeLLM([]), vad: null });
    const sink = new MemorySink();
    const end = new EndCall(ctx, session, { sink, deleteRoom: false });
    await session.start({ agent: new voice.Agent({ instructions: "bench", tools: [end.tool] }), room, record: false });
    await end.start();
    room.localParticipant.registerRpcMethod("echo", async (data) => data.payload);

    await until(() => room.remoteParticipants.has(customer), `${customer} to join`);
    // RoomIO links the session to the customer; EndCall publishes it as endcall.customer
    await until(() => room.localParticipant.attributes["endcall.customer"] === customer, "the link to the customer");
    process.stdout.write("ready\n");

    await new Promise((resolve) => {
      process.stdin.on("end", resolve);
      process.stdin.on("close", resolve);
      process.on("SIGTERM", resolve);
      process.on("SIGINT", resolve);
      room.on(RoomEvent.Disconnected, resolve);
      process.stdin.resume();
    });

    await EndCall.onSessionEnd(ctx);
    await session.close().catch(() => undefined);
    const handlers = Object.fromEntries(Object.entries(handlerMs).map(([m, v]) => [m, stats(v)]));
    const done = { state: end.state, reason: end.record.reason ?? null, reports: sink.stored.length, shutdowns, handlers };
    process.stdout.write(`done ${JSON.stringify(done)}\n`);
  });
  await room.disconnect();
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`node_ack_agent: ${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
