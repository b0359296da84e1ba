/**
 * Where the reports wing logs (Python's loggers `endcall.report`/`endcall.delivery`): `console`
 * by default, replaceable with `setReportLogger` (e.g. the agent's pino logger). Lines name
 * reports by `end_id` only; a whole report is logged only when neither stored nor delivered.
 */

import { redact } from "./redact.js";

export interface ReportLogger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

let current: ReportLogger = {
  debug: () => undefined,
  info: (m) => console.info(m),
  warn: (m) => console.warn(m),
  error: (m) => console.error(m),
};

export function setReportLogger(logger: ReportLogger): void {
  current = logger;
}

export const log: ReportLogger = {
  debug: (m) => current.debug(redact(m)),
  info: (m) => current.info(redact(m)),
  warn: (m) => current.warn(redact(m)),
  error: (m) => current.error(redact(m)),
};
