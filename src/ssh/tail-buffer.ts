/**
 * Keeps the last `limit` bytes written to it and counts what it dropped: bounded capture of a
 * remote command's output, so a chatty command cannot exhaust memory.
 */
export class TailBuffer {
  readonly limit: number;
  #chunks: Buffer[] = [];
  #size = 0;
  #dropped = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (chunk.length >= this.limit) {
      this.#dropped += this.#size + chunk.length - this.limit;
      this.#chunks = this.limit > 0 ? [Buffer.from(chunk.subarray(chunk.length - this.limit))] : [];
      this.#size = this.limit;
      return;
    }
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    while (this.#size > this.limit) {
      const head = this.#chunks[0];
      const excess = this.#size - this.limit;
      if (head.length <= excess) {
        this.#chunks.shift();
        this.#size -= head.length;
        this.#dropped += head.length;
      } else {
        this.#chunks[0] = head.subarray(excess);
        this.#size -= excess;
        this.#dropped += excess;
      }
    }
  }

  /** Bytes dropped from the front so far. */
  get dropped(): number {
    return this.#dropped;
  }

  get size(): number {
    return this.#size;
  }

  toString(): string {
    return Buffer.concat(this.#chunks, this.#size).toString('utf8');
  }
}
