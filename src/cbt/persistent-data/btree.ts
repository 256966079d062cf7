/**
 * Read-only walk of a persistent-data B-tree (drivers/md/persistent-data/dm-btree.c,
 * dm-btree-internal.h, dm-btree-spine.c; userspace view in thin-provisioning-tools
 * persistent-data/data-structures/btree.h and btree_node_checker.cc).
 *
 * A node is one 4 KiB block:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | csum: `dm_bm_checksum` of bytes [4, 4096) with salt `BTREE_CSUM_XOR` (121107) |
 * | 4 | 4 | flags: 1 = INTERNAL_NODE, 2 = LEAF_NODE |
 * | 8 | 8 | blocknr: the block the node lives in |
 * | 16 | 4 | nr_entries |
 * | 20 | 4 | max_entries (capacity; keys and values arrays are sized by it) |
 * | 24 | 4 | value_size (8 in internal nodes: the child's block number) |
 * | 28 | 4 | padding |
 * | 32 | 8 × max_entries | keys (le64, ascending) |
 * | 32 + 8 × max_entries | value_size × max_entries | values |
 *
 * In an internal node, key i is the lowest key of child i's subtree. All leaves are at one depth.
 * The walk checks what the kernel's `node_check` checks (block number, checksum, capacity fits the
 * block, nr_entries ≤ max_entries, a node kind) plus what a lookup relies on and the userspace
 * checker verifies: keys strictly ascending within and across nodes, each child's keys inside its
 * parent's key range, leaves at one depth, value size as the tree's owner expects. Depth is
 * bounded and every node may be reached once, so a pointer loop is a typed error, not a hang.
 */
import { MetadataCorruptError, type CorruptionSite } from './errors.ts';
import { blockChecksum, SALT } from './checksum.ts';
import { METADATA_BLOCK_SIZE, type MetadataBlockReader } from './block-reader.ts';

const NODE_HEADER_SIZE = 32;
const INTERNAL_NODE = 1;
const LEAF_NODE = 2;

/**
 * Deepest tree accepted. Non-root nodes the kernel writes hold at least a third of their capacity
 * (≥ 84 entries of 252 for 8-byte values), so 2^32 keys fit in 6 levels; 16 leaves a wide margin.
 */
export const MAX_BTREE_DEPTH = 16;

/** A little-endian u64 as a number, or a corruption error when it exceeds `max`. */
export function readU64(view: DataView, offset: number, max: number, site: CorruptionSite, what: string): number {
  const lo = view.getUint32(offset, true);
  const hi = view.getUint32(offset + 4, true);
  const v = hi * 0x1_0000_0000 + lo;
  if (v > max) throw new MetadataCorruptError(site, `${what} ${hi >= 0x200000 ? `0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}` : v} exceeds ${max}`);
  return v;
}

export class BtreeNode {
  readonly location: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly leaf: boolean;
  readonly nrEntries: number;
  readonly maxEntries: number;
  readonly valueSize: number;
  readonly #site: CorruptionSite;
  readonly #maxKey: number;

  /** Validates the block as a node (see the module comment); `leafValueSize` is the tree's value size. */
  constructor(bytes: Uint8Array, location: number, site: CorruptionSite, leafValueSize: number, maxKey: number) {
    const s = { structure: site.structure, block: location };
    this.#site = s;
    this.#maxKey = maxKey;
    this.location = location;
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const v = this.view;
    const blocknr = v.getUint32(8, true) + v.getUint32(12, true) * 0x1_0000_0000;
    if (blocknr !== location) throw new MetadataCorruptError(s, `B-tree node records block number ${blocknr} (misdirected or stale write)`);
    const stored = v.getUint32(0, true);
    const computed = blockChecksum(bytes, SALT.btreeNode);
    if (stored !== computed) throw new MetadataCorruptError(s, `B-tree node checksum mismatch (stored 0x${hex(stored)}, computed 0x${hex(computed)})`);
    const flags = v.getUint32(4, true);
    if (flags !== INTERNAL_NODE && flags !== LEAF_NODE) throw new MetadataCorruptError(s, `B-tree node flags 0x${hex(flags)} are neither internal (1) nor leaf (2)`);
    this.leaf = flags === LEAF_NODE;
    this.nrEntries = v.getUint32(16, true);
    this.maxEntries = v.getUint32(20, true);
    this.valueSize = v.getUint32(24, true);
    const wantValueSize = this.leaf ? leafValueSize : 8;
    if (this.valueSize !== wantValueSize) {
      throw new MetadataCorruptError(s, `${this.leaf ? 'leaf' : 'internal'} node value size ${this.valueSize}, expected ${wantValueSize} (not the tree its owner expects)`);
    }
    if (NODE_HEADER_SIZE + (8 + this.valueSize) * this.maxEntries > METADATA_BLOCK_SIZE) {
      throw new MetadataCorruptError(s, `max_entries ${this.maxEntries} of ${this.valueSize}-byte values does not fit in a ${METADATA_BLOCK_SIZE}-byte node`);
    }
    if (this.nrEntries > this.maxEntries) throw new MetadataCorruptError(s, `nr_entries ${this.nrEntries} exceeds max_entries ${this.maxEntries}`);
  }

  key(i: number): number {
    return readU64(this.view, NODE_HEADER_SIZE + 8 * i, this.#maxKey, this.#site, `key ${i}`);
  }

  /** Byte offset of value i within `bytes`. */
  valueOffset(i: number): number {
    return NODE_HEADER_SIZE + 8 * this.maxEntries + this.valueSize * i;
  }

  /** Value i of an internal node: the child's block number. */
  child(i: number): number {
    return readU64(this.view, this.valueOffset(i), Number.MAX_SAFE_INTEGER, this.#site, `child pointer ${i}`);
  }
}

export interface BtreeWalkOptions {
  /** Shown in errors: which tree this is ("writeset tree", "era array"). */
  structure: string;
  /** Size of a leaf value in bytes. */
  valueSize: number;
  /** Largest key the owner can store (e.g. 2^32 - 1 for a u32 era or array index). */
  maxKey: number;
  /** @default MAX_BTREE_DEPTH */
  maxDepth?: number;
}

interface Frame {
  node: BtreeNode;
  next: number;
  /** Keys of this subtree lie in [lo, hi). */
  lo: number;
  hi: number;
  depth: number;
}

/**
 * The leaves of the tree rooted at `root`, in key order, each validated. Lazy: holds one node per
 * level, so a caller can stream a large tree.
 */
export async function* btreeLeaves(reader: MetadataBlockReader, root: number, opts: BtreeWalkOptions): AsyncGenerator<BtreeNode> {
  const maxDepth = opts.maxDepth ?? MAX_BTREE_DEPTH;
  const site: CorruptionSite = { structure: opts.structure };
  const visited = new Set<number>();
  let leafDepth = -1;
  let lastKey = -1;

  const load = async (block: number, depth: number, lo: number, hi: number, parent: number | undefined): Promise<Frame> => {
    const from = parent === undefined ? 'the root pointer' : `node ${parent}`;
    if (visited.has(block)) throw new MetadataCorruptError({ structure: opts.structure, block }, `reached twice (from ${from}): the tree has a loop or a shared node`);
    if (depth >= maxDepth) throw new MetadataCorruptError({ structure: opts.structure, block }, `deeper than ${maxDepth} levels`);
    visited.add(block);
    const bytes = await reader.read(block, { structure: opts.structure, block: parent });
    const node = new BtreeNode(bytes, block, site, opts.valueSize, opts.maxKey);
    const s = { structure: opts.structure, block };
    let prev = -1;
    for (let i = 0; i < node.nrEntries; i++) {
      const k = node.key(i);
      if (k <= prev) throw new MetadataCorruptError(s, `keys out of order: key ${i} (${k}) after ${prev}`);
      if (k < lo || k >= hi) throw new MetadataCorruptError(s, `key ${k} lies outside the range [${lo}, ${hi === Infinity ? '∞' : hi}) its parent gives it`);
      prev = k;
    }
    if (node.leaf) {
      if (leafDepth === -1) leafDepth = depth;
      else if (depth !== leafDepth) throw new MetadataCorruptError(s, `leaf at depth ${depth}, other leaves at depth ${leafDepth}`);
      if (node.nrEntries > 0) {
        const first = node.key(0);
        if (first <= lastKey) throw new MetadataCorruptError(s, `first key ${first} does not follow the previous leaf's last key ${lastKey}`);
        lastKey = node.key(node.nrEntries - 1);
      }
    } else {
      if (node.nrEntries === 0) throw new MetadataCorruptError(s, 'internal node with no entries');
      // The kernel keeps a child's first key equal to its parent's key for it; a lookup still works
      // when it is larger, so only a key outside the parent's range (checked above) is fatal.
      if (leafDepth !== -1 && depth >= leafDepth) throw new MetadataCorruptError(s, `internal node at depth ${depth}, where leaves are`);
    }
    return { node, next: 0, lo, hi, depth };
  };

  const stack: Frame[] = [await load(root, 0, 0, Infinity, undefined)];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.node.leaf) {
      stack.pop();
      yield top.node;
      continue;
    }
    if (top.next >= top.node.nrEntries) {
      stack.pop();
      continue;
    }
    const i = top.next++;
    const lo = top.node.key(i);
    const hi = i + 1 < top.node.nrEntries ? top.node.key(i + 1) : top.hi;
    stack.push(await load(top.node.child(i), top.depth + 1, lo, hi, top.node.location));
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
