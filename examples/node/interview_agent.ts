/**
 * The interview agent of examples/interview_agent.py on @livekit/agents (Node): a greeting,
 * three questions, the end tool with a goodbye, a 30-minute limit, and the signed session
 * report sent to the backend's webhook by endcall-agent's `EndCall`.
 *
 * Build and run it against a LiveKit server (`LIVEKIT_URL`, `LIVEKIT_API_KEY`,
 * `LIVEKIT_API_SECRET`):
 *
 *     cd examples/node && npm ci && npm run build
 *     ENDCALL_WEBHOOK_URL=https://backend.example/session/end \
 *     ENDCALL_WEBHOOK_SECRET=whsec_... ENDCALL_OUTBOX=/var/lib/endcall/outbox.sqlite \
 *     node dist/interview_agent.js start
 *
 * The worker registers as `interview-agent` for explicit dispatch. Only scripted models are
 * wired here (no provider plugin is a dependency of the example): the candidate's typed answers
 * arrive as `demo.answer` data packets, and the job's dispatch metadata carries the scenario's
 * settings (`{"scenario": {"agent_ends": true, "max_duration": 12, ...}}`), as in the Python
 * example's `run_scripted`. The demo (`endcall demo --agent node`) and tests/e2e run this file.
 * The worker suits a small test machine: health server on 127.0.0.1 on a free port, never
 * reported full, one idle process.
 *
 * @livekit/agents forks a job process that imports this file again for its default export, so
 * the worker is started only when this file is the program (`node dist/interview_agent.js`).
 */
import { type JobContext, ServerOptions, cli, defineAgent, voice } from '@livekit/agents';
import { EndCall, ReportPipeline, webhookFromEnv } from 'endcall-agent';
import { realpathSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  GOODBYE,
  END_TOOL,
  InterviewAgent,
  type Models,
  type ScriptedSettings,
  listenForTypedAnswers,
  scriptedModels,
  settingsFromMetadata,
} from './interview.js';

/** Start the interview on `ctx.room`; returns the session and its `EndCall`. The report goes
 * to `ENDCALL_WEBHOOK_URL`, signed with `ENDCALL_WEBHOOK_SECRET`, through the outbox at
 * `ENDCALL_OUTBOX` (SQLite path or `postgresql://` URL: the same schema as the Python kit's,
 * so `endcall outbox deliver` / `endcall serve` relay what this process could not deliver). */
export async function runInterview(
  ctx: JobContext,
  models: Models,
  settings: ScriptedSettings,
): Promise<{ session: voice.AgentSession; end: EndCall }> {
  await ctx.connect();
  // the session's own "away" state (nobody spoke for this long); EndCall counts the
  // candidate's silence by itself. Kept below silenceTimeout, as in the Python example.
  const away = settings.silenceTimeout === null ? 15 : Math.min(15, settings.silenceTimeout / 2);
  const session = new voice.AgentSession({
    stt: models.stt,
    llm: models.llm,
    tts: models.tts,
    vad: null,
    userAwayTimeout: away,
    turnHandling: {
      turnDetection: 'stt',
      endpointing: { minDelay: 50, maxDelay: 3000 },
      preemptiveGeneration: { enabled: false },
    },
  });
  // the outbox: ENDCALL_OUTBOX (else the user data dir)
  const sink = new ReportPipeline(webhookFromEnv());
  const end = new EndCall(ctx, session, {
    sink,
    maxDuration: settings.maxDuration,
    silenceTimeout: settings.silenceTimeout,
    goodbye: GOODBYE,
    toolName: END_TOOL,
    deleteRoom: true,
  });
  await session.start({ room: ctx.room, agent: new InterviewAgent([end.tool]) });
  await end.start();
  return { session, end };
}

async function entry(ctx: JobContext): Promise<void> {
  const settings = settingsFromMetadata(ctx.job.metadata);
  const models = scriptedModels({ agentEnds: settings.agentEnds });
  listenForTypedAnswers(ctx.room, models.stt);
  await runInterview(ctx, models, settings);
  if (settings.rpcDisabled) ctx.room.localParticipant!.unregisterRpcMethod('end_interview');
  // lets a test harness find this job's process (to stop or kill it)
  await ctx.room.localParticipant!.setAttributes({ 'demo.pid': String(process.pid) });
}

/** `EndCall.onSessionEnd` finishes the report's in-process delivery (the webhook's
 * `inProcessWindow`); the job gives it `sessionEndTimeout` (5 min by default). */
export default defineAgent({ entry, onSessionEnd: EndCall.onSessionEnd });

function isMain(): boolean {
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/** A free TCP port on 127.0.0.1 for the worker's health server (`start` mode would bind 8081,
 * which two workers on one machine, e.g. the tests', cannot share). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

if (isMain()) {
  cli.runApp(
    new ServerOptions({
      agent: fileURLToPath(import.meta.url),
      agentName: 'interview-agent',
      // a small test machine: health server on loopback, never "full", one idle process
      host: '127.0.0.1',
      port: await freePort(),
      loadFunc: async () => 0,
      loadThreshold: Infinity,
      numIdleProcesses: 1,
      // a job process's start-up (10 s by default) runs late on two busy cores
      initializeProcessTimeout: 30_000,
    }),
  );
}
