/** Walking a scenario's steps as the runner executes them, and what they ask of the guest. */
import type { GuestOperation } from '../guest/index.ts';
import type { Step } from './types.ts';

/** Every step with its path (`3`, `2.0.1`: repeat 2, round 0, step 1), repeats unrolled. */
export function* allSteps(steps: readonly Step[], path = ''): Generator<{ step: Step; path: string }> {
  for (const [i, s] of steps.entries()) {
    const p = `${path}${i}`;
    if (s.kind === 'repeat') for (let k = 0; k < s.times; k++) yield* allSteps(s.steps, `${p}.${k}.`);
    else yield { step: s, path: p };
  }
}

const GUEST_STEPS = new Set<string>(['write', 'fio', 'files', 'resize', 'reboot', 'shutdown', 'offline', 'online', 'disable', 'enable', 'hibernate']);

/** Guest operations the steps need from the adapter (checked before the VM starts). */
export function neededOperations(steps: readonly Step[], guestCheckpoint: boolean): Set<GuestOperation> {
  const ops = new Set<GuestOperation>();
  for (const { step: s } of allSteps(steps)) {
    if (s.kind === 'checkpoint' && guestCheckpoint) ops.add('checkpoint');
    if (GUEST_STEPS.has(s.kind)) ops.add(s.kind as GuestOperation);
    if (s.kind === 'powerbutton') ops.add('powerbutton-action');
  }
  return ops;
}

/** A step's arguments for its record (without the runner's own fields). */
export function stepArgs(s: Step): Record<string, unknown> {
  const { allowFailure: _a, source: _s, kind: _k, ...rest } = s as Step & Record<string, unknown>;
  return rest;
}
