/** Host facts: the accel probe cache's newest answer becomes `kvm.probed` with its time and reason. */
import test from 'ava';
import { parseFacts } from '../../src/hosts/facts.ts';

const BASE = ['qemu=QEMU emulator version 7.2.15', 'qemuImg=qemu-img version 7.2.15', 'kvm=1', 'kvmAccess=1', 'df=/dev/sda1 100000000 1 90000000 1% /', 'cpus=2', 'kernel=Linux 6.1.0'];

test('the newest cached probe answer is the host fact', (t) => {
  const cache = JSON.stringify({ version: 1, entries: [
    { key: 'a', at: '2026-12-03T10:00:00.000Z', ok: false, reason: 'kvm probe: -cpu host: no userspace marker within 20000 ms', ms: 20000, identity: {} },
    { key: 'b', at: '2026-12-02T10:00:00.000Z', ok: true, reason: 'older', ms: 900, identity: {} },
  ] });
  const f = parseFacts('h', 'local', '/w', [...BASE, `accelCache=${cache}`].join('\n'));
  t.is(f.kvm.method, 'boot-probe');
  t.is(f.kvm.probed, 'tcg');
  t.is(f.kvm.probedAt, '2026-12-03T10:00:00.000Z');
  t.regex(f.kvm.probeReason ?? '', /no userspace marker/);
  t.true(f.usable);
});

for (const [name, value] of [['no cache file', ''], ['a file cut short', '{"version":1,"entries":[{"key"'], ['another version', '{"version":9,"entries":[]}'], ['an empty cache', '{"version":1,"entries":[]}']] as const) {
  test(`${name}: no probe fact, only the device file`, (t) => {
    const f = parseFacts('h', 'local', '/w', [...BASE, `accelCache=${value}`].join('\n'));
    t.is(f.kvm.method, 'device-file');
    t.is(f.kvm.probed, undefined);
    t.is(f.kvm.probedAt, undefined);
    t.true(f.kvm.device);
  });
}
