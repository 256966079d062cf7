/**
 * Minimal raw QMP over a unix socket for test fixtures only (the harness's real client lives in
 * src/qmp/). Builds qcow2 images with persistent dirty bitmaps using a real QEMU and no guest:
 * `-machine none`, blockdev-add, block-dirty-bitmap-add, writes via HMP qemu-io, then quit or kill.
 */
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';

class RawQmp {
  #sock: Socket;
  #buf = '';
  #waiters: Array<(v: Record<string, unknown>) => void> = [];

  constructor(sock: Socket) {
    this.#sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.#buf += d;
      let i: number;
      while ((i = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, i).trim();
        this.#buf = this.#buf.slice(i + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) continue;
        this.#waiters.shift()?.(msg);
      }
    });
  }

  next(): Promise<Record<string, unknown>> {
    return new Promise((res) => this.#waiters.push(res));
  }

  async cmd(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    const p = this.next();
    this.#sock.write(`${JSON.stringify(args ? { execute, arguments: args } : { execute })}\n`);
    const r = await p;
    if ('error' in r) throw new Error(`QMP ${execute}: ${JSON.stringify(r.error)}`);
    return r.return;
  }

  close(): void {
    this.#sock.destroy();
  }
}

export interface BitmapFixture {
  name: string;
  granularity: number;
  persistent?: boolean;
  disabled?: boolean;
}

/**
 * Open `image` in a guest-less QEMU, add bitmaps, run qemu-io commands through HMP, then
 * `quit` (bitmaps stored cleanly) or SIGKILL (bitmaps left in_use).
 */
export async function withBitmaps(image: string, dir: string, bitmaps: BitmapFixture[], ioCommands: string[], end: 'quit' | 'kill'): Promise<void> {
  const sockPath = join(dir, `qmp-${process.pid}-${Date.now()}.sock`);
  const qemu = execa('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-qmp', `unix:${sockPath},server=on,wait=off`], { reject: false });
  try {
    let sock: Socket | null = null;
    for (let i = 0; i < 200 && !sock; i++) {
      sock = await new Promise<Socket | null>((res) => {
        const s = createConnection(sockPath);
        s.once('connect', () => res(s));
        s.once('error', () => res(null));
      });
      if (!sock) await sleep(50);
    }
    if (!sock) throw new Error('QEMU QMP socket never appeared');
    const q = new RawQmp(sock);
    await q.next(); // greeting
    await q.cmd('qmp_capabilities');
    await q.cmd('blockdev-add', { driver: 'qcow2', 'node-name': 'n0', file: { driver: 'file', filename: image } });
    for (const b of bitmaps) {
      await q.cmd('block-dirty-bitmap-add', { node: 'n0', name: b.name, granularity: b.granularity, persistent: b.persistent ?? true, disabled: b.disabled ?? false });
    }
    for (const c of ioCommands) {
      const out = await q.cmd('human-monitor-command', { 'command-line': `qemu-io n0 "${c}"` });
      if (typeof out === 'string' && /error|fail/i.test(out)) throw new Error(`qemu-io ${c}: ${out}`);
    }
    if (end === 'quit') {
      await q.cmd('quit').catch(() => {});
    } else {
      qemu.kill('SIGKILL');
    }
    q.close();
    await qemu;
  } finally {
    qemu.kill('SIGKILL');
    await qemu;
  }
}
