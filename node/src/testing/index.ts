/**
 * `endcall-agent/testing`: doubles for users' own unit tests of an agent that uses `EndCall` —
 * `MemorySink` (a `ReportSink` in memory) and small fakes of the room, session and job context.
 * Nothing in the library imports this entry.
 */
export { MemorySink, type MemorySinkOptions } from "./memory_sink.js";
export * from "./fakes.js";
