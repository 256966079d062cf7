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
  t.deepEqual(s.disks, [{ id: 'data0', size: 2 * 1024 ** 3, bus: 'virtio-scsi' }]);
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
