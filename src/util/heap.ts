/** A binary min-heap under `less`: the scheduler's plan (src/scheduler/plan.ts) and the event queues of bench:schedule. */
export class MinHeap<T> {
  readonly #items: T[] = [];
  readonly #less: (a: T, b: T) => boolean;

  constructor(less: (a: T, b: T) => boolean) {
    this.#less = less;
  }

  get size(): number {
    return this.#items.length;
  }

  /** The least item, left in place. */
  peek(): T | undefined {
    return this.#items[0];
  }

  push(x: T): void {
    const h = this.#items;
    // Sift up with a hole instead of swaps: one write per level.
    let i = h.length;
    h.push(x);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(x, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = x;
  }

  pop(): T | undefined {
    const h = this.#items;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop() as T;
    const n = h.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const m = l + 1 < n && this.#less(h[l + 1], h[l]) ? l + 1 : l;
        if (!this.#less(h[m], last)) break;
        h[i] = h[m];
        i = m;
      }
      h[i] = last;
    }
    return top;
  }
}
