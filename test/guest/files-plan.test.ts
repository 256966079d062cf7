/** The `files` step's plan: seeded, every op on a file that exists in the plan's own model, bounded bytes. */
import test from 'ava';
import { filePlanText, planFiles, type FilePlanOp, type FilePlanOptions } from '../../src/guest/files-plan.ts';
import { parsePhaseMarkers } from '../../src/guest/linux-ref.ts';
import { linuxRefSetupText } from '../../src/guest/linux-ref-setup.ts';

const base: FilePlanOptions = { seed: 7, count: 300, sizeMin: 4096, sizeMax: 4 << 20, ops: ['create', 'overwrite', 'append', 'truncate', 'delete', 'rename'], fsync: 'some', capacity: 64 << 20 };

/** Replays a plan against a model of the volume, failing on any op that addresses nothing. */
function replay(plan: readonly FilePlanOp[]): { files: Map<string, number>; dirs: Set<string>; peak: number; kinds: Set<string> } {
  const files = new Map<string, number>();
  const dirs = new Set<string>();
  const kinds = new Set<string>();
  let peak = 0;
  const live = () => [...files.values()].reduce((a, b) => a + b, 0);
  const needDir = (p: string) => {
    const d = p.slice(0, p.lastIndexOf('/'));
    if (!dirs.has(d)) throw new Error(`${p}: no directory ${d}`);
  };
  const needFile = (p: string) => {
    if (!files.has(p)) throw new Error(`no file ${p}`);
  };
  for (const o of plan) {
    kinds.add(o.op);
    switch (o.op) {
      case 'mkdir':
        if (o.path.includes('/')) needDir(o.path);
        dirs.add(o.path);
        break;
      case 'create':
        needDir(o.path);
        if (files.has(o.path)) throw new Error(`create over ${o.path}`);
        files.set(o.path, o.size);
        break;
      case 'overwrite':
        needFile(o.path);
        if (o.offset + o.length > files.get(o.path)! || o.length < 1) throw new Error(`overwrite past the end of ${o.path}`);
        break;
      case 'append':
        needFile(o.path);
        files.set(o.path, files.get(o.path)! + o.length);
        break;
      case 'truncate':
        needFile(o.path);
        if (o.size >= files.get(o.path)! && files.get(o.path)! > 0) throw new Error('truncate does not shrink');
        files.set(o.path, o.size);
        break;
      case 'delete':
        needFile(o.path);
        files.delete(o.path);
        break;
      case 'rename':
        needFile(o.from);
        needDir(o.to);
        if (files.has(o.to)) throw new Error(`rename over ${o.to}`);
        files.set(o.to, files.get(o.from)!);
        files.delete(o.from);
        break;
      case 'fsync':
        needFile(o.path);
        break;
      case 'dirsync':
        if (!dirs.has(o.path)) throw new Error(`dirsync of ${o.path}`);
        break;
    }
    peak = Math.max(peak, live());
  }
  return { files, dirs, peak, kinds };
}

test('the same seed gives the same plan; another seed another one', (t) => {
  t.deepEqual(planFiles(base), planFiles(base));
  t.notDeepEqual(planFiles(base), planFiles({ ...base, seed: 8 }));
});

test('every operation addresses what exists; live bytes stay under half the volume; all kinds appear', (t) => {
  for (let seed = 0; seed < 40; seed++) {
    const plan = planFiles({ ...base, seed, capacity: (16 + seed) << 20 });
    const r = replay(plan);
    t.true(r.peak <= ((16 + seed) << 20) / 2, `seed ${seed}: peak ${r.peak}`);
    for (const k of ['create', 'overwrite', 'append', 'truncate', 'delete', 'rename', 'fsync', 'dirsync']) t.true(r.kinds.has(k), `seed ${seed}: ${k}`);
    const primary = plan.filter((o) => !['mkdir', 'fsync', 'dirsync'].includes(o.op)).length;
    t.true(primary >= base.count && primary <= base.count * 1.2, `count file operations (${primary}), fsyncs and budget deletes on top`);
  }
});

test('fsync none/all; only the kinds asked for; many small files and a few large', (t) => {
  const none = planFiles({ ...base, fsync: 'none' });
  t.false(none.some((o) => o.op === 'fsync' || o.op === 'dirsync'));
  const all = planFiles({ ...base, fsync: 'all', ops: ['create'] });
  const creates = all.filter((o) => o.op === 'create');
  t.is(all.filter((o) => o.op === 'fsync').length, creates.length);
  t.true(all.every((o) => ['mkdir', 'create', 'fsync', 'dirsync', 'delete'].includes(o.op)), 'delete only to stay in budget');
  const sizes = planFiles({ ...base, ops: ['create'], capacity: 2 ** 40 }).flatMap((o) => (o.op === 'create' ? [o.size] : []));
  const small = sizes.filter((s) => s < 256 * 1024).length;
  const large = sizes.filter((s) => s >= 3 << 20).length;
  t.true(small > sizes.length / 2, `${small} of ${sizes.length} small`);
  t.true(large >= 5 && large < sizes.length / 5, `${large} large`);
  t.true(sizes.every((s) => s >= base.sizeMin && s <= base.sizeMax));
});

test('bad options are refused', (t) => {
  t.throws(() => planFiles({ ...base, count: 0 }), { message: /count/ });
  t.throws(() => planFiles({ ...base, sizeMin: 10, sizeMax: 5 }), { message: /sizeMin <= sizeMax/ });
  t.throws(() => planFiles({ ...base, capacity: 4096 }), { message: /capacity/ });
  t.throws(() => planFiles({ ...base, ops: [] }), { message: /at least one/ });
});

test('the plan text is one op per line as cbt-ctl files reads it', (t) => {
  const text = filePlanText([
    { op: 'mkdir', path: 'd' },
    { op: 'create', path: 'd/f', size: 10, pattern: 7 },
    { op: 'overwrite', path: 'd/f', offset: 2, length: 3, pattern: 9 },
    { op: 'append', path: 'd/f', length: 4, pattern: 1 },
    { op: 'truncate', path: 'd/f', size: 5 },
    { op: 'rename', from: 'd/f', to: 'd/g' },
    { op: 'fsync', path: 'd/g' },
    { op: 'dirsync', path: 'd' },
    { op: 'delete', path: 'd/g' },
  ]);
  t.is(text, 'mkdir d\ncreate d/f 10 7\noverwrite d/f 2 3 9\nappend d/f 4 1\ntruncate d/f 5\nrename d/f d/g\nfsync d/g\ndirsync d\ndelete d/g\n');
});

test('linux-ref set-up file and console phase markers', (t) => {
  t.is(
    linuxRefSetupText({ tracker: 'cbtf-ref', variant: 'flush-before-fs', volumes: [{ serial: 'data0', index: 1, fs: 'ntfs', size: 64 << 20 }, { serial: 'data0', index: 2, fs: 'ext4', size: null }], cbtf: { file: { serial: 'data0', index: 1, path: '/cbt/cbt.bin' }, tracked: { serial: 'data0', index: 2 }, blockBytes: 65536 } }),
    'CBT_TRACKER=cbtf-ref\nCBT_TRACKER_VARIANT=flush-before-fs\nCBT_VOLUMES="data0:1:ntfs:67108864 data0:2:ext4:0"\nCBT_CBTF_FILE="data0:1:/cbt/cbt.bin"\nCBT_CBTF_TRACKED="data0:2"\nCBT_CBTF_BLOCK=65536\n',
  );
  t.throws(() => linuxRefSetupText({ tracker: 'none', variant: 'normal', volumes: [], cbtf: { file: { serial: 'd', index: 1, path: '/a b' }, tracked: { serial: 'd', index: 1 }, blockBytes: 65536 } }), { message: /outside/ });
  t.throws(() => linuxRefSetupText({ tracker: 'none', variant: '$(reboot)', volumes: [] }), { message: /outside/ });
  t.throws(() => linuxRefSetupText({ tracker: 'cbtf-ref', variant: 'normal', volumes: [], cbtf: { file: { serial: 'd', index: 1, path: '/a' }, tracked: { serial: 'd', index: 1 }, blockBytes: 3000 } }), { message: /power of two/ });
  const console = 'boot\r\nCBT-PHASE pre-fs 12.50\r\nnoise CBT-PHASE fake 1\nCBT-PHASE fs-unmounted 13\nCBT-PHASE post-fs 13.25\nCBT-PHASE power-off 14.00\n';
  t.deepEqual(parsePhaseMarkers(console), [
    { phase: 'pre-fs', uptimeS: 12.5 },
    { phase: 'fs-unmounted', uptimeS: 13 },
    { phase: 'post-fs', uptimeS: 13.25 },
    { phase: 'power-off', uptimeS: 14 },
  ]);
});
