/**
 * A tracker named by a decoder plugin's path (`tracker: ./my-decoder.js`, docs/decoders.md): the
 * harness knows nothing of how it tracks, only how to read its claim. It runs where its guest
 * side comes from the guest image itself (a Windows image with the driver installed), with the
 * checkpoint command given in its options, and verify hands every other option to the plugin.
 */
import { text } from './options.ts';
import type { Tracker } from './tracker.ts';

/** Does this tracker name look like a decoder plugin path (the decoder registry's rule)? */
export function isPluginTracker(name: string): boolean {
  return name.includes('/') || /\.(m?js|ts|cjs)$/.test(name);
}

/** Options of a plugin tracker that the harness uses itself; every other one goes to the decoder. */
const OWN = new Set(['checkpoint', 'epochIdPattern']);

export function pluginTracker(path: string): Tracker {
  return {
    name: path,
    description: `decoder plugin ${path}`,
    guests: ['windows'],
    // Anything: the plugin's own options are checked by the plugin at verify.
    options: new Proxy<Record<string, (v: unknown) => string | null>>({}, { get: (_t, k) => (k === 'checkpoint' ? text : () => null), has: () => true }),
    required: [],
    knownBad: [],
    guestCheckpoint: true,
    guestSetup(options) {
      return { inGuest: true, windows: { ...(typeof options.checkpoint === 'string' ? { checkpointCommand: options.checkpoint } : {}), ...(typeof options.epochIdPattern === 'string' ? { epochIdPattern: options.epochIdPattern } : {}) } };
    },
    async openEpoch({ guestEpochId, diskId }) {
      if (guestEpochId === undefined) throw new TypeError(`${path}: no epoch id from the checkpoint of ${diskId}`);
      return guestEpochId;
    },
    verifyRefusal() {
      return null;
    },
    verifyPlan(epoch, _session, options) {
      const opts: Record<string, string> = { since: epoch.id };
      for (const [k, v] of Object.entries(options)) if (!OWN.has(k) && v !== undefined) opts[k] = String(v);
      return { decoder: path, options: opts };
    },
    driverLabel(guest) {
      return `${path} (${guest.build ?? 'unknown guest'})`;
    },
  };
}
