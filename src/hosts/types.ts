/** Host inventory types (the shape of `harness/hosts.*.yaml`, see inventory-schema.ts). */

interface HostSpecBase {
  /** Unique name; jobs and reports refer to hosts by it. */
  name: string;
  /** Jobs that may run at the same time on this host. */
  slots: number;
  /** Capabilities a job can require (`kvm`, `windows-guests`, …). */
  tags: string[];
}

export interface LocalHostSpec extends HostSpecBase {
  type: 'local';
  /** Where job folders and the image cache live. @default `<tmpdir>/cbt-harness` */
  workdir: string;
}

export interface SshHostSpec extends HostSpecBase {
  type: 'ssh';
  address: string;
  /** @default 22 */
  port: number;
  /** @default 'root' */
  user: string;
  /** Private key file (`~` expands to the home folder). */
  identity: string;
  /** Pinned host key fingerprints (`SHA256:…`); a host presenting another key is refused. */
  hostKey: string[];
  /** @default '/var/lib/cbt-harness' */
  workdir: string;
  /** Give up connecting after this long. @default 20000 */
  connectTimeoutMs: number;
}

export type DockerConnection =
  | { socketPath: string }
  | { protocol: 'http' | 'https'; host: string; port: number; ca?: string; cert?: string; key?: string }
  | { protocol: 'ssh'; host: string; port: number; username: string; identity?: string; hostKey?: string[] };

export interface DockerHostSpec extends HostSpecBase {
  type: 'docker';
  docker: DockerConnection;
  /** @default 'cbt-harness-worker:latest' */
  image: string;
  /** Docker volume holding staged guest images, shared by the job containers. @default 'cbt-harness-cache' */
  cacheVolume: string;
  /** `auto` passes /dev/kvm when the engine has it. @default 'auto' */
  kvm: 'auto' | 'always' | 'never';
  /** Extra labels on every container. */
  labels: Record<string, string>;
}

export type HostSpec = LocalHostSpec | SshHostSpec | DockerHostSpec;
export type HostType = HostSpec['type'];

export interface Inventory {
  /** The file it was read from (for messages). */
  file: string;
  hosts: HostSpec[];
}
