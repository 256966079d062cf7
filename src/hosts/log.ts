/** Structured log lines of the hosts and scheduler modules (`cbt:hosts`, `cbt:scheduler`). */
import { debuglog } from 'node:util';

export type LogFields = Record<string, string | number | boolean | null | undefined>;
export type Logger = (message: string, fields?: LogFields) => void;

/** A logger printing through NODE_DEBUG=cbt-hosts (Node's debuglog), unless one is given. */
export function defaultLogger(section: string): Logger {
  const dl = debuglog(section);
  return (message, fields) => {
    if (!dl.enabled) return;
    const f = fields ? Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${String(v)}`).join(' ') : '';
    dl(`${message}${f ? ` ${f}` : ''}`);
  };
}
