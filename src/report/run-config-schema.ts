/**
 * JSON Schema (draft 2020-12) of run configs (harness/gate.yaml, harness/nightly.yaml): which
 * scenarios × guests × repeats to run, on which hosts, against which baseline, with which
 * reporters, and what fails the run. Published as harness/schema/run-config.schema.json (a test
 * keeps the two equal). `description` doubles as the phrase in "Expected `field` to be …".
 */

const NAME = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$', description: 'a name of letters, digits, `.`, `_` and `-` (at most 63 characters)' } as const;
const PATH = { type: 'string', minLength: 1, description: 'a path (relative to this file, or absolute)' } as const;
const DURATION = { type: 'string', pattern: '^[0-9]+(ms|s|m|h)$', description: 'a duration like `90s`, `30m` or `2h`' } as const;
const RATIO = { type: 'number', minimum: 0, description: 'a non-negative number' } as const;
const VERDICTS = { enum: ['EXACT', 'SUPERSET', 'RESYNC', 'MISSED'] } as const;

export const RUN_CONFIG_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://cbt-harness.dev/schema/run-config.schema.json',
  title: 'cbt-harness run config',
  description: 'A matrix of scenarios × guests × repeats, the hosts to run it on, the baseline to compare with, reporters and failure policy. Documented in docs/reports.md.',
  type: 'object',
  required: ['version', 'name', 'matrix'],
  additionalProperties: false,
  properties: {
    $schema: { type: 'string' },
    version: { const: 1, description: 'the config format version (1)' },
    name: { ...NAME, description: 'the config name (gate, nightly), recorded in the run record' },
    description: { type: 'string' },
    hosts: { ...PATH, description: 'the host inventory file (a path relative to this file)' },
    guestCatalog: { ...PATH, description: 'the guest catalog file (a path relative to this file)' },
    seed: { oneOf: [{ type: 'integer', minimum: 0, maximum: 4294967295 }, { const: 'random' }], description: 'an integer from 0 to 4294967295, or `random`' },
    repeats: { type: 'integer', minimum: 1, maximum: 1000, description: 'repeats of every matrix entry that does not say (default 1)' },
    matrix: {
      type: 'array',
      minItems: 1,
      description: 'matrix entries: scenarios × guests × repeats',
      items: {
        type: 'object',
        required: ['scenarios', 'guests'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', description: 'a label for this entry' },
          scenarios: { type: 'array', minItems: 1, uniqueItems: true, items: { ...PATH, description: 'a scenario file or glob (relative to this file)' } },
          guests: { type: 'array', minItems: 1, uniqueItems: true, items: NAME, description: 'guest catalog names' },
          repeats: { type: 'integer', minimum: 1, maximum: 1000, description: 'an integer from 1 to 1000' },
          tags: { type: 'array', uniqueItems: true, items: NAME, description: 'tags a host must have to run these jobs' },
          expect: { type: 'array', minItems: 1, uniqueItems: true, items: VERDICTS, description: 'verdicts acceptable for every epoch of these jobs, overriding the scenarios' },
          mustFail: { type: 'boolean', description: 'true for known-bad trackers: these jobs must fail (a pass means the harness did not catch them)' },
        },
      },
    },
    exclude: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        properties: { scenario: { type: 'string', minLength: 1, description: 'a scenario name' }, guest: NAME },
      },
    },
    baseline: { ...PATH, description: 'a run directory or run.json to compare with (a path relative to this file)' },
    history: { ...PATH, description: 'a folder where the run record is copied for `report trend` (a path relative to this file)' },
    out: { ...PATH, description: 'the output folder (`run --out` overrides; `{runId}` is replaced)' },
    reporters: { type: 'array', uniqueItems: true, items: { enum: ['terminal', 'json', 'junit', 'html'] }, description: 'reporters among terminal, json, junit, html' },
    failOn: {
      type: 'object',
      additionalProperties: false,
      properties: {
        missed: { enum: ['unexpected', 'any', 'never'], description: 'which MISSED verdicts fail the run' },
        regression: { type: 'boolean', description: 'fail when `report compare` against the baseline finds anything worse' },
        infraError: { type: 'boolean', description: 'fail (exit 2) when a job ends in an infrastructure error' },
      },
    },
    compare: {
      type: 'object',
      additionalProperties: false,
      properties: { threshold: { ...RATIO, description: 'relative over-report increase counted as worse (0.1 = +10 %)' }, resyncThreshold: { type: 'number', minimum: 0, maximum: 1, description: 'a resync-rate increase from 0 to 1' } },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        jobTimeout: DURATION,
        runTimeout: DURATION,
        maxAttempts: { type: 'integer', minimum: 1, maximum: 10, description: 'an integer from 1 to 10' },
        hostFailureLimit: { type: 'integer', minimum: 1, maximum: 100, description: 'an integer from 1 to 100' },
        speculate: { type: 'boolean', description: 'true: idle slots at the tail start backup copies of running jobs on other hosts (the first to finish is the result)' },
      },
    },
    labels: { type: 'object', additionalProperties: { type: 'string' }, description: 'free string labels copied into the run record' },
  },
} as const;
