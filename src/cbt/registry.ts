/**
 * Built-in decoders and user plugins. `--decoder ./my-decoder.js` (any path, or a name with a
 * file extension) loads a module exporting `decode(ctx)` (see docs/decoders.md).
 */
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cbtfDecoder } from './cbtf/decoder.ts';
import { claimProblems, type Claim } from './claim.ts';
import { checkOptions, DecoderOptionError, DecoderPluginError, type DecodeContext, type Decoder } from './decoder.ts';
import { dmEraDecoder } from './dm-era-decoder.ts';
import { qemuBitmapDecoder } from './qemu-bitmap.ts';

export const BUILTIN_DECODERS: ReadonlyMap<string, Decoder> = new Map([dmEraDecoder, qemuBitmapDecoder, cbtfDecoder].map((d) => [d.name, d]));

function looksLikePath(name: string): boolean {
  return name.includes('/') || /\.(m?js|ts|cjs)$/.test(name);
}

/**
 * A built-in decoder by name, or a plugin module by path: absolute, or relative to `cwd` (the
 * caller's working directory, passed in: cbt/ is a pure core and does not read the process' state).
 */
export async function resolveDecoder(name: string, cwd?: string): Promise<Decoder> {
  const builtin = BUILTIN_DECODERS.get(name);
  if (builtin) return builtin;
  if (!looksLikePath(name)) {
    throw new DecoderOptionError(`unknown decoder \`${name}\` (built in: ${[...BUILTIN_DECODERS.keys()].join(', ')}; or a path to a plugin module)`);
  }
  if (cwd === undefined && !isAbsolute(name)) throw new DecoderOptionError(`decoder plugin path \`${name}\` is relative but no directory to resolve it in was given`);
  const file = cwd === undefined ? name : resolve(cwd, name);
  if (!existsSync(file)) throw new DecoderPluginError(`decoder plugin ${file} does not exist`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    throw new DecoderPluginError(`decoder plugin ${file} failed to load: ${(error as Error).message}`, { cause: error });
  }
  const decode = (mod.decode ?? (mod.default as Record<string, unknown> | undefined)?.decode) as Decoder['decode'] | undefined;
  if (typeof decode !== 'function') throw new DecoderPluginError(`decoder plugin ${file} exports no decode(ctx) function`);
  const pluginName = typeof mod.name === 'string' ? mod.name : name;
  return { name: pluginName, description: typeof mod.description === 'string' ? mod.description : `plugin ${file}`, decode };
}

/** Run a decoder and check what it returns. */
export async function runDecoder(decoder: Decoder, ctx: DecodeContext): Promise<Claim> {
  checkOptions(ctx, decoder);
  const claim = await decoder.decode(ctx);
  const problems = claimProblems(claim);
  if (problems.length) throw new DecoderPluginError(`decoder ${decoder.name} returned an invalid claim: ${problems.join('; ')}`);
  return claim;
}
