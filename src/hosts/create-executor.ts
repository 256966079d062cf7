/** An executor for an inventory host. */
import { DockerExecutor } from './docker-executor.ts';
import type { ExecutorOptions, HostExecutor } from './executor.ts';
import { LocalExecutor } from './local-executor.ts';
import { SshExecutor } from './ssh-executor.ts';
import type { HostSpec } from './types.ts';

export function createExecutor(spec: HostSpec, options: ExecutorOptions): HostExecutor {
  switch (spec.type) {
    case 'local':
      return new LocalExecutor(spec, options);
    case 'ssh':
      return new SshExecutor(spec, options);
    case 'docker':
      return new DockerExecutor(spec, options);
  }
}
