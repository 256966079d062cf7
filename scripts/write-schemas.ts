/** Writes the published JSON Schemas from their TypeScript sources (`npm run schemas`). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SCENARIO_SCHEMA } from '../src/scenario/schema.ts';

const root = join(fileURLToPath(import.meta.url), '../..');
export const PUBLISHED: Array<[string, unknown]> = [['scenarios/schema.json', SCENARIO_SCHEMA]];

export function render(schema: unknown): string {
  return `${JSON.stringify(schema, null, 2)}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const [file, schema] of PUBLISHED) {
    writeFileSync(join(root, file), render(schema));
    process.stderr.write(`wrote ${file}\n`);
  }
}
