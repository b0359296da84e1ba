/**
 * The endcall wire protocol, version 1: pure codecs for every message (no I/O).
 *
 * `protocol.md` is the contract; this module and `endcall.protocol` (py/endcall/protocol/)
 * implement it and both pass the shared vectors in `tests/vectors/`. Decoded values use the
 * wire's field names, exactly the `value` objects of the vectors. Parsing never throws anything
 * but `ProtocolError`.
 */

export const VERSION = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [1];
/** Largest serialized message: LiveKit's RPC payload limit (MAX_V1_PAYLOAD_BYTES). */
export const MAX_MESSAGE_BYTES = 15_360;
export const MAX_META_BYTES = 4_096;
/** Deepest nesting of arrays/objects in a message; the message object itself is depth 1. */
export const MAX_DEPTH = 32;
export const MAX_ID_LENGTH = 64;
export const MAX_IDENTITY_BYTES = 256;
export const MAX_MESSAGE_TEXT_LENGTH = 1_024;
export const MAX_REPORT_BYTES = 16_777_216; // 16 MiB

/** RPC method name and data topic; the data ack topic is `ackTopic(DEFAULT_METHOD)`. */
export const DEFAULT_METHOD = "end_interview";
export const DEFAULT_REASON = "customer-ended-call";
export const CLIENT_REASON_PREFIX = "customer-";

export const ATTR_STATE = "endcall.state";
export const ATTR_REASON = "endcall.reason";
export const ATTR_END_ID = "endcall.end_id";
export const ATTR_REQUEST_ID = "endcall.request_id";
export const ATTR_REPORT = "endcall.report";
export const ATTR_REQUEST = "endcall.request";
/** The end.error JSON of the last server-channel request the agent refused. */
export const ATTR_ERROR = "endcall.error";
/** The identity of the participant the agent serves. */
export const ATTR_CUSTOMER = "endcall.customer";

/** Canonical end reasons (Vapi-compatible strings where Vapi has one). */
export const END_REASONS = [
  "customer-ended-call",
  "customer-disconnected",
  "assistant-ended-call",
  "exceeded-max-duration",
  "silence-timed-out",
  "server-ended-call",
  "room-deleted",
  "worker-shutdown",
  "agent-error",
  "agent-crashed",
] as const;
export type EndReason = (typeof END_REASONS)[number];

export const ERROR_CODES = ["bad_request", "forbidden", "unsupported_version", "internal"] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];
/** RpcError code used when an end.error travels over LiveKit RPC (LiveKit reserves 1001-1999). */
export const ERROR_RPC_CODES: Readonly<Record<ErrorCode, number>> = {
  bad_request: 4400,
  forbidden: 4403,
  unsupported_version: 4426,
  internal: 4500,
};

export const ACK_STATUSES = ["accepted", "already_ending", "already_ended"] as const;
export type AckStatus = (typeof ACK_STATUSES)[number];
export const INITIATOR_KINDS = ["customer", "agent", "server", "system"] as const;
export type InitiatorKind = (typeof INITIATOR_KINDS)[number];
/** Where a report's `annotations` came from (protocol.md §6): the agent's code, a dispatch claim
 * the backend signed, or job metadata nobody signed. File a report by its annotations only when
 * this is not `"unsigned"`. */
export const ANNOTATIONS_SOURCES = ["code", "signed", "unsigned"] as const;
export type AnnotationsSource = (typeof ANNOTATIONS_SOURCES)[number];
export type Origin = "client" | "server";

export type JsonObject = { [key: string]: unknown };

/** A decoded end.request: every field present, defaults filled, absent optionals `null`. */
export interface EndRequest {
  type: "end.request";
  v: number;
  id: string;
  reason: string;
  initiator: string | null;
  sent_at: number | null;
  meta: JsonObject | null;
}

/** What `encodeRequest` takes: an `id` plus any optional field. */
export interface EndRequestInit {
  id: string;
  v?: number;
  reason?: string | null;
  initiator?: string | null;
  sent_at?: number | null;
  meta?: JsonObject | null;
}

export interface EndAck {
  type: "end.ack";
  v: number;
  id: string;
  status: AckStatus;
  end_id: string;
  reason: string;
  drain_ms: number;
}

export interface EndError {
  type: "end.error";
  v: number;
  id: string | null;
  code: string;
  message: string;
}

/** The `session.ended` report document (the webhook body). */
export interface SessionEnded {
  type: "session.ended";
  v: number;
  end_id: string;
  ended_reason: string;
  initiator: { kind: InitiatorKind; identity: string | null };
  request_id: string | null;
  meta: JsonObject | null;
  /** The job's own fields (`EndCall(report_meta=…)`, `end.annotate(…)`); `{}` when none. */
  annotations: JsonObject;
  /** Where `annotations` came from; missing or null decodes as `"unsigned"`. */
  annotations_source: AnnotationsSource;
  room: { name: string; sid: string | null };
  job_id: string | null;
  agent_name: string | null;
  started_at: number;
  ended_at: number;
  duration_s: number;
  complete: boolean;
  usage: JsonObject;
  end: JsonObject;
  session: JsonObject;
}

/** A message that does not follow the protocol. `code` is one of `ERROR_CODES`. */
export class ProtocolError extends Error {
  readonly code: string;
  /** The offending request's id when it could be read, so the answer can name it. */
  readonly requestId: string | null;

  constructor(code: string, message: string, requestId: string | null = null) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    this.requestId = requestId;
  }
}

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const REASON_RE = /^[a-z0-9][a-z0-9.-]{0,63}$/;
const CODE_RE = /^[a-z][a-z0-9_]{0,31}$/;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\x00-\x1f\x7f]/;
/** In `u` mode a surrogate pair is one code point, so this only matches lone surrogates. */
const LONE_SURROGATE_RE = /\p{Cs}/u;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const NOT_UTF8 = "message is not valid UTF-8";

type Id = string | null;

function bad(message: string, requestId: Id = null): never {
  throw new ProtocolError("bad_request", message, requestId);
}

/** UTF-8 length in bytes of a well-formed string. */
export function byteLength(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** Compact JSON: the form every size limit is measured in. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value);
}

export function ackTopic(method: string = DEFAULT_METHOD): string {
  return method + ".ack";
}

export function isValidId(value: unknown): value is string {
  return typeof value == "string" && ID_RE.test(value);
}

export function isValidReason(value: unknown): value is string {
  return typeof value == "string" && REASON_RE.test(value);
}

/** The RpcError code for a protocol error code (unknown codes map to `internal`). */
export function rpcCode(code: string): number {
  return ERROR_RPC_CODES[code as ErrorCode] ?? ERROR_RPC_CODES.internal;
}

const isObject = (value: unknown): value is JsonObject =>
  typeof value == "object" && value !== null && !Array.isArray(value);

/** Reject what JSON.parse accepts but the protocol does not: deep nesting, lone surrogate
 * escapes, numbers that overflowed to Infinity. Iterative, so depth costs no stack. */
function checkTree(root: unknown): void {
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length) {
    const [item, depth] = stack.pop()!;
    if (typeof item == "string") {
      if (LONE_SURROGATE_RE.test(item)) bad(NOT_UTF8); // a lone surrogate escape
    } else if (typeof item == "number") {
      if (!Number.isFinite(item)) bad("message contains a number that is not finite");
    } else if (item && typeof item == "object") {
      if (depth > MAX_DEPTH) bad(`message nests deeper than ${MAX_DEPTH} levels`);
      for (const [key, child] of Object.entries(item)) stack.push([key, depth], [child, depth + 1]);
    }
  }
}

function load(raw: unknown, limit: number = MAX_MESSAGE_BYTES): JsonObject {
  let text: string;
  if (typeof raw == "string") {
    if (LONE_SURROGATE_RE.test(raw)) bad(NOT_UTF8);
    checkSize(byteLength(raw), limit);
    text = raw;
  } else if (ArrayBuffer.isView(raw)) {
    checkSize(raw.byteLength, limit);
    try {
      // ignoreBOM keeps a byte-order mark in the text, where JSON.parse rejects it.
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(raw);
    } catch {
      bad(NOT_UTF8);
    }
  } else {
    bad("message must be a string or bytes");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    bad("message is not valid JSON");
  }
  if (!isObject(value)) bad("message must be a JSON object");
  checkTree(value);
  return value;
}

function checkSize(size: number, limit: number): void {
  if (size > limit) bad(`message is ${size} bytes; the limit is ${limit}`);
}

function integer(value: unknown, name: string, rid: Id, minimum = 0): number {
  if (typeof value != "number" || !Number.isInteger(value) || value < minimum || value > MAX_SAFE) {
    bad(`${name} must be an integer from ${minimum} to ${MAX_SAFE}`, rid);
  }
  return value + 0; // -0 → 0
}

function version(obj: JsonObject, rid: Id): number {
  const v = integer(obj.v, "v", rid, 1);
  // SUPPORTED_VERSIONS is [1]: every version above VERSION is unsupported
  if (v > VERSION) {
    throw new ProtocolError("unsupported_version", `version ${v} is not supported; supported versions: ${VERSION}`, rid);
  }
  return v;
}

function checkType(obj: JsonObject, expected: string, rid: Id): void {
  if (obj.type !== expected) bad(`type must be "${expected}"`, rid);
}

function id(value: unknown, name: string, rid: Id): string {
  if (!isValidId(value)) bad(`${name} must be 1-${MAX_ID_LENGTH} characters of [A-Za-z0-9_-]`, rid);
  return value;
}

function reasonOf(value: unknown, rid: Id, name = "reason"): string {
  if (!isValidReason(value)) bad(`${name} must match ^[a-z0-9][a-z0-9.-]{0,63}$`, rid);
  return value;
}

function identity(value: unknown, name: string, rid: Id): string {
  if (typeof value != "string" || !value) bad(`${name} must be a non-empty string`, rid);
  if (byteLength(value) > MAX_IDENTITY_BYTES) bad(`${name} must be at most ${MAX_IDENTITY_BYTES} bytes`, rid);
  if (CONTROL_RE.test(value)) bad(`${name} must not contain control characters`, rid);
  return value;
}

function object(value: unknown, name: string, rid: Id = null): JsonObject {
  if (!isObject(value)) bad(`${name} must be a JSON object`, rid);
  return value;
}

const optional = <T>(value: unknown, check: (v: unknown) => T): T | null =>
  value == null ? null : check(value);

// ------------------------------------------------------------------------------- end.request

/** Decode an end.request. Any origin but `"server"` gets the client's rules: only reasons
 * starting with `customer-`. */
export function parseRequest(raw: string | Uint8Array, options: { origin: Origin }): EndRequest {
  const obj = load(raw);
  const rid = isValidId(obj.id) ? obj.id : null;
  const v = version(obj, rid);
  checkType(obj, "end.request", rid);
  const requestId = id(obj.id, "id", rid);
  const reason = optional(obj.reason, (r) => reasonOf(r, rid)) ?? DEFAULT_REASON;
  if (options.origin !== "server" && !reason.startsWith(CLIENT_REASON_PREFIX)) {
    bad(`a client may only send reasons starting with "${CLIENT_REASON_PREFIX}"`, rid);
  }
  const initiator = optional(obj.initiator, (i) => identity(i, "initiator", rid));
  const sentAt = optional(obj.sent_at, (s) => integer(s, "sent_at", rid));
  const meta = optional(obj.meta, (m) => object(m, "meta", rid));
  if (meta) {
    const size = byteLength(canonicalJson(meta));
    if (size > MAX_META_BYTES) bad(`meta is ${size} bytes serialized; the limit is ${MAX_META_BYTES}`, rid);
  }
  return { type: "end.request", v, id: requestId, reason, initiator, sent_at: sentAt, meta };
}

function serialize(body: JsonObject, check: (text: string) => unknown): string {
  let text: string;
  try {
    text = canonicalJson(body);
  } catch (error) {
    throw new ProtocolError("internal", `message is not serializable: ${String(error)}`);
  }
  check(text);
  return text;
}

/** Serialize an end.request (unset optionals left out). Throws `ProtocolError` when the result
 * would not parse (with server rules: any valid reason). */
export function encodeRequest(request: EndRequestInit): string {
  const body: JsonObject = {
    type: "end.request",
    v: request.v ?? VERSION,
    id: request.id,
    reason: request.reason ?? DEFAULT_REASON,
  };
  for (const key of ["initiator", "sent_at", "meta"] as const) {
    if (request[key] != null) body[key] = request[key];
  }
  return serialize(body, (text) => parseRequest(text, { origin: "server" }));
}

// ------------------------------------------------------------------------------- end.ack

export function parseAck(raw: string | Uint8Array): EndAck {
  const obj = load(raw);
  const rid = isValidId(obj.id) ? obj.id : null;
  const v = version(obj, rid);
  checkType(obj, "end.ack", rid);
  const requestId = id(obj.id, "id", rid);
  const status = obj.status as AckStatus;
  if (!ACK_STATUSES.includes(status)) bad("status must be one of " + ACK_STATUSES.join(", "), rid);
  const endId = id(obj.end_id, "end_id", rid);
  const reason = reasonOf(obj.reason, rid);
  const drainMs = integer(obj.drain_ms, "drain_ms", rid);
  return { type: "end.ack", v, id: requestId, status, end_id: endId, reason, drain_ms: drainMs };
}

export function encodeAck(ack: Omit<EndAck, "type" | "v"> & { v?: number }): string {
  const { id: ackId, status, end_id, reason, drain_ms } = ack;
  const body = { type: "end.ack", v: ack.v ?? VERSION, id: ackId, status, end_id, reason, drain_ms };
  return serialize(body, parseAck);
}

// ------------------------------------------------------------------------------- end.error

const codePoints = (text: string): string[] => Array.from(text);

export function parseError(raw: string | Uint8Array): EndError {
  const obj = load(raw);
  const v = version(obj, null);
  checkType(obj, "end.error", null);
  const requestId = optional(obj.id, (i) => id(i, "id", null));
  const code = obj.code;
  if (typeof code != "string" || !CODE_RE.test(code)) bad("code must match ^[a-z][a-z0-9_]{0,31}$");
  const message = obj.message;
  if (typeof message != "string") bad("message must be a string");
  if (codePoints(message).length > MAX_MESSAGE_TEXT_LENGTH) {
    bad(`message must be at most ${MAX_MESSAGE_TEXT_LENGTH} characters`);
  }
  return { type: "end.error", v, id: requestId, code, message };
}

/** Serialize an end.error; a `ProtocolError` is turned into one (message cut to 1,024 chars). */
export function encodeError(
  error: ProtocolError | (Omit<EndError, "type" | "v"> & { v?: number }),
): string {
  const isProtocolError = error instanceof ProtocolError;
  const body = {
    type: "end.error",
    v: (!isProtocolError && error.v) || VERSION,
    id: isProtocolError ? error.requestId : error.id,
    code: error.code,
    message: isProtocolError
      ? codePoints(error.message).slice(0, MAX_MESSAGE_TEXT_LENGTH).join("")
      : error.message,
  };
  return serialize(body, parseError);
}

// ------------------------------------------------------------------------------- session.ended

function finite(value: unknown, name: string): number {
  if (typeof value != "number" || !Number.isFinite(value)) bad(`${name} must be a finite number`);
  if (value < 0) bad(`${name} must not be negative`);
  return value;
}

function nullableString(value: unknown, name: string): string | null {
  if (value != null && typeof value != "string") bad(`${name} must be a string or null`);
  return (value as string | undefined) ?? null;
}

/** Python's `round(x, 3)`: correctly rounded on the exact binary value, exact ties to even. */
function round3(x: number): number {
  const scaled = x * 1000;
  if (scaled % 1 === 0.5) {
    const floor = Math.floor(scaled);
    return (floor % 2 ? floor + 1 : floor) / 1000;
  }
  return Number(x.toFixed(3));
}

/** Decode a `session.ended` report (what a receiver gets). Limit: 16 MiB. */
export function parseReport(raw: string | Uint8Array): SessionEnded {
  const obj = load(raw, MAX_REPORT_BYTES);
  const v = version(obj, null);
  checkType(obj, "session.ended", null);
  const endId = id(obj.end_id, "end_id", null);
  const endedReason = reasonOf(obj.ended_reason, null, "ended_reason");
  const initiator = object(obj.initiator, "initiator");
  const kind = initiator.kind as InitiatorKind;
  if (!INITIATOR_KINDS.includes(kind)) bad("initiator.kind must be one of " + INITIATOR_KINDS.join(", "));
  const who = optional(initiator.identity, (i) => identity(i, "initiator.identity", null));
  const requestId = optional(obj.request_id, (i) => id(i, "request_id", null));
  const meta = optional(obj.meta, (m) => object(m, "meta"));
  const annotations = optional(obj.annotations, (a) => object(a, "annotations")) ?? {};
  const annotationsSize = byteLength(canonicalJson(annotations));
  if (annotationsSize > MAX_META_BYTES) {
    bad(`annotations is ${annotationsSize} bytes serialized; the limit is ${MAX_META_BYTES}`);
  }
  const annotationsSource = (obj.annotations_source ?? "unsigned") as AnnotationsSource;
  if (!ANNOTATIONS_SOURCES.includes(annotationsSource)) {
    bad("annotations_source must be one of " + ANNOTATIONS_SOURCES.join(", "));
  }
  const room = object(obj.room, "room");
  if (typeof room.name != "string" || !room.name) bad("room.name must be a non-empty string");
  const roomSid = nullableString(room.sid, "room.sid");
  const jobId = nullableString(obj.job_id, "job_id");
  const agentName = nullableString(obj.agent_name, "agent_name");
  const startedAt = finite(obj.started_at, "started_at");
  const endedAt = finite(obj.ended_at, "ended_at");
  if (endedAt < startedAt) bad("ended_at must not be before started_at");
  if (typeof obj.complete != "boolean") bad("complete must be a boolean");
  const dict = (key: string): JsonObject => (obj[key] === undefined ? {} : object(obj[key], key));
  return {
    type: "session.ended",
    v,
    end_id: endId,
    ended_reason: endedReason,
    initiator: { kind, identity: who },
    request_id: requestId,
    meta,
    annotations,
    annotations_source: annotationsSource,
    room: { name: room.name, sid: roomSid },
    job_id: jobId,
    agent_name: agentName,
    started_at: startedAt,
    ended_at: endedAt,
    duration_s: round3(Math.max(0, endedAt - startedAt)),
    complete: obj.complete,
    usage: dict("usage"),
    end: dict("end"),
    session: dict("session"),
  };
}

/** Appended to a crash draft's `end_id` to make its `webhook-id` (protocol.md §6). */
export const DRAFT_WEBHOOK_SUFFIX = ".draft";

/** The `webhook-id` a report is sent with: `end_id` for the final report, `<end_id>.draft` for a
 * crash draft (`complete: false`). */
export function webhookId(report: SessionEnded): string {
  return report.complete ? report.end_id : report.end_id + DRAFT_WEBHOOK_SUFFIX;
}

/** True when a receiver holding `stored` must replace it with `incoming` (protocol.md §6): only
 * a final report (`complete: true`) replaces a crash draft of the same session; a draft never
 * replaces a final report, and a repeat changes nothing. Reports of different sessions throw
 * `ProtocolError("bad_request")`. */
export function reportSupersedes(incoming: SessionEnded, stored: SessionEnded): boolean {
  if (incoming.end_id !== stored.end_id) {
    throw new ProtocolError("bad_request", "the reports belong to different sessions (end_id)");
  }
  return incoming.complete && !stored.complete;
}

/** Serialize a report once (`duration_s` recomputed from the timestamps); the text is what is
 * stored, signed and sent on every attempt. */
export function encodeReport(report: SessionEnded): string {
  const r = report;
  const body = {
    type: "session.ended",
    v: r.v,
    end_id: r.end_id,
    ended_reason: r.ended_reason,
    initiator: { kind: r.initiator.kind, identity: r.initiator.identity },
    request_id: r.request_id,
    meta: r.meta,
    annotations: r.annotations,
    annotations_source: r.annotations_source,
    room: { name: r.room.name, sid: r.room.sid },
    job_id: r.job_id,
    agent_name: r.agent_name,
    started_at: r.started_at,
    ended_at: r.ended_at,
    duration_s: round3(Math.max(0, r.ended_at - r.started_at)),
    complete: r.complete,
    usage: r.usage,
    end: r.end,
    session: r.session,
  };
  try {
    return canonicalJson(body);
  } catch (error) {
    throw new ProtocolError("internal", `report is not serializable: ${String(error)}`);
  }
}

// --------------------------------------------------------------------------- session.missing

/** The known causes of a `session.missing` event (protocol.md §7); others matching REASON may come. */
export const MISSING_CAUSES = ["agent-never-joined", "no-report-from-agent"] as const;
/** Appended to the room sid to make a `session.missing` event's `webhook-id`. */
export const MISSING_WEBHOOK_SUFFIX = ".missing";
/** The `type` of the signed test event `endcall doctor` sends (protocol.md §8); never a report. */
export const PING_TYPE = "endcall.ping";
const KIND_RE = /^[a-z][a-z0-9_]{0,31}$/;

/** One participant of a room without a report. */
export interface MissingParticipant {
  identity: string;
  sid: string | null;
  kind: string;
  joined_at: number | null;
  left_at: number | null;
}

/** The `session.missing` event: a room finished and no report of it arrived (protocol.md §7). */
export interface SessionMissing {
  type: "session.missing";
  v: number;
  room: { name: string; sid: string };
  cause: string;
  agent_joined: boolean;
  started_at: number | null;
  finished_at: number;
  detected_at: number;
  participants: MissingParticipant[];
}

/** The `webhook-id` of a room's `session.missing` event: `<room_sid>.missing`. */
export function missingWebhookId(roomSid: string): string {
  return roomSid + MISSING_WEBHOOK_SUFFIX;
}

function participantOf(value: unknown, i: number): MissingParticipant {
  const name = `participants[${i}]`;
  const obj = object(value, name);
  const who = identity(obj.identity, `${name}.identity`, null);
  if (typeof obj.kind != "string" || !KIND_RE.test(obj.kind)) bad(`${name}.kind must match ^[a-z][a-z0-9_]{0,31}$`);
  const sid = nullableString(obj.sid, `${name}.sid`);
  const joined = optional(obj.joined_at, (x) => finite(x, `${name}.joined_at`));
  const left = optional(obj.left_at, (x) => finite(x, `${name}.left_at`));
  if (joined !== null && left !== null && left < joined) bad(`${name}.left_at must not be before joined_at`);
  return { identity: who, sid, kind: obj.kind, joined_at: joined, left_at: left };
}

/** Decode a `session.missing` event (protocol.md §7). Limit: 16 MiB, like a report. */
export function parseMissing(raw: string | Uint8Array): SessionMissing {
  const obj = load(raw, MAX_REPORT_BYTES);
  const v = version(obj, null);
  checkType(obj, "session.missing", null);
  const room = object(obj.room, "room");
  if (typeof room.name != "string" || !room.name) bad("room.name must be a non-empty string");
  if (typeof room.sid != "string" || !room.sid) bad("room.sid must be a non-empty string");
  const cause = reasonOf(obj.cause, null, "cause");
  if (typeof obj.agent_joined != "boolean") bad("agent_joined must be a boolean");
  if (cause === "agent-never-joined" && obj.agent_joined) bad("cause agent-never-joined contradicts agent_joined: true");
  if (cause === "no-report-from-agent" && !obj.agent_joined) bad("cause no-report-from-agent needs agent_joined: true");
  const started = optional(obj.started_at, (x) => finite(x, "started_at"));
  const finished = finite(obj.finished_at, "finished_at");
  if (started !== null && finished < started) bad("finished_at must not be before started_at");
  const detected = finite(obj.detected_at, "detected_at");
  const people = obj.participants ?? [];
  if (!Array.isArray(people)) bad("participants must be a JSON array");
  return {
    type: "session.missing",
    v,
    room: { name: room.name, sid: room.sid },
    cause,
    agent_joined: obj.agent_joined,
    started_at: started,
    finished_at: finished,
    detected_at: detected,
    participants: (people as unknown[]).map(participantOf),
  };
}

/** Serialize a `session.missing` event (the bytes that are stored, signed and sent). */
export function encodeMissing(event: SessionMissing): string {
  const e = event;
  const body = {
    type: "session.missing",
    v: e.v,
    room: { name: e.room.name, sid: e.room.sid },
    cause: e.cause,
    agent_joined: e.agent_joined,
    started_at: e.started_at,
    finished_at: e.finished_at,
    detected_at: e.detected_at,
    participants: e.participants.map((p) => ({
      identity: p.identity,
      sid: p.sid,
      kind: p.kind,
      joined_at: p.joined_at,
      left_at: p.left_at,
    })),
  };
  try {
    return canonicalJson(body);
  } catch (error) {
    throw new ProtocolError("internal", `event is not serializable: ${String(error)}`);
  }
}
