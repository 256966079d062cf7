/** `cbt-harness vm boot --json` and `image build linux-ref --json`, run as child processes of the real CLI. */
import test from 'ava';
import { execa } from 'execa';
import { CLI } from '../helpers/tools.ts';

async function entry(): Promise<string[]> {
  return [CLI];
}

async function runCli(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const [cmd, ...pre] = await entry();
  const r = await execa(cmd, [...pre, ...args], { reject: false, timeout: 280_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

test.serial('image build linux-ref --json: cached image with its manifest', async (t) => {
  const r = await runCli(['image', 'build', 'linux-ref', '--json']);
  t.is(r.exitCode, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as Record<string, unknown>;
  t.is(doc.name, 'linux-ref');
  t.regex(String(doc.key), /^[0-9a-f]{16}$/);
  t.regex(String(doc.kernelRelease), /^\d+\.\d+\.\d+-\d+-amd64$/);
  t.true(String(doc.dir).endsWith(`linux-ref-${String(doc.key)}`));
});

test.serial('vm boot --json: boots, SSH, uname -r, clean power-off', async (t) => {
  const r = await runCli(['vm', 'boot', '--guest', 'linux-ref', '--accel', 'tcg', '--json']);
  t.is(r.exitCode, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { accel: string; accelReason: string; bootToSshMs: number; kernel: string; shutdown: string };
  t.deepEqual(Object.keys(doc).sort(), ['accel', 'accelReason', 'bootToSshMs', 'kernel', 'shutdown']);
  t.is(doc.accel, 'tcg');
  t.is(doc.shutdown, 'clean');
  t.regex(doc.kernel, /^\d+\.\d+\.\d+-\d+-amd64$/);
  t.true(Number.isInteger(doc.bootToSshMs) && doc.bootToSshMs > 0);
});

test.serial('bad input exits 2 with a message', async (t) => {
  const r = await runCli(['vm', 'boot', '--guest', 'windows-11']);
  t.is(r.exitCode, 2);
  t.regex(r.stderr, /'windows-11' is invalid\. Allowed choices are linux-ref/);
  const r2 = await runCli(['vm', 'boot', '--accel', 'hvf']);
  t.is(r2.exitCode, 2);
  t.regex(r2.stderr, /Allowed choices are auto, kvm, tcg/);
});
