/** Writes the run record: `DIR/run.json` (always, with `run --out DIR`). */
import type { Reporter } from './reporter.ts';
import type { RunRecord } from './run-record.ts';
import { writeFileAtomic } from './write-file.ts';

export class JsonReporter implements Reporter {
  readonly name = 'json';
  readonly #file: string;

  constructor(file: string) {
    this.#file = file;
  }

  async onEnd(record: RunRecord): Promise<void> {
    await writeFileAtomic(this.#file, `${JSON.stringify(record)}\n`);
  }
}
