/**
 * Headless Chromium (Debian's `chromium` package) driven by playwright-core, for looking at the
 * HTML report as a person would. Every launch gets a fresh user-data-dir, removed on close.
 */
import { existsSync } from 'node:fs';
import { chromium, type BrowserContext } from 'playwright-core';
import { tempDir } from './tools.ts';

export const CHROMIUM = process.env.CBT_CHROMIUM ?? '/usr/bin/chromium';

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM);
}

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A persistent context on a fresh profile; `close()` ends the browser (by its own API) and removes the profile. */
export async function launchBrowser(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  const profile = await tempDir('cbt-chromium-');
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile.dir, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, viewport: { width: 1400, height: 900 } });
  } catch (error) {
    await profile.cleanup();
    throw error;
  }
  return {
    context,
    close: async () => {
      try {
        await context.close();
      } finally {
        await profile.cleanup();
      }
    },
  };
}
