/**
 * The per-frame record of a replay report, and its two machine-readable forms: `frames.jsonl` (one JSON object
 * per line) and `frames.csv` (the same fields, same order). Both are appended frame by frame, so an interrupted
 * run keeps every frame already processed.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Biometry } from '../runtime/types/biometry.js';
import { dice, hausdorffMm, headCircumferenceMm, type Mask, type Spacing } from './metrics.js';

/** Every number the report shows for one frame. Optional fields are `null` when they do not apply. */
export interface FrameRecord {
  /** 0-based position in the whole run (the x axis of the report's plots). */
  seq: number;
  /** Source file name (a video, or an image of an image folder). */
  source: string;
  /** Frame index in its source video; for an image folder, the image's position in the folder. */
  index: number;
  /** Presentation time (s) in its video; null for images. */
  pts: number | null;
  width: number;
  height: number;
  oodScore: number | null;
  oodThreshold: number | null;
  oodAbove: boolean | null;
  /** With a fused OOD decision: what fired, `reason:evidence` joined by `;` (empty when nothing did). */
  oodReasons: string | null;
  /** Feature-density score (squared Mahalanobis distance of the encoder features); null without density statistics. */
  density: number | null;
  /** Mean of the fused uncertainty map over the frame. */
  meanUncertainty: number | null;
  /** Fraction of the frame labelled head. */
  headFraction: number;
  /** mm per source pixel along x and y; null without a pixel spacing. */
  spacingXMm: number | null;
  spacingYMm: number | null;
  /** Head circumference of the label map (ellipse fit, Ramanujan perimeter), mm. */
  hcMm: number | null;
  /** Ground truth (null without it): Dice, boundary Hausdorff distance (mm), reference HC and |HC - reference|. */
  dice: number | null;
  hausdorffMm: number | null;
  hcTrueMm: number | null;
  hcAbsErrorMm: number | null;
  /** Head biometry (`measureBiometry`): status, pooled median and 95% interval of HC, BPD, OFD (in `biometryUnit`), GA (weeks). */
  biometryStatus: string | null;
  biometryUnit: string | null;
  hcFit: number | null;
  hcLow: number | null;
  hcHigh: number | null;
  bpd: number | null;
  ofd: number | null;
  gaWeeks: number | null;
  /** With a reference HC: HC (ellipse) - reference, and whether the 95% interval covers the reference. */
  hcSignedErrorMm: number | null;
  hcCovered: boolean | null;
  /** The head outline's misfit on the posterior mean (`Biometry.outlineResidual`), which widens its calibrated interval. */
  outlineResidual: number | null;
  /** With a ground-truth mask: Dice and Hausdorff (mm) of the pixel label map and of the biometry ellipse, and the pixel map's moment HC. */
  pixelsDice: number | null;
  pixelsHausdorffMm: number | null;
  pixelsHcMm: number | null;
  ellipseDice: number | null;
  ellipseHausdorffMm: number | null;
  /** The label map PNG at source resolution, relative to the report folder. */
  labelMap: string;
  /** Processing time of the frame (decode excluded), ms. */
  processingMs: number;
}

/** CSV column order: the record's keys in declaration order. */
export const CSV_COLUMNS: readonly (keyof FrameRecord)[] = [
  'seq', 'source', 'index', 'pts', 'width', 'height', 'oodScore', 'oodThreshold', 'oodAbove', 'oodReasons', 'density', 'meanUncertainty', 'headFraction',
  'spacingXMm', 'spacingYMm', 'hcMm', 'dice', 'hausdorffMm', 'hcTrueMm', 'hcAbsErrorMm',
  'biometryStatus', 'biometryUnit', 'hcFit', 'hcLow', 'hcHigh', 'bpd', 'ofd', 'gaWeeks', 'hcSignedErrorMm', 'hcCovered', 'outlineResidual',
  'pixelsDice', 'pixelsHausdorffMm', 'pixelsHcMm', 'ellipseDice', 'ellipseHausdorffMm', 'labelMap', 'processingMs',
];

type BiometryFields = Pick<FrameRecord, 'biometryStatus' | 'biometryUnit' | 'hcFit' | 'hcLow' | 'hcHigh' | 'bpd' | 'ofd' | 'gaWeeks' | 'hcSignedErrorMm' | 'hcCovered' | 'outlineResidual'>;

/** The record's biometry fields; error and coverage only with a reference HC and a biometry in mm. */
export function biometryFields(biometry: Biometry | undefined, hcTrueMm: number | null): BiometryFields {
  const pooled = biometry?.pooled;
  const hc = pooled?.hc;
  const inMm = biometry?.unit === 'mm';
  return {
    biometryStatus: biometry?.status ?? null,
    biometryUnit: biometry?.unit ?? null,
    hcFit: hc?.median ?? null,
    hcLow: hc?.low ?? null,
    hcHigh: hc?.high ?? null,
    bpd: pooled?.bpd.median ?? null,
    ofd: pooled?.ofd.median ?? null,
    gaWeeks: biometry?.ga?.median ?? null,
    hcSignedErrorMm: hc && inMm && hcTrueMm !== null ? hc.median - hcTrueMm : null,
    hcCovered: hc && inMm && hcTrueMm !== null ? hc.low <= hcTrueMm && hcTrueMm <= hc.high : null,
    outlineResidual: biometry?.outlineResidual ?? null,
  };
}

type MaskComparison = Pick<FrameRecord, 'pixelsDice' | 'pixelsHausdorffMm' | 'pixelsHcMm' | 'ellipseDice' | 'ellipseHausdorffMm'>;

export const NO_MASK_COMPARISON: MaskComparison = { pixelsDice: null, pixelsHausdorffMm: null, pixelsHcMm: null, ellipseDice: null, ellipseHausdorffMm: null };

/** Both label maps against the ground truth (an absent ellipse scores as an empty map). */
export function maskComparison(pixels: Mask, ellipse: Mask | undefined, truth: Mask, spacing: Spacing): MaskComparison {
  const fitted = ellipse ?? { ...truth, data: new Uint8Array(truth.data.length) };
  const hc = headCircumferenceMm(pixels, spacing);
  return {
    pixelsDice: dice(pixels, truth),
    pixelsHausdorffMm: hausdorffMm(pixels, truth, spacing),
    pixelsHcMm: Number.isNaN(hc) ? null : hc,
    ellipseDice: dice(fitted, truth),
    ellipseHausdorffMm: hausdorffMm(fitted, truth, spacing),
  };
}

/** A CSV cell: empty for null, `Infinity` spelled out, strings quoted when they need it. */
function csvCell(value: FrameRecord[keyof FrameRecord]): string {
  if (value === null) return '';
  if (typeof value === 'string') return /[",\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
  return String(value);
}

/** JSON has no Infinity: a Hausdorff distance to an empty mask is written as the string "Infinity". */
function jsonValue(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) && !Number.isNaN(value) ? String(value) : value;
}

/** Appends records to `frames.jsonl` and `frames.csv`. */
export class RecordWriter {
  private readonly jsonl: WriteStream;
  private readonly csv: WriteStream;

  constructor(jsonlPath: string, csvPath: string) {
    this.jsonl = createWriteStream(jsonlPath);
    this.csv = createWriteStream(csvPath);
    this.csv.write(`${CSV_COLUMNS.join(',')}\n`);
  }

  write(record: FrameRecord): void {
    this.jsonl.write(`${JSON.stringify(record, jsonValue)}\n`);
    this.csv.write(`${CSV_COLUMNS.map((column) => csvCell(record[column])).join(',')}\n`);
  }

  /** Resolves when both files are flushed. */
  async close(): Promise<void> {
    await Promise.all([this.jsonl, this.csv].map((stream) => new Promise<void>((resolve) => stream.end(resolve))));
  }
}
