/** The jobs of a run: scenarios × guests × repeats. */
import { positiveInt } from './errors.ts';
import type { Job } from './types.ts';

/** scenarios × guests × repeats as jobs (ids `scenario/guest/#n`). */
export function jobMatrix<S, G>(input: {
  scenarios: readonly S[];
  guests: readonly G[];
  /** @default 1 */
  repeats?: number;
  /** @default String(index) */
  name?: (item: S | G) => string;
  requires?: (scenario: S, guest: G) => readonly string[];
  cost?: (scenario: S, guest: G) => number;
}): Array<Job<{ scenario: S; guest: G; repeat: number }>> {
  const repeats = positiveInt('repeats', input.repeats, 1);
  const out: Array<Job<{ scenario: S; guest: G; repeat: number }>> = [];
  const name = input.name ?? ((x: S | G) => String(x));
  for (const scenario of input.scenarios) {
    for (const guest of input.guests) {
      for (let repeat = 1; repeat <= repeats; repeat++) {
        out.push({ id: `${name(scenario)}/${name(guest)}/${repeat}`, payload: { scenario, guest, repeat }, requires: input.requires?.(scenario, guest), cost: input.cost?.(scenario, guest) });
      }
    }
  }
  return out;
}
