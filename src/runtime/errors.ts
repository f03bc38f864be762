/**
 * The SDK's error hierarchy: every failure a user can meet is an `LfusionError` with a stable `code`.
 * Add a code here (and to docs) rather than throwing a bare `Error`.
 */

export type LfusionErrorCode =
  | 'FFMPEG_NOT_FOUND'
  | 'SOURCE_NOT_FOUND'
  | 'DECODE_FAILED'
  | 'SOURCE_LOST'
  | 'MODEL_INVALID'
  | 'SHAPE_MISMATCH'
  | 'WORKER_FAILED'
  | 'INFERENCE_FAILED'
  | 'PROTOCOL_ERROR'
  | 'INVALID_OPTION'
  /** The job queue's Redis cannot be reached or refuses the password (`lfusion queue`, `lfusion worker`). */
  | 'QUEUE_UNAVAILABLE';

/** Base class: `code` is stable across versions, `context` carries what a user needs to act (not named `details`: uvu reads that field as a string). */
export class LfusionError extends Error {
  readonly code: LfusionErrorCode;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(code: LfusionErrorCode, message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

/** The source could not be opened, decoded, or went away. `stderrTail` is ffmpeg's last output. */
export class SourceError extends LfusionError {
  constructor(
    code: Extract<LfusionErrorCode, 'FFMPEG_NOT_FOUND' | 'SOURCE_NOT_FOUND' | 'DECODE_FAILED' | 'SOURCE_LOST'>,
    message: string,
    readonly source: string,
    readonly stderrTail: string = '',
    options?: { cause?: unknown },
  ) {
    super(code, message, { source, stderrTail }, options);
  }
}

/** A model package that cannot be used: malformed manifest, checksum mismatch, graph I/O disagreeing with the manifest. */
export class ModelError extends LfusionError {
  constructor(message: string, readonly packagePath: string, details: Record<string, unknown> = {}) {
    super('MODEL_INVALID', message, { packagePath, ...details });
  }
}

/** A tensor or frame whose shape is not what the consumer expects. */
export class ShapeError extends LfusionError {
  constructor(message: string, readonly expected: readonly (number | string)[], readonly actual: readonly number[]) {
    super('SHAPE_MISMATCH', message, { expected, actual });
  }
}
