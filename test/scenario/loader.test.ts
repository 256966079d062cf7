/** Scenario files: the published schema, good files, and errors that name file, line and field. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { ConfigError } from '../../src/config/index.ts';
import { parseScenario } from '../../src/scenario/loader.ts';
import { flattenSteps } from '../../src/scenario/types.ts';
import { PUBLISHED, render } from '../../scripts/write-schemas.ts';
import { ROOT } from '../helpers/tools.ts';

const GOOD = `name: hard-reset-during-writes
description: free text
guest: linux-ref
tracker: dm-era
trackerOptions: { metadataFault: drop-writes }
disks:
  - id: data0
    size: 2GiB
    bus: virtio-scsi
expect: [EXACT, SUPERSET]
steps:
  - checkpoint: {}
  - write: { disk: data0, count: 500, size: 4KiB..1MiB, seed: 1 }
  - fio: { disk: data0, rw: randwrite, bs: 4KiB, size: 256MiB, runtime: 10s }
  - reset: {}
  - powercut: {}
  - reboot: {}
  - shutdown: {}
  - start: {}
  - offline: { disk: data0 }
  - online: { disk: data0 }
  - disable: { disk: data0 }
  - enable: { disk: data0 }
  - unplug: { disk: data0, mode: eject }
  - plug: { disk: data0 }
  - powerbutton: {}
  - hibernate: {}
  - sleep: 2s
  - repeat:
      times: 3
      steps:
        - write: { disk: data0, count: 5, size: 64KiB }
        - reboot:
  - write: { disk: data0, count: 1, size: 4KiB }
    allowFailure: true
  - verify: { expect: [RESYNC] }
`;

test('the example of the issue loads, every step kind typed', (t) => {
  const s = parseScenario(GOOD, 'good.yaml');
  t.is(s.name, 'hard-reset-during-writes');
  t.deepEqual(s.disks, [{ id: 'data0', size: 2 * 1024 ** 3, bus: 'virtio-scsi', volumes: [] }]);
  t.deepEqual(s.trackerOptions, { metadataFault: 'drop-writes' });
  const w = s.steps[1];
  t.true(w.kind === 'write' && w.size.min === 4096 && w.size.max === 1024 * 1024 && w.count === 500 && w.seed === 1);
  const fio = s.steps[2];
  t.true(fio.kind === 'fio' && fio.runtimeMs === 10_000 && fio.bs === 4096 && fio.size === 256 * 1024 * 1024);
  t.is(s.steps[16].kind, 'sleep');
  t.true(s.steps[18].allowFailure);
  const v = s.steps.at(-1)!;
  t.true(v.kind === 'verify' && v.expect?.[0] === 'RESYNC');
  t.is([...flattenSteps(s.steps)].length, s.steps.length - 1 + 6);
  t.is(s.steps[3].source.line, 15);
  t.is(s.steps[3].source.field, 'steps[3]');
});

function errorOf(text: string): ConfigError {
  try {
    parseScenario(text, 'bad.yaml');
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

const base = (steps: string, extra = '') => `name: x\nguest: linux-ref\ntracker: dm-era\n${extra}disks:\n  - id: data0\n    size: 1GiB\nsteps:\n${steps}`;

test('errors name the file, line and field', (t) => {
  const cases: Array<[string, RegExp, number | undefined]> = [
    [base('  - write: { disk: data0, count: many, size: 4KiB }\n'), /^bad\.yaml:8:\d+: steps\[0\]\.write\.count: Expected `count` to be a positive integer, got `many` \(string\)/, 8],
    [base('  - wirte: { disk: data0 }\n'), /^bad\.yaml:8:\d+: steps\[0\]\.wirte: Unknown key `wirte`; allowed keys: checkpoint, write/, 8],
    [base('  - checkpoint: {}\n  - write: { disk: data1, count: 1, size: 4KiB }\n'), /^bad\.yaml:9:\d+: steps\[1\]\.write\.disk: Unknown disk `data1`; declared disks: data0/, 9],
    [base('  - reset: {}\n    reboot: {}\n'), /steps\[0\]: Expected one step kind per item, got `reset` and `reboot`/, 8],
    [base('  - write: { disk: data0, count: 1, size: 1MiB..4KiB }\n'), /steps\[0\]\.write\.size: Expected `size` to be a positive size or a range lo\.\.hi with lo <= hi/, 8],
    [base('  - sleep: soon\n'), /steps\[0\]\.sleep: Expected `sleep` to be a duration such as 500ms, 10s, 2m, got `soon`/, 8],
    [base('  - verify: { expect: [GOOD] }\n'), /steps\[0\]\.verify\.expect\[0\]: Expected `steps\[0\]\.verify\.expect\[0\]` to be one of `EXACT`, `SUPERSET`, `RESYNC`, `MISSED`, got `GOOD`/, 8],
    [base('  - unplug: { disk: data0, mode: yank }\n'), /steps\[0\]\.unplug\.mode: Expected `mode` to be one of `eject`, `surprise`/, 8],
    [base('  - reset: {}\n', 'colour: blue\n'), /^bad\.yaml:4:1: colour: Unknown key `colour`/, 4],
    [base('  - reset: {}\n', 'trackerOptions: { metadataFault: sometimes }\n'), /trackerOptions\.metadataFault: Expected `metadataFault` to be one of `none`, `drop-writes`/, 4],
    ['name: Bad_Name\nguest: g\ntracker: dm-era\ndisks: [{ id: d, size: 1GiB }]\nsteps: [reset: {}]\n', /^bad\.yaml:1:7: name: Expected `name` to be a unique name of lowercase letters, digits and dashes, got `Bad_Name`/, 1],
    ['name: x\nguest: g\ntracker: zfs\ndisks: [{ id: d, size: 1GiB }]\nsteps: [reset: {}]\n', /tracker: Unknown tracker `zfs`/, 3],
    ['name: x\nguest: g\ntracker: dm-era\ndisks: [{ id: d, size: 1MiB }]\nsteps: [reset: {}]\n', /disks\[0\]\.size: Expected `size` to be at least 64MiB/, 4],
    ['name: x\nguest: g\ntracker: dm-era\ndisks: [{ id: d, size: 1GiB }, { id: d, size: 1GiB }]\nsteps: [reset: {}]\n', /^bad\.yaml:4:\d+: disks\[1\]\.id: Duplicate disk id `d`/, 4],
    ['name: x\nname: y\n', /not valid YAML: Map keys must be unique/, 2],
    ['name: x\nguest: g\ntracker: dm-era\ndisks: [{ id: d, size: 1GiB }]\n', /Missing required key `steps`/, 1],
    [base('  - repeat: { times: 2, steps: [ { write: { disk: nope, count: 1, size: 4KiB } } ] }\n'), /steps\[0\]\.repeat\.steps\[0\]\.write\.disk: Unknown disk `nope`/, 8],
    [base('  - write: { disk: data0, count: 1, size: 4KiB, seed: 4294967296 }\n'), /steps\[0\]\.write\.seed: Expected `seed` to be .*4294967295/, 8],
    [base('  - reset: {}\n', 'seed: -1\n'), /^bad\.yaml:4:\d+: seed: Expected `seed` to be /, 4],
  ];
  for (const [text, re, line] of cases) {
    const e = errorOf(text);
    t.regex(e.message, re, text);
    t.is(e.file, 'bad.yaml');
    if (line !== undefined) t.is(e.line, line, e.message);
  }
});

test('the published scenarios/schema.json is current', (t) => {
  for (const [file, schema] of PUBLISHED) t.is(readFileSync(join(ROOT, file), 'utf8'), render(schema), `${file} is stale: run npm run schemas`);
});

const CBTF = `name: cbtf-ref-files
guest: linux-ref
tracker: cbtf-ref
trackerOptions: { file: 'data0p1:/cbt/cbt.bin', tracked: data0p2, granularity: 64KiB, variant: flush-before-fs }
disks:
  - id: data0
    size: 1GiB
    volumes: [{ fs: ntfs, size: 512MiB }, { fs: ext4 }]
  - { id: data1, size: 256MiB }
steps:
  - checkpoint: {}
  - files: { volume: data0p2, count: 200, size: 4KiB..4MiB, ops: [create, overwrite, delete], fsync: some }
  - write: { disk: data0p1, count: 3, size: 4KiB }
  - write: { disk: data1, count: 3, size: 4KiB }
  - resize: { disk: data0, size: 2GiB }
  - files: { volume: data0p1 }
  - reboot: {}
  - verify: {}
`;

test('volumes, files, resize and a volume as a write space', (t) => {
  const s = parseScenario(CBTF, 'cbtf.yaml');
  t.deepEqual(s.disks[0].volumes, [
    { id: 'data0p1', index: 1, fs: 'ntfs', size: 512 * 1024 ** 2 },
    { id: 'data0p2', index: 2, fs: 'ext4', size: null },
  ]);
  t.deepEqual(s.disks[1].volumes, []);
  const f = s.steps[1];
  t.true(f.kind === 'files' && f.disk === 'data0' && f.volume === 'data0p2' && f.count === 200 && f.size.min === 4096 && f.size.max === 4 * 1024 ** 2 && f.fsync === 'some');
  t.deepEqual(f.kind === 'files' ? f.ops : null, ['create', 'overwrite', 'delete']);
  const w = s.steps[2];
  t.true(w.kind === 'write' && w.disk === 'data0' && w.volume === 'data0p1');
  const w1 = s.steps[3];
  t.true(w1.kind === 'write' && w1.disk === 'data1' && w1.volume === null);
  const r = s.steps[4];
  t.true(r.kind === 'resize' && r.disk === 'data0' && r.size === 2 * 1024 ** 3);
  const d = s.steps[5];
  t.true(d.kind === 'files' && d.count === 100 && d.size.min === 4096 && d.size.max === 1024 * 1024 && d.fsync === 'some' && d.ops.length === 6);
});

test('volume, files, resize and cbtf-ref errors name file, line and field', (t) => {
  const vol = (volumes: string, steps = '  - reset: {}\n', tracker = 'tracker: dm-era\n') =>
    `name: x\nguest: linux-ref\n${tracker}disks:\n  - id: data0\n    size: 1GiB\n    volumes: ${volumes}\nsteps:\n${steps}`;
  const cbtf = (opts: string, volumes = '[{ fs: ntfs, size: 64MiB }, { fs: ext4 }]') => vol(volumes, '  - reset: {}\n', `tracker: cbtf-ref\ntrackerOptions: ${opts}\n`);
  const cases: Array<[string, RegExp]> = [
    [vol('[{ fs: ntfs }, { fs: ext4 }]'), /volumes\[0\]: Only the last volume may omit `size`/],
    [vol('[{ fs: ntfs, size: 1000KiB }]'), /volumes\[0\]\.size: Expected a volume `size` of at least 1MiB, in whole MiB/],
    [vol('[{ fs: ntfs, size: 900MiB }, { fs: ext4, size: 200MiB }]'), /volumes\[1\]\.size: The volumes of data0 need \d+ bytes with the GPT; the disk has 1073741824/],
    [vol('[{ fs: ntfs, size: 4MiB }]'), /ntfs needs at least 8MiB/],
    [vol('[{ fs: btrfs }]'), /volumes\[0\]\.fs: Expected `fs` to be one of `ntfs`, `ext4`, `none`/],
    [vol('[{ fs: none }]', '  - files: { volume: data0p1 }\n'), /steps\[0\]\.files\.volume: Volume `data0p1` has no file system \(fs: none\)/],
    [vol('[{ fs: ext4 }]', '  - files: { volume: data0p2 }\n'), /steps\[0\]\.files\.volume: Unknown volume `data0p2`; declared volumes: data0p1/],
    [vol('[{ fs: ext4 }]', '  - files: { volume: data0p1, ops: [scribble] }\n'), /files\.ops\[0\]: Expected .* to be one of `create`, `overwrite`/],
    [vol('[{ fs: ext4 }]', '  - resize: { disk: data0, size: 512MiB }\n'), /steps\[0\]: resize of data0 to 536870912 bytes does not grow it \(it has 1073741824 by then\)/],
    [vol('[{ fs: ext4 }]', '  - repeat: { times: 2, steps: [ { resize: { disk: data0, size: 2GiB } } ] }\n'), /resize of data0 to 2147483648 bytes does not grow it \(it has 2147483648 by then\)/],
    [vol('[{ fs: ext4 }]', '  - write: { disk: data0p3, count: 1, size: 4KiB }\n'), /steps\[0\]\.write\.disk: Unknown disk `data0p3`/],
    [cbtf("{ file: 'data0p2:/cbt.bin', tracked: data0p2 }"), /trackerOptions: cbtf-ref: the file's volume `data0p2` must be ntfs \(it is ext4\)/],
    [cbtf("{ file: 'data0p3:/cbt.bin', tracked: data0p2 }"), /the file's volume `data0p3` is not declared/],
    [cbtf("{ file: 'data0p1:/cbt.bin', tracked: data1p1 }"), /the tracked volume `data1p1` is not declared/],
    [cbtf("{ file: 'data0p1:cbt.bin', tracked: data0p2 }"), /trackerOptions\.file: Expected `file` to be `<volume>:<path>`/],
    [cbtf("{ file: 'data0p1:/a/../b', tracked: data0p2 }"), /trackerOptions\.file: Expected `file`/],
    [cbtf("{ file: 'data0p1:/cbt.bin', tracked: data0p2, granularity: 32MiB }"), /trackerOptions\.granularity: Expected `granularity` to be a power of two from 4KiB to 16MiB/],
    [cbtf("{ file: 'data0p1:/cbt.bin', tracked: data0p2, variant: sloppy }"), /trackerOptions\.variant: Expected `variant` to be one of `normal`, `flush-before-fs`, `stale-clean`/],
    [cbtf("{ tracked: data0p2 }"), /trackerOptions: Tracker cbtf-ref needs the option `file`/],
  ];
  for (const [text, re] of cases) {
    const e = errorOf(text);
    t.regex(e.message, re, text);
    t.is(e.file, 'bad.yaml');
  }
});
