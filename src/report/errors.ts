/** Typed errors of the report module. Each names the file (and line and field) a user must fix. */

/** A run record or run directory that cannot be read: missing, not JSON, wrong schema or version. Exit code 2. */
export class ReportInputError extends Error {
  override name = 'ReportInputError';
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(`${file}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.file = file;
  }
}

export interface RunConfigErrorOptions {
  file: string;
  line?: number | undefined;
  column?: number | undefined;
  field?: string | undefined;
  cause?: unknown;
}

/** A run config (harness/gate.yaml, nightly.yaml) that is missing, not YAML or not valid. Exit code 2. */
export class RunConfigError extends Error {
  override name = 'RunConfigError';
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly field: string | undefined;

  constructor(message: string, options: RunConfigErrorOptions) {
    const where = `${options.file}${options.line === undefined ? '' : `:${options.line}${options.column === undefined ? '' : `:${options.column}`}`}`;
    super(`${where}: ${options.field ? `${options.field}: ` : ''}${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.file = options.file;
    this.line = options.line;
    this.column = options.column;
    this.field = options.field;
  }
}

/** The results-history index (SQLite) cannot be opened or written. */
export class HistoryIndexError extends Error {
  override name = 'HistoryIndexError';
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(`${file}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.file = file;
  }
}

/** A reporter was given options it cannot work with (unknown name, no output folder). */
export class ReporterOptionError extends Error {
  override name = 'ReporterOptionError';
}
