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
 * Per-job configuration, as in the Python example (`endcall.job_config`):
 * `jobConfig(ctx.job.metadata, { room })` reads the job's dispatch metadata into the report's
 * `Webhook` and annotations — a per-job `webhook_url` and `webhook_schedule` only from a
 * dispatch claim signed with `ENDCALL_DISPATCH_KEY` (Python's `endcall.dispatch_metadata`) or,
 * for the URL, allowed by `ENDCALL_WEBHOOK_URL_ALLOW`; a secret only named
 * (`ENDCALL_WEBHOOK_SECRETS`). What is refused is logged, and the report goes to
 * `ENDCALL_WEBHOOK_URL`. `bench/report_loss.py --agent kit-node` signs one such claim per job.
 *
 * The worker registers as `AGENT_NAME` (default `interview-agent`) for explicit dispatch. Only
 * scripted models are wired here (no provider plugin is a dependency of the example): the
 * candidate's typed answers arrive as `demo.answer` data packets, and the job's dispatch
 * metadata carries the scenario's settings (`{"scenario": {"agent_ends": true, "max_duration":
 * 12, ...}}`), as in the Python example's `run_scripted`. The demo (`endcall demo --agent
 * node`) and tests/e2e run this file. The worker suits a small test machine: health server on
 * 127.0.0.1 on a free port, never reported full, one idle process.
 *
 * @livekit/agents forks a job process that imports this file again for its default export, so
 * the worker is started only when this file is the program (`node dist/interview_agent.js`).
 */
import { type JobContext, ServerOptions, cli, defineAgent, voice } from '@livekit/agents';
import { EndCall, type EndCallOptions, ReportPipeline, type Webhook, jobConfig } from 'endcall-agent';
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

/** What `jobConfig` decided for one job: where its report goes, and its annotations (its
 * `reportMeta` as it is: each field keeps its source, signed or unsigned). */
export interface ReportOptions {
  webhook: Webhook;
  reportMeta?: EndCallOptions['reportMeta'];
}

/** Start the interview on `ctx.room`; returns the session and its `EndCall`. The report goes
 * to `report.webhook` (the job's `jobConfig`: by default `ENDCALL_WEBHOOK_URL`, signed with
 * `ENDCALL_WEBHOOK_SECRET`), through the outbox at `ENDCALL_OUTBOX` (SQLite path or
 * `postgresql://` URL: the same schema as the Python kit's, so `endcall outbox deliver` /
 * `endcall serve` relay what this process could not deliver). */
export async function runInterview(
  ctx: JobContext,
  models: Models,
  settings: ScriptedSettings,
  report: ReportOptions,
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
  const sink = new ReportPipeline(report.webhook);
  const end = new EndCall(ctx, session, {
    sink,
    reportMeta: report.reportMeta ?? null,
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

/** The job: its report's destination and annotations from the job's metadata (`jobConfig`:
 * refusals are logged and the report goes to `ENDCALL_WEBHOOK_URL`), then the interview with
 * the scenario's settings from the same metadata. */
async function entry(ctx: JobContext): Promise<void> {
  const config = await jobConfig(ctx.job.metadata, { room: ctx.job.room?.name || null });
  const settings = settingsFromMetadata(ctx.job.metadata);
  const models = scriptedModels({ agentEnds: settings.agentEnds });
  listenForTypedAnswers(ctx.room, models.stt);
  await runInterview(ctx, models, settings, {
    webhook: config.webhook,
    reportMeta: config.reportMeta,
  });
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
      // the name to dispatch (a second agent on the same LiveKit, e.g. the report-loss bench's
      // kit-node beside the Python kit, registers another)
      agentName: process.env.AGENT_NAME || 'interview-agent',
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
