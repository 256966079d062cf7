/** What `readPartitionTable` returns: volumes in disk-relative bytes, numbered as Linux numbers them. */

export type PartitionScheme = 'gpt' | 'mbr';

export interface Volume {
  /** 1-based partition number as Linux numbers it: GPT entry index + 1; MBR 1–4 primary, 5+ logical. */
  number: number;
  /** Disk-relative byte offset of the first byte. */
  offset: number;
  /** Length in bytes. */
  length: number;
  /** GPT partition type GUID (lowercase) or the MBR type byte as `"0x07"`. */
  type: string;
  /** GPT unique partition GUID (lowercase); null on MBR. */
  guid: string | null;
  /** GPT partition name; null on MBR. */
  name: string | null;
  scheme: PartitionScheme;
}

export interface PartitionTable {
  scheme: PartitionScheme | 'none';
  /** GPT disk GUID (lowercase); null on MBR and without a table. */
  diskGuid: string | null;
  /** MBR disk signature (`"0xa083e9a8"`, bytes 440–443); null on GPT and without a table. */
  diskSignature: string | null;
  /** Sector size the table was read with. */
  sectorSize: number;
  /** Sorted by partition number. Extended-partition containers are not volumes and are left out. */
  volumes: Volume[];
  /** Damage that was worked around: backup GPT used, entries clamped or skipped, EBR chain cut. */
  warnings: string[];
}

export interface ReadPartitionTableOptions {
  /**
   * Logical sector size of the disk in bytes. When not given, 512 is used, and 4096 is tried
   * when a protective MBR has no GPT behind it at 512 (a 4Kn disk); the result says which.
   * @default 512
   */
  sectorSize?: 512 | 4096;
  signal?: AbortSignal;
}
