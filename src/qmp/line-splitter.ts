/**
 * Newline-delimited framing for QMP: bytes in, complete lines out. Handles partial chunks, many
 * lines per chunk and lines spread over many chunks without quadratic copying (chunks are kept
 * in a list and joined once per line). Splitting on byte 0x0A is safe for UTF-8: that byte never
 * occurs inside a multi-byte sequence. A line longer than `maxLineBytes` is refused, so a peer
 * cannot make us buffer without bound.
 */
import { InfrastructureHarnessError } from '../util/index.ts';

export class LineTooLongError extends InfrastructureHarnessError {
  override name = 'LineTooLongError';
  readonly limit: number;
  constructor(limit: number) {
    super(`a line exceeded ${limit} bytes without a newline`);
    this.limit = limit;
  }
}

export class LineSplitter {
  readonly maxLineBytes: number;
  #parts: Buffer[] = [];
  #pending = 0;

  /** @param maxLineBytes longest accepted line, newline excluded. */
  constructor(maxLineBytes: number) {
    if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes <= 0) throw new TypeError(`Expected \`maxLineBytes\` to be a positive integer, got \`${maxLineBytes}\` (${typeof maxLineBytes})`);
    this.maxLineBytes = maxLineBytes;
  }

  /** Bytes buffered of an incomplete line. */
  get pendingBytes(): number {
    return this.#pending;
  }

  /** Feed a chunk; returns the lines it completed (without the newline; `\r` before it trimmed). */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const tail = chunk.subarray(start, nl);
      const len = this.#pending + tail.length;
      if (len > this.maxLineBytes) throw new LineTooLongError(this.maxLineBytes);
      let line: Buffer;
      if (this.#parts.length === 0) line = tail;
      else {
        this.#parts.push(tail);
        line = Buffer.concat(this.#parts, len);
        this.#parts = [];
        this.#pending = 0;
      }
      let end = line.length;
      if (end > 0 && line[end - 1] === 0x0d) end--;
      lines.push(line.toString('utf8', 0, end));
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (this.#pending + rest.length > this.maxLineBytes) throw new LineTooLongError(this.maxLineBytes);
      // Copy: the caller may reuse the chunk's memory.
      this.#parts.push(Buffer.from(rest));
      this.#pending += rest.length;
    }
    return lines;
  }
}
