export type { Claim, ClaimState } from './claim.ts';
