/**
 * The scenario file format (published as scenarios/schema.json; `npm run schemas` rewrites it
 * and a test checks the published copy is current).
 */
const SIZE = '\\d+(?:\\.\\d+)?\\s*(?:B|KiB|MiB|GiB|TiB)?';
const diskRef = { type: 'string', pattern: '^[a-z0-9][a-z0-9-]*$', description: 'a disk id declared under `disks`' };
const empty = { type: ['object', 'null'], additionalProperties: false, properties: {} };
const verdicts = { type: 'array', minItems: 1, uniqueItems: true, items: { enum: ['EXACT', 'SUPERSET', 'RESYNC', 'MISSED'] } };
const size = { type: ['string', 'integer'], pattern: `^\\s*${SIZE}\\s*$`, minimum: 0, description: 'a size such as 4096, 4KiB, 2GiB' };
const sizeRange = { type: ['string', 'integer'], pattern: `^\\s*${SIZE}\\s*(?:\\.\\.\\s*${SIZE}\\s*)?$`, minimum: 1, description: 'a size or a range such as 4KiB..1MiB' };
const duration = { type: 'string', pattern: '^\\s*\\d+(?:\\.\\d+)?\\s*(?:ms|s|m|h)\\s*$', description: 'a duration such as 500ms, 10s, 2m' };
const onDisk = { type: 'object', additionalProperties: false, required: ['disk'], properties: { disk: diskRef } };

export const STEP_KINDS = [
  'checkpoint',
  'write',
  'fio',
  'reset',
  'powercut',
  'reboot',
  'shutdown',
  'start',
  'offline',
  'online',
  'disable',
  'enable',
  'unplug',
  'plug',
  'powerbutton',
  'hibernate',
  'sleep',
  'verify',
  'repeat',
] as const;

export const SCENARIO_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://github.com/cbt-harness/cbt-harness/scenarios/schema.json',
  title: 'cbt-harness scenario',
  description: 'A guest, a tracker, disks, and steps of workloads, faults and verifications.',
  type: 'object',
  additionalProperties: false,
  required: ['name', 'guest', 'tracker', 'disks', 'steps'],
  properties: {
    name: { type: 'string', pattern: '^[a-z0-9]+(?:-[a-z0-9]+)*$', description: 'a unique name of lowercase letters, digits and dashes' },
    description: { type: 'string', description: 'free text: what the scenario checks and why' },
    guest: { type: 'string', minLength: 1, description: 'an entry of the image catalog (linux-ref, or a built Windows image)' },
    tracker: { type: 'string', minLength: 1, description: 'dm-era | qemu-bitmap | cbtf | a plugin path' },
    trackerOptions: { type: 'object', description: 'tracker setup options (src/trackers/); dm-era: { metadataFault: none|drop-writes, blockSize }; qemu-bitmap: { granularity }; cbtf: { checkpoint, epochIdPattern, volume (required), path (required), tracked }; a plugin: its own options plus checkpoint, epochIdPattern' },
    disks: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'size'],
        properties: {
          id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]*$', description: 'an id of lowercase letters, digits and dashes' },
          size,
          bus: { enum: ['virtio-blk', 'virtio-scsi', 'nvme'] },
        },
      },
    },
    expect: { ...verdicts, description: 'acceptable verdicts for every verify, unless a verify overrides them' },
    seed: { type: 'integer', minimum: 0, maximum: 4294967295, description: 'default seed of this scenario\'s jobs when the run has no --seed' },
    steps: { type: 'array', minItems: 1, items: { $ref: '#/definitions/step' } },
  },
  definitions: {
    step: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      description: 'one step kind (optionally with allowFailure)',
      properties: {
        checkpoint: { type: ['object', 'null'], additionalProperties: false, properties: { disk: diskRef } },
        write: {
          type: 'object',
          additionalProperties: false,
          required: ['disk', 'count', 'size'],
          properties: { disk: diskRef, count: { type: 'integer', minimum: 1, maximum: 1000000 }, size: sizeRange, seed: { type: 'integer', minimum: 0, maximum: 4294967295 }, align: size },
        },
        fio: {
          type: 'object',
          additionalProperties: false,
          required: ['disk'],
          properties: { disk: diskRef, rw: { enum: ['randwrite', 'write', 'randrw'] }, bs: size, size, runtime: duration, seed: { type: 'integer', minimum: 0, maximum: 4294967295 } },
        },
        reset: empty,
        powercut: empty,
        reboot: empty,
        shutdown: empty,
        start: empty,
        offline: onDisk,
        online: onDisk,
        disable: onDisk,
        enable: onDisk,
        unplug: { type: 'object', additionalProperties: false, required: ['disk'], properties: { disk: diskRef, mode: { enum: ['eject', 'surprise'] }, timeout: duration } },
        plug: onDisk,
        powerbutton: empty,
        hibernate: empty,
        sleep: duration,
        verify: { type: ['object', 'null'], additionalProperties: false, properties: { expect: verdicts, disk: diskRef } },
        repeat: {
          type: 'object',
          additionalProperties: false,
          required: ['times', 'steps'],
          properties: { times: { type: 'integer', minimum: 1, maximum: 1000 }, steps: { type: 'array', minItems: 1, items: { $ref: '#/definitions/step' } } },
        },
        allowFailure: { type: 'boolean', description: 'a failure of this step is recorded but does not fail the scenario' },
      },
    },
  },
} as const;
