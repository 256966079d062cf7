/** Bit helpers for 64-bit table entries read as two big-endian 32-bit halves (no BigInt on hot paths). */

/** Bits 9..55 of an entry (L1, L2, refcount table, bitmap table): a cluster-aligned host offset. */
export function offsetBits9to55(hi: number, lo: number): number {
  return (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
}
