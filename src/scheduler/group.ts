/**
 * The pending jobs of one requirement set (the same `requires` tags), in dispatch order: retries
 * first (a retried job has waited already), then fresh jobs. A retry avoids the hosts it failed
 * on while another host of the group could take it.
 */

/** What a group needs to know of a job: where its attempts failed on infrastructure (host indexes). */
export interface Placeable {
  readonly failedOn?: ReadonlySet<number>;
}

export class JobGroup<E extends Placeable> {
  /** The sorted tags joined by NUL ('' for none). */
  readonly key: string;
  readonly requires: readonly string[];
  /** Indexes of the up hosts that have all the tags. */
  hosts: number[];
  #retries: E[] = [];
  #queue: E[] = [];
  #head = 0;

  constructor(requires: readonly string[], hosts: number[]) {
    this.requires = requires;
    this.key = requires.join('\0');
    this.hosts = hosts;
  }

  /** Jobs waiting: retries and fresh ones. */
  get pending(): number {
    return this.#retries.length + this.#queue.length - this.#head;
  }

  /** Fresh jobs waiting (not the retries). */
  get fresh(): number {
    return this.#queue.length - this.#head;
  }

  /** The retries waiting, oldest first. */
  get retries(): readonly E[] {
    return this.#retries;
  }

  /** The fresh jobs waiting, in dispatch order (a copy). */
  queued(): E[] {
    return this.#queue.slice(this.#head);
  }

  /** A fresh job, after the others. */
  push(entry: E): void {
    this.#queue.push(entry);
  }

  /** A job whose attempt failed: before every fresh job. */
  retry(entry: E): void {
    this.#retries.push(entry);
  }

  /** Puts the fresh jobs in a new order (`arrange` gets them in the current one). */
  arrange(arrange: (queued: E[]) => E[]): void {
    this.#queue = arrange(this.queued());
    this.#head = 0;
  }

  /** May host `host` take `entry`? Not a host it failed on, unless it failed on every host of the group. */
  acceptable(entry: E, host: number): boolean {
    const failed = entry.failedOn;
    return failed === undefined || !failed.has(host) || this.hosts.every((x) => failed.has(x));
  }

  /** Is there a job `host` may take? */
  canTake(host: number): boolean {
    return this.#head < this.#queue.length || this.#retries.some((e) => this.acceptable(e, host));
  }

  /** Takes the next job for `host`: the oldest retry it may take, else the next fresh job. */
  take(host: number): E | undefined {
    for (let i = 0; i < this.#retries.length; i++) {
      const e = this.#retries[i];
      if (this.acceptable(e, host)) {
        this.#retries.splice(i, 1);
        return e;
      }
    }
    if (this.#head < this.#queue.length) {
      const e = this.#queue[this.#head++];
      // Compact now and then so the array does not keep a long taken prefix.
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      return e;
    }
    return undefined;
  }

  /** Removes and returns every waiting job, retries first. */
  drain(): E[] {
    const out = [...this.#retries, ...this.#queue.slice(this.#head)];
    this.#retries = [];
    this.#queue = [];
    this.#head = 0;
    return out;
  }
}
