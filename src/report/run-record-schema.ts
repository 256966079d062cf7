/**
 * JSON Schema (draft 2020-12) of the run record (run-record.ts). Published as
 * reports/schema/run-record.json (`cbt-harness report schema` prints it; a test keeps the two
 * equal and validates generated records against it with ajv).
 */
import { JOB_STATUSES } from './run-record.ts';

const ISO_TIME = { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$', description: 'an ISO 8601 time' } as const;
const MS = { type: 'integer', minimum: 0, description: 'milliseconds' } as const;
const COUNT = { type: 'integer', minimum: 0 } as const;
const VERDICT = { enum: ['EXACT', 'SUPERSET', 'RESYNC', 'MISSED'] } as const;
const HOST_TYPE = { enum: ['local', 'ssh', 'docker'] } as const;
const REL_PATH = { type: 'string', pattern: '^(?!/)(?!.*(^|/)\\.\\.(/|$)).+$', description: 'a path relative to the run directory, inside it' } as const;
const MAP_STRING = { type: 'string', pattern: '^[0-9a-f]*$', maxLength: 512 } as const;
const SHORT_TEXT = { type: 'string', maxLength: 65536 } as const;

export const RUN_RECORD_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://cbt-harness.dev/schema/run-record.json',
  title: 'cbt-harness run record',
  description: 'One run of cbt-harness: the jobs (scenario × guest × repeat), their steps, epochs, verdicts and timelines. Documented in docs/reports.md.',
  type: 'object',
  required: ['schemaVersion', 'runId', 'startedAt', 'endedAt', 'durationMs', 'harness', 'seed', 'hosts', 'jobs', 'totals'],
  additionalProperties: false,
  properties: {
    $schema: { type: 'string' },
    schemaVersion: { const: 1 },
    runId: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' },
    startedAt: ISO_TIME,
    endedAt: ISO_TIME,
    durationMs: MS,
    harness: {
      type: 'object',
      required: ['version'],
      additionalProperties: false,
      properties: { version: { type: 'string' }, commit: { type: 'string' }, node: { type: 'string' } },
    },
    seed: { type: 'integer', minimum: 0, maximum: 4294967295 },
    config: { type: 'object', required: ['name', 'file'], additionalProperties: false, properties: { name: { type: 'string' }, file: { type: 'string' } } },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    hosts: { type: 'array', items: { $ref: '#/$defs/host' } },
    cancelled: { type: 'boolean' },
    jobs: { type: 'array', items: { $ref: '#/$defs/job' } },
    totals: { $ref: '#/$defs/totals' },
  },
  $defs: {
    host: {
      type: 'object',
      required: ['name', 'type', 'tags'],
      additionalProperties: false,
      properties: { name: { type: 'string', minLength: 1 }, type: HOST_TYPE, tags: { type: 'array', items: { type: 'string' } }, slots: { type: 'integer', minimum: 1 }, down: { type: 'string', minLength: 1, description: 'why the host was not used: it could not be reached (or swept) when the run began, so no job was placed on it' } },
    },
    hostRef: {
      type: 'object',
      required: ['name', 'type'],
      additionalProperties: false,
      properties: { name: { type: 'string', minLength: 1 }, type: HOST_TYPE },
    },
    range: { type: 'array', prefixItems: [COUNT, { type: 'integer', minimum: 1 }], minItems: 2, maxItems: 2, items: false },
    job: {
      type: 'object',
      required: ['id', 'scenario', 'guest', 'host', 'seed', 'repeat', 'status', 'startedAt', 'endedAt', 'durationMs', 'attempts', 'steps', 'epochs', 'timeline', 'artifacts'],
      additionalProperties: false,
      properties: {
        id: { type: 'string', minLength: 1 },
        scenario: {
          type: 'object',
          required: ['name', 'file'],
          additionalProperties: false,
          properties: { name: { type: 'string', minLength: 1 }, file: { type: 'string' }, description: { type: 'string' } },
        },
        guest: {
          type: 'object',
          required: ['name', 'os', 'tracker'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', minLength: 1 },
            os: {
              type: 'object',
              required: ['family', 'build'],
              additionalProperties: false,
              properties: { family: { enum: ['linux', 'windows', 'other'] }, build: { type: 'string', minLength: 1 }, name: { type: 'string' }, kernel: { type: 'string' } },
            },
            tracker: {
              type: 'object',
              required: ['name', 'decoder', 'version'],
              additionalProperties: false,
              properties: { name: { type: 'string', minLength: 1 }, decoder: { type: 'string', minLength: 1 }, version: { type: 'string' } },
            },
          },
        },
        host: { oneOf: [{ $ref: '#/$defs/hostRef' }, { type: 'null' }] },
        accel: {
          type: 'object',
          required: ['used'],
          additionalProperties: false,
          properties: { used: { enum: ['kvm', 'tcg', 'hvf', 'whpx', 'none'] }, requested: { enum: ['auto', 'kvm', 'tcg', 'hvf', 'whpx'] }, reason: { type: 'string' } },
        },
        seed: { type: 'integer', minimum: 0, maximum: 4294967295 },
        repeat: { type: 'integer', minimum: 1 },
        status: { enum: [...JOB_STATUSES] },
        expectedStatus: { const: 'failed' },
        error: SHORT_TEXT,
        startedAt: ISO_TIME,
        endedAt: ISO_TIME,
        durationMs: MS,
        attempts: {
          type: 'array',
          items: {
            type: 'object',
            required: ['host', 'attempt', 'startedAt', 'durationMs', 'outcome'],
            additionalProperties: false,
            properties: { host: { type: 'string' }, attempt: { type: 'integer', minimum: 1 }, startedAt: ISO_TIME, durationMs: MS, outcome: { enum: ['ok', 'infrastructure', 'error', 'cancelled', 'superseded'] }, error: SHORT_TEXT, speculative: { type: 'boolean' } },
          },
        },
        steps: {
          type: 'array',
          items: {
            type: 'object',
            required: ['index', 'kind', 'startedAt', 'durationMs', 'ok'],
            additionalProperties: false,
            properties: { index: COUNT, kind: { type: 'string', minLength: 1 }, args: { type: 'object' }, startedAt: ISO_TIME, durationMs: MS, ok: { type: 'boolean' }, error: SHORT_TEXT, allowFailure: { type: 'boolean' } },
          },
        },
        epochs: { type: 'array', items: { $ref: '#/$defs/epoch' } },
        timeline: { type: 'array', items: { $ref: '#/$defs/event' } },
        timelineDropped: COUNT,
        artifacts: {
          type: 'object',
          additionalProperties: false,
          properties: {
            serialLog: REL_PATH,
            timeline: REL_PATH,
            other: { type: 'array', items: { type: 'object', required: ['name', 'path'], additionalProperties: false, properties: { name: { type: 'string' }, path: REL_PATH } } },
          },
        },
      },
    },
    epoch: {
      type: 'object',
      required: ['index', 'base', 'top', 'verdict', 'expected', 'acceptable', 'changedBlocks', 'claimedBlocks', 'missedBlocks', 'extraBlocks', 'granularity', 'overReportRatio', 'claim', 'missed', 'missedRanges'],
      additionalProperties: false,
      properties: {
        index: COUNT,
        id: { type: 'string' },
        base: { type: 'string' },
        top: { type: 'string' },
        verdict: VERDICT,
        expected: { type: 'array', items: VERDICT, uniqueItems: true },
        acceptable: { type: 'boolean' },
        changedBlocks: COUNT,
        claimedBlocks: COUNT,
        missedBlocks: COUNT,
        extraBlocks: COUNT,
        excludedTruthBlocks: COUNT,
        granularity: { type: 'integer', minimum: 1 },
        truthGranularity: { type: 'integer', minimum: 1 },
        overReportRatio: { oneOf: [{ type: 'number', minimum: 0 }, { type: 'null' }] },
        claim: {
          type: 'object',
          required: ['state', 'reason'],
          additionalProperties: false,
          properties: { state: { enum: ['valid', 'lost'] }, reason: { type: ['string', 'null'] } },
        },
        missed: { type: 'array', items: { $ref: '#/$defs/range' }, maxItems: 16 },
        missedRanges: COUNT,
        map: {
          type: 'object',
          required: ['blocks', 'cells', 'blocksPerCell', 'missed', 'extra'],
          additionalProperties: false,
          properties: { blocks: COUNT, cells: { type: 'integer', minimum: 0, maximum: 512 }, blocksPerCell: { type: 'integer', minimum: 1 }, missed: MAP_STRING, extra: MAP_STRING, changed: MAP_STRING },
        },
        startedAt: ISO_TIME,
        verifiedAt: ISO_TIME,
        verifyMs: MS,
      },
    },
    event: {
      type: 'object',
      required: ['at', 'kind'],
      properties: { at: ISO_TIME, kind: { enum: ['qmp', 'guest', 'host', 'step', 'epoch', 'verdict', 'fault', 'note', 'phase'] } },
      oneOf: [
        { properties: { at: true, kind: { const: 'qmp' }, event: { type: 'string' }, data: { type: 'object' } }, required: ['event'], additionalProperties: false },
        { properties: { at: true, kind: { const: 'guest' }, command: SHORT_TEXT, exitCode: { type: ['integer', 'null'] }, durationMs: MS, stderr: SHORT_TEXT }, required: ['command', 'exitCode', 'durationMs'], additionalProperties: false },
        { properties: { at: true, kind: { const: 'host' }, command: SHORT_TEXT, exitCode: { type: ['integer', 'null'] }, durationMs: MS, stderr: SHORT_TEXT }, required: ['command', 'exitCode', 'durationMs'], additionalProperties: false },
        { properties: { at: true, kind: { const: 'step' }, step: COUNT, stepKind: { type: 'string' }, phase: { enum: ['begin', 'end'] }, ok: { type: 'boolean' } }, required: ['step', 'stepKind', 'phase'], additionalProperties: false },
        { properties: { at: true, kind: { const: 'epoch' }, epoch: COUNT, phase: { enum: ['begin', 'snapshot', 'verify'] } }, required: ['epoch', 'phase'], additionalProperties: false },
        { properties: { at: true, kind: { const: 'verdict' }, epoch: COUNT, verdict: VERDICT, acceptable: { type: 'boolean' } }, required: ['epoch', 'verdict', 'acceptable'], additionalProperties: false },
        { properties: { at: true, kind: { const: 'fault' }, fault: { type: 'string' }, detail: SHORT_TEXT }, required: ['fault'], additionalProperties: false },
        { properties: { at: true, kind: { const: 'note' }, message: SHORT_TEXT }, required: ['message'], additionalProperties: false },
        { properties: { at: true, kind: { const: 'phase' }, phase: { type: 'string', pattern: '^[a-z][a-z-]*$' }, uptimeS: { type: 'number', minimum: 0 } }, required: ['phase', 'uptimeS'], additionalProperties: false },
      ],
    },
    verdictCounts: {
      type: 'object',
      required: ['EXACT', 'SUPERSET', 'RESYNC', 'MISSED'],
      additionalProperties: false,
      properties: { EXACT: COUNT, SUPERSET: COUNT, RESYNC: COUNT, MISSED: COUNT },
    },
    totals: {
      type: 'object',
      required: ['jobs', 'passed', 'failed', 'infraErrors', 'epochs', 'verdicts', 'unacceptable', 'unexpectedMissed', 'expectedFailures', 'unexpectedPasses'],
      additionalProperties: false,
      properties: { jobs: COUNT, passed: COUNT, failed: COUNT, infraErrors: COUNT, epochs: COUNT, verdicts: { $ref: '#/$defs/verdictCounts' }, unacceptable: COUNT, unexpectedMissed: COUNT, expectedFailures: COUNT, unexpectedPasses: COUNT },
    },
  },
} as const;
