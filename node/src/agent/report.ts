/**
 * The `session.ended` report (protocol.md §6) from the end record and the session, serialized
 * once with the shared `encodeReport`:
 *
 * - `session`: `sessionReportToJSON(ctx.makeSessionReport(session))` — the Node SDK's own
 *   snake_case, Python-shaped dict (`job_id`, `room_id`, `room`, `events`, `options`,
 *   `chat_history`, `usage`, `timestamp`, `sdk_version`…), with its millisecond timestamps
 *   turned into Unix seconds like Python's (`secondsLikePython`). `makeSessionReport` throws while a
 *   RecorderIO still records; then the same document is built from the session directly
 *   (`voice.createSessionReport`), and failing that a reduced one (chat history, events, ids).
 * - `usage`: `{"models": [...]}`, one entry per model, like Python's `usage_summary`.
 * - Strings are made well-formed (a lone surrogate becomes U+FFFD), non-JSON values dropped.
 * - At most `MAX_REPORT_SIZE` bytes (8 MiB): a larger one is trimmed — events first, then the
 *   session's other sections, then chat items that are not messages, then messages, oldest
 *   first — and `end.trimmed` says what was removed.
 *
 * Port of Python's `endcall.agent.report` (without its sliced serialization: see the README).
 */
import { voice } from "@livekit/agents";
import { encodeReport, type AnnotationsSource, type JsonObject, type SessionEnded } from "endcall";
import { logger } from "./log.js";
import type { EndRecord } from "./machine.js";
import type { JobContextLike, SessionLike } from "./surface.js";

export const MAX_REPORT_SIZE = 8 * 1024 * 1024;

const encoder = new TextEncoder();
const LONE_SURROGATE = /\p{Cs}/gu;
/** Keys of the session section kept when trimming its other sections. */
const KEEP_KEYS = new Set(["chat_history", "events", "job_id", "room_id", "room"]);

/** `value` as plain JSON: well-formed strings (U+FFFD for lone surrogates), finite numbers,
 * no undefined/functions/symbols, bigint as string. Throws on cycles. */
export function jsonSafe(value: unknown): unknown {
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "number" && !Number.isFinite(v)) return null;
    if (v instanceof Map) return Object.fromEntries(v);
    if (v instanceof Set) return [...v];
    return v;
  });
  if (text === undefined) return null;
  return JSON.parse(text.replace(LONE_SURROGATE, "\ufffd"), (key, v: unknown) =>
    typeof v === "string" ? v.replace(LONE_SURROGATE, "\ufffd") : v,
  ) as unknown;
}

function wellFormedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(wellFormedKeys);
  if (value !== null && typeof value === "object") {
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(value)) out[k.replace(LONE_SURROGATE, "\ufffd")] = wellFormedKeys(v);
    return out;
  }
  return value;
}

function safeObject(value: unknown): JsonObject {
  const v = wellFormedKeys(jsonSafe(value));
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as JsonObject) : {};
}

interface SessionInternals {
  sessionOptions?: unknown;
  _recordedEvents?: unknown[];
  _enableRecording?: boolean;
  history?: { copy?: () => unknown; toJSON?: (o: { excludeTimestamp: boolean }) => unknown };
  _startedAt?: number;
  _usageCollector?: { flatten?: () => unknown[] };
}

/** Node's millisecond timestamps as Unix seconds, like Python's `SessionReport.to_dict()`
 * (`timestamp`, `audio_recording_started_at`, and every event's `created_at`; chat items'
 * `created_at` are already seconds). Values below 1e11 are taken to be seconds already. */
export function secondsLikePython(section: JsonObject): JsonObject {
  const sec = (v: unknown): unknown => (typeof v === "number" && v > 1e11 ? v / 1000 : v);
  const out: JsonObject = { ...section };
  for (const key of ["timestamp", "audio_recording_started_at", "started_at"]) {
    if (key in out) out[key] = sec(out[key]);
  }
  if (Array.isArray(out.events)) {
    out.events = out.events.map((e) =>
      e !== null && typeof e === "object" && "created_at" in e ? { ...(e as JsonObject), created_at: sec((e as JsonObject).created_at) } : e,
    );
  }
  return out;
}

/** The SDK's session report as a Python-shaped dict; `full` tries `ctx.makeSessionReport`. */
export function sessionSection(ctx: JobContextLike | null, session: SessionLike | null, full = true): JsonObject {
  if (full && ctx !== null && session !== null) {
    try {
      const report = ctx.makeSessionReport(session as never) as voice.SessionReport;
      return secondsLikePython(safeObject(voice.sessionReportToJSON(report)));
    } catch (e) {
      logger.info(`makeSessionReport failed (${String(e)}); building the session section from the session`);
    }
  }
  if (session !== null) {
    try {
      const s = session as unknown as SessionInternals;
      const report = voice.createSessionReport({
        jobId: ctx?.job.id ?? "",
        roomId: ctx?.job.room?.sid ?? "",
        room: ctx?.job.room?.name ?? "",
        options: s.sessionOptions as never,
        events: (s._recordedEvents ?? []) as never,
        chatHistory: (s.history?.copy ? s.history.copy() : s.history) as never,
        enableRecording: s._enableRecording ?? false,
        ...(s._startedAt !== undefined ? { startedAt: s._startedAt } : {}),
        modelUsage: (s._usageCollector?.flatten?.() ?? []) as never,
      });
      return secondsLikePython(safeObject(voice.sessionReportToJSON(report)));
    } catch (e) {
      logger.debug(`the session report could not be built (${String(e)}); using a reduced one`);
    }
  }
  return reducedSection(ctx, session);
}

function reducedSection(ctx: JobContextLike | null, session: SessionLike | null): JsonObject {
  let chat: unknown = { items: [] };
  let events: unknown[] = [];
  try {
    const s = session as unknown as SessionInternals | null;
    if (s?.history?.toJSON) chat = voice.toSnakeCaseDeep(s.history.toJSON({ excludeTimestamp: false }));
    events = (s?._recordedEvents ?? [])
      .filter((e) => (e as { type?: string }).type !== "metrics_collected")
      .map((e) => voice.toSnakeCaseDeep(e));
    events = (secondsLikePython({ events }).events as unknown[]) ?? events;
  } catch (e) {
    logger.warn(`could not serialize the chat history: ${String(e)}`);
  }
  const section: JsonObject = { chat_history: chat, events };
  if (ctx !== null) {
    try {
      section.job_id = ctx.job.id;
      section.room_id = ctx.job.room?.sid ?? null;
      section.room = ctx.job.room?.name ?? null;
    } catch {
      // no job
    }
  }
  section.timestamp = Date.now() / 1000;
  try {
    return safeObject(section);
  } catch {
    return { chat_history: { items: [] }, events: [], timestamp: Date.now() / 1000 };
  }
}

/** `{"models": [...]}` from the session section's `usage` (else the session's collector). */
export function usageSummary(section: JsonObject, session: SessionLike | null): JsonObject {
  const fromSection = section.usage;
  if (Array.isArray(fromSection)) return { models: fromSection };
  try {
    const usage = session?.usage?.modelUsage ?? [];
    return { models: safeObject({ m: voice.toSnakeCaseDeep(usage) }).m ?? [] };
  } catch {
    return { models: [] };
  }
}

export interface ReportInput {
  record: EndRecord;
  ctx: JobContextLike | null;
  session: SessionLike | null;
  roomName: string;
  /** Unix seconds. */
  startedAt: number;
  end: JsonObject;
  annotations: JsonObject;
  annotationsSource: AnnotationsSource;
  /** Pre-built session section (else built here). */
  section?: JsonObject;
}

function jobFields(ctx: JobContextLike | null): { job_id: string | null; agent_name: string | null; room_sid: string | null } {
  try {
    return {
      job_id: ctx?.job.id || null,
      agent_name: ctx?.job.agentName || null,
      room_sid: ctx?.job.room?.sid || null,
    };
  } catch {
    return { job_id: null, agent_name: null, room_sid: null };
  }
}

/** The final report document (`complete: true`). */
export function finalDocument(input: ReportInput): SessionEnded {
  const rec = input.record;
  if (rec.reason === null || rec.initiator === null) throw new Error("the end was not accepted yet");
  const section = input.section ?? sessionSection(input.ctx, input.session);
  const job = jobFields(input.ctx);
  const endedAt = rec.requestedAt ?? Date.now() / 1000;
  return {
    type: "session.ended",
    v: 1,
    end_id: rec.endId,
    ended_reason: rec.reason,
    initiator: { kind: rec.initiator.kind, identity: rec.initiator.identity },
    request_id: rec.requestId,
    meta: rec.meta === null ? null : safeObject(rec.meta),
    annotations: safeObject(input.annotations),
    annotations_source: input.annotationsSource,
    room: { name: input.roomName, sid: job.room_sid },
    job_id: job.job_id,
    agent_name: job.agent_name,
    started_at: input.startedAt,
    ended_at: Math.max(endedAt, input.startedAt),
    duration_s: 0, // recomputed by encodeReport
    complete: true,
    usage: usageSummary(section, input.session),
    end: safeObject(input.end),
    session: section,
  };
}

/** The crash draft document (`complete: false`, `agent-crashed`). */
export function draftDocument(input: Omit<ReportInput, "record" | "end"> & { endId: string }): SessionEnded {
  const now = Date.now() / 1000;
  const section = input.section ?? sessionSection(input.ctx, input.session, false);
  const job = jobFields(input.ctx);
  return {
    type: "session.ended",
    v: 1,
    end_id: input.endId,
    ended_reason: "agent-crashed",
    initiator: { kind: "system", identity: null },
    request_id: null,
    meta: null,
    annotations: safeObject(input.annotations),
    annotations_source: input.annotationsSource,
    room: { name: input.roomName, sid: job.room_sid },
    job_id: job.job_id,
    agent_name: job.agent_name,
    started_at: input.startedAt,
    ended_at: Math.max(now, input.startedAt),
    duration_s: 0,
    complete: false,
    usage: usageSummary(section, input.session),
    end: { channel: null, checkpoint_at: Math.round(now * 1000) / 1000 },
    session: section,
  };
}

function isMessage(item: unknown): boolean {
  return (item as { type?: unknown } | null)?.type === "message";
}

/** `doc` cut down to at most `limit` bytes serialized (see the module doc); `doc` itself when
 * it fits. */
export function trimReport(doc: SessionEnded, limit = MAX_REPORT_SIZE): SessionEnded {
  const size = (d: SessionEnded): number => encoder.encode(encodeReport(d)).length;
  const original = size(doc);
  if (original <= limit) return doc;
  const trimmed: JsonObject = { events: 0, sections: [] as string[], items: 0, messages: 0, original_bytes: original };
  const session: JsonObject = { ...doc.session };
  const out: SessionEnded = { ...doc, session, end: { ...doc.end, trimmed } };
  const events = Array.isArray(session.events) ? session.events : [];
  if (events.length) {
    trimmed.events = events.length;
    session.events = [];
  }
  if (size(out) > limit) {
    for (const key of Object.keys(session)) {
      if (!KEEP_KEYS.has(key)) {
        delete session[key];
        (trimmed.sections as string[]).push(key);
      }
    }
  }
  const history = (session.chat_history ?? {}) as JsonObject;
  let items = Array.isArray(history.items) ? [...(history.items as unknown[])] : [];
  session.chat_history = { ...history, items };
  for (const messages of [false, true]) {
    while (size(out) > limit) {
      const i = items.findIndex((it) => isMessage(it) === messages);
      if (i < 0) break;
      items = items.slice(0, i).concat(items.slice(i + 1));
      session.chat_history = { ...history, items };
      if (messages) trimmed.messages = (trimmed.messages as number) + 1;
      else trimmed.items = (trimmed.items as number) + 1;
    }
  }
  logger.warn(`report ${doc.end_id} was ${original} bytes; trimmed to fit ${limit} (${JSON.stringify(trimmed)})`);
  return out;
}

/** The bytes sent, stored and signed: `encodeReport` of the (trimmed) document. */
export function encodeDocument(doc: SessionEnded, limit = MAX_REPORT_SIZE): Uint8Array {
  // whatever a caller or the SDK put in: well-formed strings, plain JSON
  const safe = { ...doc, session: safeObject(doc.session), end: safeObject(doc.end), usage: safeObject(doc.usage) };
  return encoder.encode(encodeReport(trimReport(safe, limit)));
}

/** A report without the session section, when the full one cannot be built. */
export function minimalDocument(input: ReportInput, error: unknown): SessionEnded {
  return finalDocument({
    ...input,
    section: {},
    end: { ...input.end, report_error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) },
  });
}
