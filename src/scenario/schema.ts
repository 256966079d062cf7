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
const spaceRef = { type: 'string', pattern: '^[a-z0-9][a-z0-9-]*$', description: 'a disk id, or a volume id `<disk>p<n>` (the n-th volume of that disk, raw bytes)' };
const volumeRef = { type: 'string', pattern: '^[a-z0-9][a-z0-9-]*p[1-9][0-9]*$', description: 'a volume id `<disk>p<n>`: the n-th volume declared under that disk' };

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
  'files',
  'resize',
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
    trackerOptions: { type: 'object', description: 'tracker setup options (src/trackers/); dm-era: { metadataFault: none|drop-writes, blockSize, variant: normal|late-attach }; cbtf-ref: { file (required, `<volume>:<path>`), tracked (required, a volume id), granularity, variant }; qemu-bitmap: { granularity }; cbtf: { checkpoint, epochIdPattern, volume (required), path (required), tracked }; a plugin: its own options plus checkpoint, epochIdPattern' },
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
          volumes: {
            type: 'array',
            minItems: 1,
            maxItems: 8,
            description: 'GPT volumes made by the guest on the first boot, in this order (partition 1, 2, …); none: the disk is one raw space',
            items: {
              type: 'object',
              additionalProperties: false,
              properties: {
                fs: { enum: ['ntfs', 'ext4', 'none'], description: 'ntfs (ntfs-3g over FUSE in linux-ref), ext4 (with its journal), none (raw; the default)' },
                size: { ...size, description: 'bytes of the volume; omitted on the last one: the rest of the disk' },
              },
            },
          },
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
          properties: { disk: spaceRef, count: { type: 'integer', minimum: 1, maximum: 1000000 }, size: sizeRange, seed: { type: 'integer', minimum: 0, maximum: 4294967295 }, align: size },
        },
        fio: {
          type: 'object',
          additionalProperties: false,
          required: ['disk'],
          properties: { disk: spaceRef, rw: { enum: ['randwrite', 'write', 'randrw'] }, bs: size, size, runtime: duration, seed: { type: 'integer', minimum: 0, maximum: 4294967295 } },
        },
        files: {
          type: 'object',
          additionalProperties: false,
          required: ['volume'],
          description: 'a seeded file-level workload on a mounted volume (ntfs or ext4)',
          properties: {
            volume: volumeRef,
            count: { type: 'integer', minimum: 1, maximum: 100000, description: 'operations (default 100)' },
            size: { ...sizeRange, description: 'file sizes: one size or lo..hi (default 4KiB..1MiB); a few files get the top of the range' },
            ops: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: ['create', 'overwrite', 'append', 'truncate', 'delete', 'rename'] }, description: 'operation kinds to mix (default: all)' },
            fsync: { enum: ['none', 'some', 'all'], description: 'fsync after file operations and of directories after create/delete/rename: none, some (seeded, about a third; the default), all' },
            seed: { type: 'integer', minimum: 0, maximum: 4294967295 },
          },
        },
        resize: {
          type: 'object',
          additionalProperties: false,
          required: ['disk', 'size'],
          description: 'grow a disk (QMP block_resize); the guest rescans it and grows its last volume (when declared without a size) and that file system',
          properties: { disk: diskRef, size: { ...size, description: 'the new size, larger than the current one' } },
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
