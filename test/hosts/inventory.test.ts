import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { HOSTS_SCHEMA, InventoryError, loadInventory, parseInventory } from '../../src/hosts/index.ts';
import { ROOT } from '../helpers/tools.ts';
import { runHostsCli } from '../helpers/testbed-cli.ts';

const FP = 'SHA256:y18LtY7NuVFGqdnFAWfjqT9cSYNj51+cdRSKW9/RQfA';

function fails(text: string): InventoryError {
  try {
    parseInventory(text, 'hosts.test.yaml');
  } catch (error) {
    if (error instanceof InventoryError) return error;
    throw error;
  }
  throw new Error('expected an InventoryError');
}

test('the shipped default inventory is one local host with 2 slots', async (t) => {
  const inv = await loadInventory(join(ROOT, 'harness/hosts.local.yaml'));
  t.is(inv.hosts.length, 1);
  t.like(inv.hosts[0], { name: 'local', type: 'local', slots: 2, tags: [] });
});

test('the example inventory loads with defaults applied', async (t) => {
  const inv = await loadInventory(join(ROOT, 'harness/hosts.example.yaml'));
  t.deepEqual(inv.hosts.map((h) => h.type), ['local', 'ssh', 'docker', 'docker']);
  const ssh = inv.hosts[1];
  t.true(ssh.type === 'ssh' && ssh.port === 22 && ssh.user === 'root' && ssh.hostKey.length === 1 && ssh.connectTimeoutMs === 20000);
  const d1 = inv.hosts[2];
  t.true(d1.type === 'docker' && d1.cacheVolume === 'cbt-harness-cache' && d1.kvm === 'auto' && 'socketPath' in d1.docker);
  const d2 = inv.hosts[3];
  t.true(d2.type === 'docker' && !('socketPath' in d2.docker) && d2.docker.protocol === 'https' && d2.docker.port === 2376);
});

test('the published JSON Schema is the one the loader uses', async (t) => {
  const published = JSON.parse(await readFile(join(ROOT, 'harness/schema/hosts.schema.json'), 'utf8')) as unknown;
  t.deepEqual(published, JSON.parse(JSON.stringify(HOSTS_SCHEMA)), 'regenerate with: cbt-harness hosts schema > harness/schema/hosts.schema.json');
});

test('a bad slot count names file, line, column, field and value', (t) => {
  const e = fails('hosts:\n  - name: local\n    type: local\n    slots: 0\n');
  t.is(e.file, 'hosts.test.yaml');
  t.is(e.line, 4);
  t.is(e.column, 12);
  t.is(e.field, 'hosts[0].slots');
  t.regex(e.message, /^hosts\.test\.yaml:4:12: hosts\[0\]\.slots: Expected `slots` to be a positive integer, got `0` \(number\)/);
});

test('wrong types, unknown keys and unknown host types are errors on their own lines', (t) => {
  let e = fails('hosts:\n  - name: a\n    type: local\n    slots: "two"\n');
  t.regex(e.message, /:4:12: .*Expected `slots` to be a positive integer, got `two` \(string\)/);
  e = fails(`hosts:\n  - name: a\n    type: ssh\n    address: h\n    identity: k\n    hostKey: ${FP}\n    slots: 1\n    colour: red\n`);
  t.is(e.line, 8);
  t.regex(e.message, /Unknown key `colour` \(host `a`\); allowed keys: .*address/);
  e = fails('hosts:\n  - name: a\n    type: sshh\n    slots: 1\n');
  t.is(e.line, 3);
  t.regex(e.message, /Expected `type` to be one of `local`, `ssh`, `docker`, got `sshh` \(string\)/);
  t.notRegex(e.message, /problems/, 'one message for one mistake');
});

test('every problem is listed at once, first line first', (t) => {
  const e = fails('hosts:\n  - name: a\n    type: ssh\n    slots: 2\n    address: x\n  - name: b\n    type: local\n    slots: -1\n');
  t.is(e.line, 2);
  t.regex(e.message, /3 problems/);
  t.regex(e.message, /Missing required key `identity` for a host of type ssh/);
  t.regex(e.message, /Missing required key `hostKey`/);
  t.regex(e.message, /:8:12: hosts\[1\]\.slots: Expected `slots` to be a positive integer, got `-1`/);
});

test('host keys must be OpenSSH SHA256 fingerprints; a list is accepted', (t) => {
  const e = fails('hosts:\n  - name: a\n    type: ssh\n    address: h\n    identity: k\n    hostKey: SHA256:abc\n    slots: 1\n');
  t.is(e.line, 6);
  t.regex(e.message, /hostKey.*fingerprint.*got `SHA256:abc`/);
  const inv = parseInventory(`hosts:\n  - name: a\n    type: ssh\n    address: h\n    identity: k\n    hostKey: [${FP}, ${FP.replace('y18', 'z18')}]\n    slots: 1\n`, 'f');
  t.deepEqual(inv.hosts[0].type === 'ssh' && inv.hosts[0].hostKey.length, 2);
});

test('duplicate names, duplicate keys and broken YAML are reported with lines', (t) => {
  let e = fails('hosts:\n  - name: a\n    type: local\n    slots: 1\n  - name: a\n    type: local\n    slots: 1\n');
  t.is(e.line, 5);
  t.regex(e.message, /Duplicate host name `a`/);
  e = fails('hosts:\n  - name: a\n    type: local\n    slots: 1\n    slots: 2\n');
  t.is(e.line, 5);
  t.regex(e.message, /not valid YAML/);
  e = fails('hosts: [\n');
  t.regex(e.message, /not valid YAML/);
  e = fails('');
  t.regex(e.message, /empty/);
});

test('docker connections: socket alone, tcp with protocol defaults, ssh needs a pinned key', (t) => {
  let e = fails('hosts:\n  - name: d\n    type: docker\n    slots: 1\n    docker: { socketPath: /run/docker.sock, port: 3 }\n');
  t.is(e.field, 'hosts[0].docker.port');
  t.regex(e.message, /cannot be combined with `socketPath`/);
  e = fails('hosts:\n  - name: d\n    type: docker\n    slots: 1\n    docker: { protocol: ssh, host: h, username: u }\n');
  t.regex(e.message, /hostKey.*protocol ssh/);
  const inv = parseInventory('hosts:\n  - name: d\n    type: docker\n    slots: 1\n    docker: { host: h }\n', 'f');
  const d = inv.hosts[0];
  t.true(d.type === 'docker' && !('socketPath' in d.docker) && d.docker.protocol === 'http' && d.docker.port === 2375);
});

test('CLI: hosts check on a bad inventory exits 2 naming file and line', async (t) => {
  const r = await runHostsCli(['hosts', 'check', '--hosts', join(ROOT, 'test/hosts/fixtures/bad-slots.yaml')]);
  t.is(r.exitCode, 2, r.stderr);
  t.regex(r.stderr, /bad-slots\.yaml:6:12: hosts\[1\]\.slots: Expected `slots` to be a positive integer, got `0` \(number\)/);
  t.is(r.stdout, '');
});

test('CLI: hosts schema prints the schema', async (t) => {
  const r = await runHostsCli(['hosts', 'schema']);
  t.is(r.exitCode, 0);
  t.deepEqual(JSON.parse(r.stdout), JSON.parse(JSON.stringify(HOSTS_SCHEMA)));
});
