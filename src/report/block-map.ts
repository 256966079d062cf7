/** Compact maps of missed/extra/changed blocks across a volume, for drawing a strip per epoch. */
import { normalize } from '../verify/index.ts';
import { MAX_MAP_CELLS, type BlockMap, type BlockRange } from './run-record.ts';

const HEX = '0123456789abcdef';

/**
 * One hex digit per cell: 0 when the cell holds none of `runs`, else the share of its blocks they
 * cover in 15ths, rounded up (1 = at least one block, f = all).
 */
export function encodeCells(runs: readonly BlockRange[], blocks: number, blocksPerCell: number, cells: number): string {
  if (runs.length === 0 || blocks === 0) return '';
  const counts = new Float64Array(cells);
  for (const [first, count] of normalize([...runs])) {
    const end = Math.min(first + count, blocks);
    let b = Math.max(0, first);
    // Runs are disjoint and sorted: total work is O(runs + cells).
    while (b < end) {
      const cell = Math.floor(b / blocksPerCell);
      const cellEnd = Math.min((cell + 1) * blocksPerCell, end);
      counts[cell] += cellEnd - b;
      b = cellEnd;
    }
  }
  let out = '';
  let any = false;
  for (let c = 0; c < cells; c++) {
    const size = Math.min(blocksPerCell, blocks - c * blocksPerCell);
    const level = counts[c] === 0 ? 0 : Math.min(15, Math.max(1, Math.ceil((15 * counts[c]) / size)));
    if (level) any = true;
    out += HEX[level];
  }
  return any ? out : '';
}

export interface BlockMapInput {
  /** Claim blocks in the tracked volume. */
  blocks: number;
  missed: readonly BlockRange[];
  /** Claimed but unchanged blocks, when known. */
  extra?: readonly BlockRange[];
  /** Changed blocks (claim granularity), when known. */
  changed?: readonly BlockRange[];
  /** @default 256 (at most 512) */
  cells?: number;
}

export function blockMap(input: BlockMapInput): BlockMap {
  const blocks = Math.max(0, Math.floor(input.blocks));
  const want = Math.min(MAX_MAP_CELLS, Math.max(1, Math.floor(input.cells ?? 256)));
  const blocksPerCell = Math.max(1, Math.ceil(blocks / want));
  const cells = blocks === 0 ? 0 : Math.ceil(blocks / blocksPerCell);
  const map: BlockMap = {
    blocks,
    cells,
    blocksPerCell,
    missed: encodeCells(input.missed, blocks, blocksPerCell, cells),
    extra: input.extra ? encodeCells(input.extra, blocks, blocksPerCell, cells) : '',
  };
  if (input.changed) map.changed = encodeCells(input.changed, blocks, blocksPerCell, cells);
  return map;
}

/** The level (0–15) of each cell of an encoded map string; all zero when the string is empty. */
export function decodeCells(encoded: string, cells: number): number[] {
  const out = new Array<number>(cells).fill(0);
  for (let i = 0; i < Math.min(cells, encoded.length); i++) out[i] = Math.max(0, HEX.indexOf(encoded[i]));
  return out;
}
