/**
 * The serial console, captured by QEMU into a file: read incrementally, searched for markers.
 * Only the text is kept in memory up to `maxBytes` (the oldest part is dropped), so a chatty
 * guest cannot grow the harness without bound.
 */
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmError } from './errors.ts';

export interface ConsoleWaitOptions {
  signal?: AbortSignal;
  /** @default 60000 */
  timeoutMs?: number;
  /** Search only text at or after this offset (from `offset` of an earlier match or `end`). @default 0 */
  from?: number;
}

export interface ConsoleMatch {
  text: string;
  /** Offset just past the match: pass it as `from` to wait for a later occurrence. */
  end: number;
  groups: string[];
}

export class ConsoleLog {
  readonly path: string;
  #text = '';
  /** File offset of #text[0]. */
  #base = 0;
  #read = 0;
  #maxBytes: number;

  constructor(path: string, maxBytes = 8 * 1024 * 1024) {
    this.path = path;
    this.#maxBytes = maxBytes;
  }

  /** Reads what QEMU appended since the last call. */
  async refresh(): Promise<void> {
    let fh;
    try {
      fh = await open(this.path, 'r');
    } catch {
      return;
    }
    try {
      const buf = Buffer.alloc(64 * 1024);
      while (true) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.#read);
        if (bytesRead === 0) break;
        this.#read += bytesRead;
        this.#text += buf.toString('latin1', 0, bytesRead);
      }
    } finally {
      await fh.close();
    }
    if (this.#text.length > this.#maxBytes) {
      const drop = this.#text.length - this.#maxBytes;
      this.#text = this.#text.slice(drop);
      this.#base += drop;
    }
  }

  /** Offset of the end of what has been read. */
  get end(): number {
    return this.#read;
  }

  /** The last `n` characters read (for error messages). */
  tail(n = 2000): string {
    return this.#text.slice(-n);
  }

  async text(): Promise<string> {
    await this.refresh();
    return this.#text;
  }

  /**
   * Waits for `pattern` in the console text. Rejects with VmError `timeout`, `aborted`, or
   * `exited` when `stopped` settles first (QEMU exited: the marker can no longer come).
   */
  async waitFor(pattern: RegExp | string, opts: ConsoleWaitOptions & { stopped?: Promise<unknown>; vm?: string } = {}): Promise<ConsoleMatch> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    const from = opts.from ?? 0;
    let stopped = false;
    void opts.stopped?.then(
      () => (stopped = true),
      () => (stopped = true),
    );
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : new RegExp(pattern.source, pattern.flags.replace('g', ''));
    while (true) {
      if (opts.signal?.aborted) throw new VmError('aborted', `waiting for ${re} on the console aborted`, { vm: opts.vm, cause: opts.signal.reason });
      const wasStopped = stopped;
      await this.refresh();
      const start = Math.max(0, from - this.#base);
      const m = re.exec(this.#text.slice(start));
      if (m) return { text: m[0], end: this.#base + start + m.index + m[0].length, groups: m.slice(1) };
      if (wasStopped) throw new VmError('exited', `QEMU exited before ${re} appeared on the console; console tail:\n${this.tail(1500)}`, { vm: opts.vm });
      if (Date.now() >= deadline) throw new VmError('timeout', `${re} did not appear on the console within ${timeoutMs} ms; console tail:\n${this.tail(1500)}`, { vm: opts.vm });
      try {
        await sleep(25, undefined, { signal: opts.signal });
      } catch {
        // aborted: reported at the top of the loop
      }
    }
  }
}
