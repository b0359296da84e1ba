/**
 * `endCall(room, options)`: end a LiveKit voice-agent call from the browser and know whether the
 * agent got it. RPC first (own ack timer); on any RPC failure the data packet and the REST
 * fallback run in parallel and the first ack wins; one request id everywhere; then optionally
 * wait for the agent, then disconnect. Never rejects: every failure path still disconnects and
 * resolves with `status: "unacknowledged"` and the errors. Framework-agnostic (no React).
 */
import {
  ACK_STATUSES,
  ATTR_STATE,
  DEFAULT_METHOD,
  DEFAULT_REASON,
  ERROR_CODES,
  ERROR_RPC_CODES,
  CLIENT_REASON_PREFIX,
  MAX_META_BYTES,
  ProtocolError,
  VERSION,
  ackTopic,
  byteLength,
  isValidId,
  isValidReason,
  parseAck,
  type AckStatus,
  type EndAck,
  type JsonObject,
} from "./protocol";
import { EVENT_ATTRIBUTES, EVENT_DATA, EVENT_DISCONNECTED, EVENT_LEFT, findAgent, type EndCallParticipant, type EndCallRoom } from "./room";

export type Channel = "rpc" | "data" | "rest";
export type EndCallStatus = AckStatus | "unacknowledged";

/** The fallback server's 2xx answer (`POST /v1/end`). */
export interface FallbackAck {
  status: AckStatus;
  /** `agent`: the agent acknowledged; `server`: it did not (or is absent) and the server escalated. */
  acked_by?: "agent" | "server";
  end_id?: string;
  reason?: string;
  /** What the server did when the agent did not answer, e.g. `delete_room`. */
  escalated?: string;
}

export interface EndCallError {
  /** Where it went wrong: a channel, the request itself (bad options), or the final disconnect. */
  channel: Channel | "request" | "disconnect";
  /** `timeout`, `no_agent`, `aborted`, `rpc_error`, `send_failed`, `http_error`,
   * `disconnect_failed`, or a protocol/server error code (`bad_request`, `forbidden`, …). */
  code: string;
  message: string;
  /** The RpcError code or the HTTP status, when there is one. */
  status?: number;
}

export interface EndCallOutcome {
  /** The ack's status, or `unacknowledged` when no channel acknowledged in time. */
  status: EndCallStatus;
  /** The channel whose ack won. */
  via: Channel | "none";
  /** The winning ack: an `end.ack` (rpc, data) or the fallback server's answer (rest). */
  ack: EndAck | FallbackAck | null;
  /** The end.request id used on every channel. */
  requestId: string;
  elapsedMs: number;
  /** Everything that failed along the way (also when a later channel succeeded). */
  errors: EndCallError[];
}

export interface EndCallOptions {
  /** URL of the fallback server's `POST /v1/end`; without it there is no REST fallback. */
  fallbackUrl?: string;
  /** Sent as `Authorization: Bearer <token>` to the fallback server (LiveKit or end token). */
  token?: string;
  /** The agent's identity; default: the participant whose kind is AGENT, else the one with the
   * `lk.agent.state` attribute. */
  agentIdentity?: string;
  /** RPC method and data topic (default `end_interview`; acks arrive on `<method>.ack`). */
  method?: string;
  /** Must start with `customer-` (default `customer-ended-call`). */
  reason?: string;
  /** Copied into the report; <= 4,096 bytes serialized. */
  meta?: JsonObject;
  /** Default: a fresh random id. */
  requestId?: string;
  /** How long to wait for the RPC ack before falling back (default 2,500 ms). */
  ackTimeoutMs?: number;
  /** How long the data + REST fallback may take (default 6,000 ms). */
  fallbackTimeoutMs?: number;
  /** After the ack, wait up to this long for the agent to finish (`endcall.state=ended` or it
   * leaves) before disconnecting (default 0: don't wait). */
  waitForAgentMs?: number;
  /** Disconnect the room at the end (default true). */
  disconnect?: boolean;
  /** Stop waiting: the rest of the sequence is skipped, the disconnect step still runs. */
  signal?: AbortSignal;
  /** `fetch` to use for the fallback (default `globalThis.fetch`). */
  fetch?: typeof fetch;
}

interface CallRecord {
  promise: Promise<EndCallOutcome>;
  requestId: string;
  /** The encoded end.request, once built. */
  request?: string;
  acked?: boolean;
  /** The connection it belongs to: the local participant's sid when it started. */
  sid?: string;
}

const calls = new WeakMap<EndCallRoom, CallRecord>();

/** The in-flight or acknowledged call of the room's current connection (shared with the
 * tab-close beacon). A call of an earlier connection of the same `Room` does not count. */
export const currentCall = (room: EndCallRoom): CallRecord | undefined => {
  const record = calls.get(room);
  return record?.sid === room.localParticipant?.sid ? record : undefined;
};

/** A fresh request id: 32 random hex digits (128 bits; `crypto.getRandomValues` works on
 * plain-http pages, where `crypto.randomUUID` does not exist). */
export const newRequestId = (): string =>
  Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => (byte | 256).toString(16).slice(1)).join("");

/** Build the encoded end.request. Checks what the options control (id, reason
 * with the client's `customer-` rule, meta size) and throws `ProtocolError` like the codec. */
export function buildRequest(
  requestId: string,
  reason: string = DEFAULT_REASON,
  meta?: JsonObject,
): string {
  // No `initiator`: every receiver takes the identity from the transport (RPC caller, data
  // sender, the fallback server's token), never from the body.
  const body: JsonObject = { type: "end.request", v: VERSION, id: requestId, reason, sent_at: Date.now() };
  if (meta) body.meta = meta;
  if (
    !isValidId(requestId) ||
    !isValidReason(reason) ||
    !reason.startsWith(CLIENT_REASON_PREFIX) ||
    (meta && byteLength(JSON.stringify(meta)) > MAX_META_BYTES)
  ) {
    throw new ProtocolError("bad_request", "invalid requestId, reason or meta", requestId);
  }
  return JSON.stringify(body);
}

/**
 * End the call. Concurrent calls on one connection of a room share one in-flight promise (their
 * options are ignored); after an acknowledged end the same outcome is returned again, until the
 * room connects again: a new connection (a new local participant sid) starts a new end.
 */
export function endCall(room: EndCallRoom, options: EndCallOptions = {}): Promise<EndCallOutcome> {
  let record = currentCall(room);
  if (!record) {
    record = { sid: room.localParticipant?.sid, requestId: options.requestId ?? newRequestId() } as CallRecord;
    calls.set(room, record);
    const current = record;
    record.promise = run(room, options, record).then((outcome) => {
      // keep an acknowledged end (later calls get the same outcome); allow a retry otherwise,
      // unless a newer connection's call has taken its place
      if (!(current.acked = outcome.status != "unacknowledged") && currentCall(room) == current) calls.delete(room);
      return outcome;
    });
  }
  return record.promise;
}

type Win = { via: Channel; ack: EndAck | FallbackAck };
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listen = (event: string, listener: (...args: any[]) => void) => void;

async function run(room: EndCallRoom, o: EndCallOptions, record: CallRecord): Promise<EndCallOutcome> {
  const started = Date.now();
  const requestId = record.requestId;
  const errors: EndCallError[] = [];
  const cleanups: Array<() => void> = [];
  const method = o.method ?? DEFAULT_METHOD;
  const signal = o.signal;
  const pending = new Set<Channel>();
  let win: Win | undefined;
  let done = false;
  let settle = (): void => {};

  const note = (channel: EndCallError["channel"], code: string, message: string): void => {
    errors.push({ channel, code, message });
  };
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      cleanups.push(() => clearTimeout(timer));
    });
  const aborted = new Promise<void>((resolve) => {
    if (signal?.aborted) resolve();
    signal?.addEventListener("abort", resolve as () => void);
    cleanups.push(() => signal?.removeEventListener("abort", resolve as () => void));
  });
  const listen: Listen = (event, listener) => {
    room.on(event, listener);
    cleanups.push(() => room.off(event, listener));
  };
  /** Run one channel: its ack wins unless another came first; when every channel failed, stop. */
  const channel = (name: Channel, attempt: () => Promise<EndAck | FallbackAck>): void => {
    pending.add(name);
    attempt().then(
      (ack) => {
        if (!done) win ??= { via: name, ack };
        settle();
      },
      (error: unknown) => {
        if (!done) errors.push(describe(name, error));
        pending.delete(name);
        if (!pending.size) settle();
      },
    );
  };
  /** Wait until a channel acked, every channel failed, `ms` passed or the signal fired. */
  const wait = async (ms: number): Promise<unknown> =>
    win || !pending.size || Promise.race([new Promise<void>((resolve) => (settle = resolve)), sleep(ms), aborted]);

  try {
    try {
      const request = (record.request = buildRequest(requestId, o.reason, o.meta));
      const agent = o.agentIdentity ?? findAgent(room)?.identity;
      const ackTimeout = o.ackTimeoutMs ?? 2_500;
      const fallbackTimeout = o.fallbackTimeoutMs ?? 6_000;

      if (agent) {
        channel("rpc", async () => {
          const ack = parseAck(
            await room.localParticipant.performRpc({
              destinationIdentity: agent,
              method,
              payload: request,
              responseTimeout: ackTimeout + fallbackTimeout,
            }),
          );
          if (ack.id !== requestId) throw new ProtocolError("bad_request", "ack names another request");
          return ack;
        });
        await wait(ackTimeout);
      } else {
        note("rpc", "no_agent", "no agent in the room");
      }

      // the fallback only while the room is on the connection the end started on
      if (!win && !signal?.aborted && currentCall(room) == record) {
        if (pending.has("rpc")) note("rpc", "timeout", `no ack within ${ackTimeout} ms`);
        if (agent) channel("data", () => sendData(room, agent, method, request, requestId, listen));
        if (o.fallbackUrl) {
          const controller = new AbortController();
          cleanups.push(() => controller.abort());
          channel("rest", () => postFallback(o, room, request, controller.signal));
        }
        await wait(fallbackTimeout);
        // (the RPC's timeout was noted when the fallback started)
        for (const name of win || signal?.aborted ? [] : pending) {
          if (name != "rpc") note(name, "timeout", "no ack in time");
        }
      }
      if (!win && signal?.aborted) note("request", "aborted", "aborted");
      done = true;

      const waitMs = o.waitForAgentMs ?? 0;
      if (win && agent && waitMs > 0 && !signal?.aborted) {
        await Promise.race([sleep(waitMs), aborted, agentFinished(room, agent, listen)]);
      }
    } catch (error) {
      errors.push(describe("request", error));
    }
    done = true;
    // not when the room has connected again meanwhile: that is another call
    if (o.disconnect !== false && currentCall(room) == record) {
      await Promise.race([
        room.disconnect().catch((error: unknown) => {
          errors.push({ ...describe("disconnect", error), code: "disconnect_failed" });
        }),
        sleep(5_000),
      ]);
    }
  } finally {
    for (const cleanup of cleanups) cleanup();
  }

  return {
    status: win?.ack.status ?? "unacknowledged",
    via: win?.via ?? "none",
    ack: win?.ack ?? null,
    requestId,
    elapsedMs: Date.now() - started,
    errors,
  };
}

/** The data channel: send the request on `method`, resolve with the ack on `<method>.ack`. */
function sendData(
  room: EndCallRoom,
  agent: string,
  method: string,
  request: string,
  requestId: string,
  listen: Listen,
): Promise<EndAck> {
  return new Promise((resolve, reject) => {
    listen(EVENT_DATA, (payload: Uint8Array, from?: EndCallParticipant, _kind?: unknown, topic?: string) => {
      if (topic !== ackTopic(method) || (from && from.identity !== agent)) return;
      try {
        const ack = parseAck(payload);
        if (ack.id === requestId) resolve(ack);
      } catch {
        // the agent refused: an end.error for our request
        try {
          const error = JSON.parse(new TextDecoder().decode(payload));
          if (error.type == "end.error" && error.id === requestId) reject(new ProtocolError(error.code, error.message, requestId));
        } catch {
          // not an answer to us
        }
      }
    });
    room.localParticipant
      .publishData(new TextEncoder().encode(request), { reliable: true, destinationIdentities: [agent], topic: method })
      .catch(reject);
  });
}

/** The REST fallback: `POST fallbackUrl` with the end.request plus `room`. */
async function postFallback(
  o: EndCallOptions,
  room: EndCallRoom,
  request: string,
  signal: AbortSignal,
): Promise<FallbackAck> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (o.token) headers.Authorization = "Bearer " + o.token;
  const response = await (o.fetch ?? fetch)(o.fallbackUrl!, {
    method: "POST",
    headers,
    body: withRoom(request, room),
    signal,
    keepalive: true,
  });
  const body = (await response.json().catch(() => ({}))) as Partial<FallbackAck & { code: string; message: string }>;
  if (response.ok && ACK_STATUSES.includes(body.status!)) return body as FallbackAck;
  throw { code: body.code ?? "http_error", message: body.message ?? `HTTP ${response.status}`, status: response.status };
}

/** The end.request plus `"room"` (and more fields), as the fallback server takes it. */
export const withRoom = (request: string, room: EndCallRoom, extra?: JsonObject): string =>
  JSON.stringify({ ...(JSON.parse(request) as JsonObject), room: room.name, ...extra });

/** Resolves when the agent has left, says `endcall.state=ended`, or the room disconnected. */
function agentFinished(
  room: EndCallRoom,
  agent: string,
  listen: Listen,
): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      const participant = findAgent(room, agent);
      if (!participant || participant.attributes[ATTR_STATE] === "ended") resolve();
    };
    listen(EVENT_ATTRIBUTES, check);
    listen(EVENT_LEFT, (p?: EndCallParticipant) => (p?.identity === agent ? resolve() : check()));
    listen(EVENT_DISCONNECTED, resolve);
    check();
  });
}

function describe(channel: EndCallError["channel"], error: unknown): EndCallError {
  const e = (error ?? {}) as { code?: unknown; message?: unknown; data?: unknown; status?: unknown };
  // a LiveKit RpcError has a numeric code: the agent's refusals use 4400-4500 (ERROR_RPC_CODES)
  const rpc = typeof e.code == "number";
  const status = rpc ? e.code : e.status;
  return {
    channel,
    code: rpc ? (ERROR_CODES.find((c) => ERROR_RPC_CODES[c] === e.code) ?? "rpc_error") : typeof e.code == "string" ? e.code : "send_failed",
    message: String(e.message ?? error),
    ...(typeof status == "number" && { status }),
  };
}
