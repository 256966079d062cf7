import { HarnessError } from '../util/index.ts';
export interface ConfigErrorOptions {
  file: string;
  line?: number | undefined;
  column?: number | undefined;
  field?: string | undefined;
  cause?: unknown;
}

/** A configuration file (scenario, run config, inventory) is missing, not YAML, or invalid. Exit code 2. */
export class ConfigError extends HarnessError {
  override name = 'ConfigError';
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly field: string | undefined;

  constructor(message: string, options: ConfigErrorOptions) {
    const where = `${options.file}${options.line === undefined ? '' : `:${options.line}${options.column === undefined ? '' : `:${options.column}`}`}`;
    super(`${where}: ${options.field ? `${options.field}: ` : ''}${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.file = options.file;
    this.line = options.line;
    this.column = options.column;
    this.field = options.field;
  }
}
