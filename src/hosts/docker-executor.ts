/**
 * A Docker engine as a host: one worker container per job (from the worker image, labelled with
 * the run id, /dev/kvm passed when present, removed when the job ends), plus one service
 * container per run for host-wide work (facts, staging). Guest images live in a named volume
 * mounted in every container: staged once per engine, read-only in job containers.
 */
import { randomBytes } from 'node:crypto';
import type Docker from 'dockerode';
import { describeDocker, dockerClient } from './docker-engine.ts';
import { DockerTransport, WORKER_HARNESS_DIR } from './docker-transport.ts';
import { InfrastructureError } from './errors.ts';
import type { ExecutorOptions, SweepOptions, SweepReport } from './executor.ts';
import { ShellExecutor } from './shell-executor.ts';
import { isLeaseLive, type RunLease } from './run-lease.ts';
import type { Transport } from './transport.ts';
import type { DockerHostSpec } from './types.ts';
import { HARNESS_LABEL } from './worker-image.ts';

/** The work folder inside worker containers. */
export const CONTAINER_WORKDIR = '/var/lib/cbt-harness';

export const LABEL_RUN = `${HARNESS_LABEL}.run`;
export const LABEL_JOB = `${HARNESS_LABEL}.job`;
export const LABEL_LEASE = `${HARNESS_LABEL}.lease`;

export class DockerExecutor extends ShellExecutor {
  declare readonly spec: DockerHostSpec;
  private client: Docker | null;
  private service: Promise<DockerTransport> | null = null;
  private serviceId: string | null = null;
  private kvm: boolean | null = null;

  private readonly tcp: 'tunnel' | 'address';
  /** Two executors of one run on one engine (two controllers, a test) must not clash on names. */
  private readonly instance = randomBytes(3).toString('hex');

  /**
   * @param options.tcp how `connectTcp` reaches a port in a job container. `tunnel`: to
   * 127.0.0.1:port inside the container through an exec running the worker's Node — works with
   * any engine, local or remote, and with services bound to loopback (QEMU's `hostfwd` and QMP
   * usually are). `address`: straight to the container's address — less overhead, but only for
   * a local engine and services listening on all interfaces. @default 'tunnel'
   */
  constructor(spec: DockerHostSpec, options: ExecutorOptions & { docker?: Docker; tcp?: 'tunnel' | 'address' }) {
    super(spec, options);
    this.client = options.docker ?? null;
    this.tcp = options.tcp ?? 'tunnel';
  }

  /** The engine client, made on first use (TLS files are read then: a missing one fails this host only). */
  get docker(): Docker {
    if (!this.client) {
      try {
        this.client = dockerClient(this.spec.docker, { timeoutMs: 120_000 });
      } catch (error) {
        throw new InfrastructureError(this.name, `cannot set up the engine connection ${describeDocker(this.spec.docker)}: ${(error as Error).message}`, { cause: error });
      }
    }
    return this.client;
  }

  protected get workdir(): string {
    return CONTAINER_WORKDIR;
  }

  private get engine(): string {
    return describeDocker(this.spec.docker);
  }

  private infra(what: string, error: unknown): InfrastructureError {
    return new InfrastructureError(this.name, `${what} (engine ${this.engine}): ${(error as Error).message}`, { cause: error });
  }

  private labels(extra: Record<string, string>): Record<string, string> {
    return { ...this.spec.labels, [HARNESS_LABEL]: 'worker', [LABEL_RUN]: this.runId, [LABEL_LEASE]: JSON.stringify(this.lease), ...extra };
  }

  /** Container names are unique per engine: run id, host name, role, and this executor's tag. */
  private containerName(role: string): string {
    return `cbt-${this.runId}-${this.name}-${role}-${this.instance}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 200);
  }

  private async checkEngine(signal?: AbortSignal): Promise<void> {
    const docker = this.docker;
    try {
      signal?.throwIfAborted();
      await docker.ping();
    } catch (error) {
      throw this.infra('engine unreachable', error);
    }
    try {
      await this.docker.getImage(this.spec.image).inspect();
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) {
        throw new InfrastructureError(this.name, `the engine ${this.engine} has no image ${this.spec.image}; build it there with \`cbt-harness image build worker\``);
      }
      throw this.infra(`cannot inspect image ${this.spec.image}`, error);
    }
    try {
      await this.docker.getVolume(this.spec.cacheVolume).inspect();
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 404) throw this.infra('cannot inspect the cache volume', error);
      await this.docker.createVolume({ Name: this.spec.cacheVolume, Labels: { [HARNESS_LABEL]: 'cache' } }).catch((e: unknown) => {
        throw this.infra(`cannot create volume ${this.spec.cacheVolume}`, e);
      });
    }
  }

  /**
   * Creates and starts a worker container. With kvm `auto`, /dev/kvm is asked for and, if the
   * engine's machine has none, the container is made without it (remembered for the run).
   */
  private async startContainer(role: string, extraLabels: Record<string, string>, readOnlyCache: boolean): Promise<DockerTransport> {
    const create = async (kvm: boolean) =>
      this.docker.createContainer({
        name: this.containerName(role),
        Image: this.spec.image,
        Cmd: ['sleep', 'infinity'],
        Labels: this.labels(extraLabels),
        WorkingDir: CONTAINER_WORKDIR,
        HostConfig: {
          Init: true,
          Mounts: [{ Type: 'volume', Source: this.spec.cacheVolume, Target: `${CONTAINER_WORKDIR}/images`, ReadOnly: readOnlyCache }],
          Devices: kvm ? [{ PathOnHost: '/dev/kvm', PathInContainer: '/dev/kvm', CgroupPermissions: 'rwm' }] : [],
        },
      });
    const wantKvm = this.spec.kvm === 'always' || (this.spec.kvm === 'auto' && this.kvm !== false);
    let container: Docker.Container;
    try {
      container = await create(wantKvm);
      await container.start().catch(async (error: unknown) => {
        await container.remove({ force: true }).catch(() => {});
        throw error;
      });
      if (wantKvm) this.kvm = true;
    } catch (error) {
      const message = (error as Error).message ?? '';
      if (wantKvm && this.spec.kvm === 'auto' && /\/dev\/kvm/.test(message)) {
        this.kvm = false;
        this.log.debug('engine has no /dev/kvm; containers run without it', { host: this.name });
        try {
          container = await create(false);
          await container.start();
        } catch (e) {
          throw this.infra(`cannot start a ${role} container`, e);
        }
      } else {
        throw this.infra(`cannot start a ${role} container from ${this.spec.image}`, error);
      }
    }
    return new DockerTransport({ hostName: this.name, docker: this.docker, containerId: container.id, directTcp: this.tcp === 'address' });
  }

  protected control(signal?: AbortSignal): Promise<Transport> {
    this.service ??= (async () => {
      await this.checkEngine(signal);
      const t = await this.startContainer('service', { [`${HARNESS_LABEL}.role`]: 'service' }, false);
      this.serviceId = t.containerId;
      return t;
    })();
    this.service.catch(() => (this.service = null));
    return this.service;
  }

  protected async jobTransport(jobId: string, signal?: AbortSignal): Promise<{ transport: Transport; release: () => Promise<void> }> {
    await this.control(signal);
    const t = await this.startContainer(jobId, { [LABEL_JOB]: jobId, [`${HARNESS_LABEL}.role`]: 'job' }, true);
    return {
      transport: t,
      release: async () => {
        await this.docker.getContainer(t.containerId).remove({ force: true }).catch((error: unknown) => {
          if ((error as { statusCode?: number }).statusCode !== 404) throw error;
        });
      },
    };
  }

  /** Does the engine pass /dev/kvm? null until a container was made. */
  get kvmPassed(): boolean | null {
    return this.kvm;
  }

  async harnessPath(): Promise<string> {
    return `${WORKER_HARNESS_DIR}/bin/cbt-harness`;
  }

  /** Containers with the harness label whose run is stale (crashed) are removed. */
  override async sweep(options: SweepOptions = {}): Promise<SweepReport> {
    const report: SweepReport = { host: this.name, staleRuns: [], killedPids: [], removedDirs: [], removedContainers: [] };
    let containers: Docker.ContainerInfo[];
    try {
      containers = await this.docker.listContainers({ all: true, filters: { label: [LABEL_RUN] } });
    } catch (error) {
      throw this.infra('cannot list containers', error);
    }
    const stale = new Set<string>();
    for (const c of containers) {
      const runId = c.Labels[LABEL_RUN];
      if (!runId || runId === this.runId || c.Labels[HARNESS_LABEL] === undefined) continue;
      let lease: Partial<RunLease> | null = null;
      try {
        lease = JSON.parse(c.Labels[LABEL_LEASE] ?? 'null') as Partial<RunLease> | null;
      } catch {
        lease = null;
      }
      // A lease naming another machine cannot be checked; its age decides (isLeaseLive).
      if (isLeaseLive(lease ?? { runId, startedAt: new Date(c.Created * 1000).toISOString(), controller: '?' }, { ...options, currentRunId: this.runId })) continue;
      stale.add(runId);
      try {
        await this.docker.getContainer(c.Id).remove({ force: true });
        report.removedContainers.push(c.Names[0]?.replace(/^\//, '') ?? c.Id);
      } catch (error) {
        if ((error as { statusCode?: number }).statusCode !== 404) throw this.infra(`cannot remove container ${c.Id.slice(0, 12)}`, error);
      }
    }
    report.staleRuns.push(...stale);
    // Half-done uploads in the shared cache volume.
    const t = await this.control(options.signal);
    await this.sh(`[ -d ${CONTAINER_WORKDIR}/images/.tmp ] && find ${CONTAINER_WORKDIR}/images/.tmp -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf {} + ; true`, 'removing stale uploads', { transport: t, signal: options.signal });
    return report;
  }

  /** Nothing to clean in a run folder: it lives in containers that are removed. */
  protected override async cleanupRunDir(): Promise<void> {}

  protected async closeTransports(): Promise<void> {
    const service = this.service;
    this.service = null;
    if (service) await service.catch(() => null);
    if (this.serviceId) {
      await this.docker.getContainer(this.serviceId).remove({ force: true }).catch((error: unknown) => {
        if ((error as { statusCode?: number }).statusCode !== 404) this.log.warn('cannot remove the service container', { host: this.name, error: (error as Error).message });
      });
      this.serviceId = null;
    }
  }
}
