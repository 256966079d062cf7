/** Sets of block indices kept as sorted, merged `[first, count]` runs. */
export type BlockRun = [first: number, count: number];

/** Accumulates block runs added in non-decreasing order, merging overlaps and neighbours. */
export class BlockRunBuilder {
  readonly runs: BlockRun[] = [];
  #total = 0;

  /** Add blocks [first, first + count). `first` must not precede the last run's first block. */
  add(first: number, count: number): void {
    if (count <= 0) return;
    const last = this.runs.at(-1);
    if (last) {
      const lastEnd = last[0] + last[1];
      if (first < last[0]) throw new RangeError(`block runs must be added in order (${first} < ${last[0]})`);
      if (first <= lastEnd) {
        const end = Math.max(lastEnd, first + count);
        this.#total += end - lastEnd;
        last[1] = end - last[0];
        return;
      }
    }
    this.runs.push([first, count]);
    this.#total += count;
  }

  get total(): number {
    return this.#total;
  }
}
