/** The accel probe cache document: parsing what others wrote, freshness, replacement, bounds. */
import test from 'ava';
import { ACCEL_CACHE_MAX_ENTRIES, emptyAccelCache, formatAge, lookupProbe, parseAccelCache, probeKey, storeProbe, type CachedProbe, type ProbeIdentity } from '../../src/vm/accel-cache.ts';

const identity = (version = 'QEMU emulator version 7.2.15'): ProbeIdentity => ({
  qemu: { path: '/usr/bin/qemu-system-x86_64', version },
  hostKernel: '6.1.0-57-amd64',
  kvm: { rdev: 2792, ino: 181 },
  files: [{ path: '/k', size: 10, mtimeMs: 1 }],
  append: 'console=ttyS0',
  marker: 'M',
  machine: 'q35',
  cpu: 'host',
  timeoutMs: 20000,
});

const entry = (at: string, id = identity()): CachedProbe => ({ key: probeKey(id), at, ok: false, reason: 'no userspace marker', ms: 20000, identity: id });

test('probeKey: the same identity gives the same key; any change of what the answer depends on gives another', (t) => {
  t.is(probeKey(identity()), probeKey(identity()));
  t.regex(probeKey(identity()), /^[0-9a-f]{32}$/);
  t.not(probeKey(identity()), probeKey(identity('QEMU emulator version 8.0.0')));
  t.not(probeKey(identity()), probeKey({ ...identity(), hostKernel: '6.1.0-58-amd64' }));
  t.not(probeKey(identity()), probeKey({ ...identity(), kvm: { rdev: 2792, ino: 182 } }));
  t.not(probeKey(identity()), probeKey({ ...identity(), files: [{ path: '/k', size: 11, mtimeMs: 1 }] }));
});

test('lookupProbe: fresh within the day, stale after it, never from the future', (t) => {
  const doc = storeProbe(emptyAccelCache(), entry('2026-12-03T10:00:00.000Z'));
  const key = probeKey(identity());
  const at = Date.parse('2026-12-03T10:00:00.000Z');
  t.truthy(lookupProbe(doc, key, at));
  t.truthy(lookupProbe(doc, key, at + 24 * 3600_000));
  t.is(lookupProbe(doc, key, at + 24 * 3600_000 + 1), null);
  t.is(lookupProbe(doc, key, at - 1), null, 'a clock set back does not make an entry fresh forever');
  t.is(lookupProbe(doc, 'other', at), null);
  t.truthy(lookupProbe(doc, key, at + 3600_000, 2 * 3600_000));
  t.is(lookupProbe(doc, key, at + 3 * 3600_000, 2 * 3600_000), null);
});

test('storeProbe: replaces the entry of the same key, newest first, bounded', (t) => {
  let doc = storeProbe(emptyAccelCache(), entry('2026-12-03T10:00:00.000Z'));
  doc = storeProbe(doc, entry('2026-12-03T11:00:00.000Z'));
  t.is(doc.entries.length, 1);
  t.is(doc.entries[0].at, '2026-12-03T11:00:00.000Z');
  for (let i = 0; i < ACCEL_CACHE_MAX_ENTRIES + 5; i++) doc = storeProbe(doc, entry(new Date(Date.parse('2026-12-04T00:00:00Z') + i * 1000).toISOString(), identity(`v${i}`)));
  t.is(doc.entries.length, ACCEL_CACHE_MAX_ENTRIES);
  t.is(doc.entries[0].identity.qemu.version, `v${ACCEL_CACHE_MAX_ENTRIES + 4}`);
  t.true(doc.entries.every((e, i) => i === 0 || Date.parse(doc.entries[i - 1].at) >= Date.parse(e.at)));
});

test('parseAccelCache: what it wrote reads back; anything else is an empty cache with the reason', (t) => {
  const doc = storeProbe(emptyAccelCache(), entry('2026-12-03T10:00:00.000Z'));
  t.deepEqual(parseAccelCache(JSON.stringify(doc)), { doc });
  for (const [text, why] of [
    ['', /not JSON/],
    ['{"version":1,"entries":[', /not JSON/],
    ['[]', /not an accel cache of version 1/],
    ['null', /not an accel cache/],
    ['{"version":2,"entries":[]}', /not an accel cache of version 1/],
    ['{"version":1,"entries":{}}', /not an accel cache/],
  ] as const) {
    const r = parseAccelCache(text);
    t.deepEqual(r.doc, emptyAccelCache(), text);
    t.regex(r.problem ?? '', why, text);
  }
  const mixed = parseAccelCache(JSON.stringify({ version: 1, entries: [doc.entries[0], { key: 'k', at: 'yesterday', ok: true, reason: '', ms: 1, identity: {} }, 7] }));
  t.is(mixed.doc.entries.length, 1);
  t.is(mixed.problem, '2 malformed entries dropped');
});

test('formatAge', (t) => {
  t.is(formatAge(0), '0 s');
  t.is(formatAge(41_400), '41 s');
  t.is(formatAge(60_000), '1 min');
  t.is(formatAge(3 * 3600_000 + 12 * 60_000), '3 h 12 min');
  t.is(formatAge(-5), '0 s');
});
