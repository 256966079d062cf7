/**
 * A plain SSH host: one control connection (facts, staging, sweeping) and one connection per
 * job (a lost job connection fails that job only). The harness is staged as a tarball (sources,
 * production node_modules, Node 24) under W/harness/<sha256>/, once per content hash.
 */
import { randomBytes } from 'node:crypto';
import { harnessBundle, type HarnessBundleOptions } from './harness-bundle.ts';
import { HostError, InfrastructureError } from './errors.ts';
import type { ExecutorOptions } from './executor.ts';
import { ShellExecutor } from './shell-executor.ts';
import { shq } from './shell.ts';
import { connectSsh, SshTransport } from './ssh-transport.ts';
import type { Transport } from './transport.ts';
import type { SshHostSpec } from './types.ts';

export class SshExecutor extends ShellExecutor {
  declare readonly spec: SshHostSpec;
  private controlConn: Promise<SshTransport> | null = null;
  private harness: Promise<string> | null = null;
  private readonly bundleOptions: HarnessBundleOptions;
  private readonly jobConns = new Set<SshTransport>();

  constructor(spec: SshHostSpec, options: ExecutorOptions & { bundle?: HarnessBundleOptions }) {
    super(spec, options);
    this.bundleOptions = options.bundle ?? {};
  }

  protected get workdir(): string {
    return this.spec.workdir;
  }

  protected control(signal?: AbortSignal): Promise<Transport> {
    // Reconnect when the previous control connection dropped.
    const current = this.controlConn;
    if (current) {
      return current.then((t) => {
        if (!t.client.closed) return t;
        if (this.controlConn === current) this.controlConn = null;
        return this.control(signal);
      });
    }
    const p = connectSsh(this.spec, signal).then((c) => new SshTransport(this.name, c));
    this.controlConn = p;
    p.catch(() => {
      if (this.controlConn === p) this.controlConn = null;
    });
    return p;
  }

  protected async jobTransport(_jobId: string, signal?: AbortSignal): Promise<{ transport: Transport; release: () => Promise<void> }> {
    const t = new SshTransport(this.name, await connectSsh(this.spec, signal));
    this.jobConns.add(t);
    return {
      transport: t,
      release: async () => {
        this.jobConns.delete(t);
        await t.close();
      },
    };
  }

  harnessPath(signal?: AbortSignal): Promise<string> {
    this.harness ??= this.stageHarness(signal);
    this.harness.catch(() => (this.harness = null));
    return this.harness;
  }

  private async stageHarness(signal?: AbortSignal): Promise<string> {
    const bundle = await harnessBundle({ ...this.bundleOptions, signal });
    const dir = `${this.workdir}/harness/${bundle.sha256}`;
    const bin = `${dir}/bin/cbt-harness`;
    const t = await this.control(signal);
    const state = await this.sh(`[ -e ${shq(dir)}/.complete ] && echo present; mkdir -p ${shq(this.workdir)}/harness/.tmp`, 'checking the staged harness', { transport: t, signal });
    if (state.trim() === 'present') return bin;
    const tmp = `${this.workdir}/harness/.tmp/${bundle.sha256}.${randomBytes(4).toString('hex')}`;
    this.log.debug('staging harness', { host: this.name, sha256: bundle.sha256.slice(0, 12), bytes: bundle.size });
    try {
      await t.upload(bundle.path, `${tmp}.tar.gz`, signal);
      await this.sh(
        `set -e; mkdir -p ${shq(tmp)}; echo "${bundle.sha256}  ${tmp}.tar.gz" | sha256sum -c --quiet -; tar -xzf ${shq(`${tmp}.tar.gz`)} --strip-components=1 -C ${shq(tmp)}; rm -f ${shq(`${tmp}.tar.gz`)}; : > ${shq(tmp)}/.complete; mv -T ${shq(tmp)} ${shq(dir)} 2>/dev/null || { rm -rf ${shq(tmp)}; [ -e ${shq(dir)}/.complete ]; }`,
        'unpacking the harness',
        { transport: t, signal },
      );
    } catch (error) {
      await t.run(`rm -rf ${shq(tmp)} ${shq(`${tmp}.tar.gz`)}`).catch(() => {});
      if (error instanceof HostError) throw error;
      throw new InfrastructureError(this.name, `staging the harness failed: ${(error as Error).message}`, { cause: error });
    }
    return bin;
  }

  protected async closeTransports(): Promise<void> {
    await Promise.allSettled([...this.jobConns].map((t) => t.close()));
    const c = this.controlConn;
    this.controlConn = null;
    if (c) await c.then((t) => t.close()).catch(() => {});
  }
}
