/** The `image build windows` commander piece (not yet registered in main.ts): usage errors and bad input before anything starts. */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { Command, CommanderError } from 'commander';
import { windowsImageBuildCommand } from '../../src/cli/image-build-windows.ts';
import { WindowsImageError } from '../../src/guest/index.ts';
import { tempDir } from '../helpers/tools.ts';

function cmd() {
  // As it will be registered: under the `image build` group.
  const c = new Command('build').addCommand(windowsImageBuildCommand());
  const quiet = (x: typeof c): void => {
    x.exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
    for (const s of x.commands) quiet(s);
  };
  quiet(c);
  return c;
}

test('missing required options and bad choices are commander usage errors', async (t) => {
  const e = await t.throwsAsync(cmd().parseAsync(['windows', '--iso', '/a.iso'], { from: 'user' }), { instanceOf: CommanderError });
  t.regex(e?.message ?? '', /--virtio-iso/);
  await t.throwsAsync(cmd().parseAsync(['windows', '--iso', '/a', '--virtio-iso', '/b', '--driver', '/c', '--win11-checks', 'maybe'], { from: 'user' }), { instanceOf: CommanderError, message: /maybe/ });
  await t.throwsAsync(cmd().parseAsync(['windows', '--iso', '/a', '--virtio-iso', '/b', '--driver', '/c', '--memory', 'lots'], { from: 'user' }), { instanceOf: CommanderError, message: /--memory must be a positive integer/ });
});

test('a missing ISO is a WindowsImageError naming it, after the key pair was written to the output folder', async (t) => {
  const { dir, cleanup } = await tempDir('cbt-wincli-');
  t.teardown(cleanup);
  const out = join(dir, 'out');
  const e = await t.throwsAsync(cmd().parseAsync(['windows', '--iso', join(dir, 'nope.iso'), '--virtio-iso', join(dir, 'v.iso'), '--driver', dir, '--out', out], { from: 'user' }), { instanceOf: WindowsImageError });
  t.regex(e?.message ?? '', /`iso` .*nope\.iso/);
  t.regex(await readFile(join(out, 'harness_ed25519.pub'), 'utf8'), /^ssh-ed25519 /);
  t.is((await stat(join(out, 'harness_ed25519'))).mode & 0o777, 0o600);
});
