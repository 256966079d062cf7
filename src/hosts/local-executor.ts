/** The machine the harness runs on: commands through execa, files by copy, TCP on loopback. */
import { join } from 'node:path';
import { REPO_ROOT } from './harness-bundle.ts';
import type { ExecutorOptions } from './executor.ts';
import { ShellExecutor } from './shell-executor.ts';
import { LocalTransport } from './local-transport.ts';
import type { Transport } from './transport.ts';
import type { LocalHostSpec } from './types.ts';

export class LocalExecutor extends ShellExecutor {
  declare readonly spec: LocalHostSpec;
  private readonly transport: LocalTransport;

  constructor(spec: LocalHostSpec, options: ExecutorOptions) {
    super(spec, options);
    this.transport = new LocalTransport(spec.name);
  }

  protected get workdir(): string {
    return this.spec.workdir;
  }

  protected async control(signal?: AbortSignal): Promise<Transport> {
    signal?.throwIfAborted();
    return this.transport;
  }

  protected async jobTransport(): Promise<{ transport: Transport; release: () => Promise<void> }> {
    return { transport: this.transport, release: async () => {} };
  }

  /** This checkout's launcher: no staging needed. */
  async harnessPath(): Promise<string> {
    return join(REPO_ROOT, 'bin/cbt-harness');
  }

  protected async closeTransports(): Promise<void> {}
}
