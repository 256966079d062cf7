/** Typed errors of the report module. Each names the file (and line and field) a user must fix. */
import { ConfigError, type ConfigErrorOptions } from '../config/index.ts';
import { HarnessError } from '../util/index.ts';

/** A run record or run directory that cannot be read: missing, not JSON, wrong schema or version. Exit code 2. */
export class ReportInputError extends HarnessError {
  override name = 'ReportInputError';
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(`${file}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.file = file;
  }
}

export type RunConfigErrorOptions = ConfigErrorOptions;

/** A run config (harness/gate.yaml, nightly.yaml) that is missing, not YAML or not valid. Exit code 2. */
export class RunConfigError extends ConfigError {
  override name = 'RunConfigError';
}

/** The results-history index (SQLite) cannot be opened or written. */
export class HistoryIndexError extends HarnessError {
  override name = 'HistoryIndexError';
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(`${file}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.file = file;
  }
}

/** A reporter was given options it cannot work with (unknown name, no output folder). */
export class ReporterOptionError extends HarnessError {
  override name = 'ReporterOptionError';
}
