/** Raised by commands whose check failed (a verdict, a comparison): exit code 1. */
export class CheckFailed extends Error {
  override name = 'CheckFailed';
}
