/** Internal snapshot table (qcow2.txt "Snapshots"). */
import type { BlockSource } from './block-source.ts';
import { Qcow2FormatError } from './errors.ts';
import { LIMITS, type Qcow2Header } from './header.ts';

export interface SnapshotInfo {
  /** Unique ID string ("1", "2", …). */
  id: string;
  name: string;
  l1TableOffset: number;
  l1Size: number;
  /** Virtual disk size as of the snapshot (falls back to the image size when not recorded). */
  virtualSize: number;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  /** Byte offset of the entry in the file. */
  entryOffset: number;
}

const dec = new TextDecoder();

export async function readSnapshots(src: BlockSource, h: Qcow2Header): Promise<{ snapshots: SnapshotInfo[]; tableEnd: number }> {
  const image = src.name;
  const out: SnapshotInfo[] = [];
  let off = h.snapshotsOffset;
  const fixed = Buffer.alloc(40);
  for (let i = 0; i < h.nbSnapshots; i++) {
    if (off + 40 > src.size) throw new Qcow2FormatError(`truncated: snapshot entry ${i} lies past the end of the file`, { image, offset: off });
    await src.read(fixed, off);
    const l1TableOffset = fixed.readBigUInt64BE(0);
    const l1Size = fixed.readUInt32BE(8);
    const idSize = fixed.readUInt16BE(12);
    const nameSize = fixed.readUInt16BE(14);
    const dateSec = fixed.readUInt32BE(16);
    const dateNsec = fixed.readUInt32BE(20);
    const vmClockNsec = fixed.readBigUInt64BE(24);
    const vmState32 = fixed.readUInt32BE(32);
    const extraSize = fixed.readUInt32BE(36);
    if (extraSize > LIMITS.maxSnapshotExtraData) {
      throw new Qcow2FormatError(`snapshot entry ${i} has ${extraSize} bytes of extra data (limit ${LIMITS.maxSnapshotExtraData})`, { image, offset: off + 36 });
    }
    const varLen = extraSize + idSize + nameSize;
    if (off + 40 + varLen > src.size) throw new Qcow2FormatError(`truncated: snapshot entry ${i} runs past the end of the file`, { image, offset: off });
    const v = Buffer.alloc(varLen);
    await src.read(v, off + 40);
    let vmStateSize = vmState32;
    let virtualSize = h.virtualSize;
    if (extraSize >= 8) {
      const big = v.readBigUInt64BE(0);
      vmStateSize = big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big);
    }
    if (extraSize >= 16) {
      const ds = v.readBigUInt64BE(8);
      if (ds > BigInt(Number.MAX_SAFE_INTEGER)) throw new Qcow2FormatError(`snapshot entry ${i} disk size ${ds} is out of range`, { image, offset: off + 48 });
      virtualSize = Number(ds);
    }
    if (l1TableOffset > BigInt(Number.MAX_SAFE_INTEGER) || Number(l1TableOffset) % h.clusterSize !== 0) {
      throw new Qcow2FormatError(`snapshot entry ${i} L1 table offset ${l1TableOffset} is not cluster aligned`, { image, offset: off });
    }
    if (l1Size * 8 > LIMITS.maxL1Bytes) {
      throw new Qcow2FormatError(`snapshot entry ${i} L1 size ${l1Size} exceeds QEMU's limit`, { image, offset: off + 8 });
    }
    const id = dec.decode(v.subarray(extraSize, extraSize + idSize));
    const name = dec.decode(v.subarray(extraSize + idSize, extraSize + idSize + nameSize));
    out.push({
      id,
      name,
      l1TableOffset: Number(l1TableOffset),
      l1Size,
      virtualSize,
      vmStateSize,
      dateSec,
      dateNsec,
      vmClockNsec,
      entryOffset: off,
    });
    off += Math.ceil((40 + varLen) / 8) * 8;
  }
  return { snapshots: out, tableEnd: off };
}
