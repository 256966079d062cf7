export { EXT4_MAGIC, EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_SIZE, hasExt4Magic, parseExt4Superblock, readExt4Superblock, type Ext4Superblock, type Ext4Kind } from './superblock.ts';
export { Ext4Error, Ext4FormatError, type Ext4ErrorOptions } from './errors.ts';
