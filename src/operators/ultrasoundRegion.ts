import { Observable, type OperatorFunction } from 'rxjs';
import { LfusionError } from '../runtime/errors.js';
import type { Frame, Region, ScreenSize } from '../runtime/types/frames.js';
import { checkFrame, DEFAULT_MIN_AREA_FRACTION, RegionDetector } from './ultrasoundRegion/detect.js';

export type { Region } from '../runtime/types/frames.js';

/** A frame cut to its ultrasound region, with what it takes to map results back to the screen. */
export interface RegionFrame {
  /** The cropped pixels; `index`, `pts` and `captureTime` are the screen frame's. */
  frame: Frame;
  /** Where the crop lies on the screen. */
  region: Region;
  /** `manual`: the configured region; `detected`: found in the image; `full-frame`: nothing found yet, nothing cut. */
  origin: 'manual' | 'detected' | 'full-frame';
  screen: ScreenSize;
}

export interface UltrasoundRegionOptions {
  /** Manual override: always crop this region, never detect (e.g. from a vendor's layout file). */
  region?: Region;
  /** Detect again every this many frames even when the layout looks unchanged. Default 30. */
  redetectEvery?: number;
  /**
   * A changed region is adopted only when this many consecutive detections agree on it (IoU >= `stableIou`), so a
   * single odd frame (probe lifted, a menu opened over the image) does not move the crop. Default 2.
   */
  confirmations?: number;
  /** A detection this close to the current region (intersection over union) keeps the current one: no jitter. Default 0.9. */
  stableIou?: number;
  /** Smallest region, as a fraction of the screen area, that counts as an ultrasound image. Default 0.02. */
  minAreaFraction?: number;
}

/** A layout check that finds more than this fraction of the blocks around the region's border changed detects again. */
const LAYOUT_CHANGE_FRACTION = 0.2;

const DEFAULTS = { redetectEvery: 30, confirmations: 2, stableIou: 0.9, minAreaFraction: DEFAULT_MIN_AREA_FRACTION };

/** Intersection over union of two rectangles; 0 when they do not meet. */
export function regionIou(a: Region, b: Region): number {
  const w = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const h = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  const inter = w * h;
  return inter === 0 ? 0 : inter / (a.width * a.height + b.width * b.height - inter);
}

/** Copies `region` out of `frame`, keeping the frame's index and times. */
function cropFrame(frame: Frame, region: Region): Frame {
  const data = new Uint8Array(region.width * region.height);
  for (let y = 0; y < region.height; y++) {
    const start = (region.y + y) * frame.width + region.x;
    data.set(frame.data.subarray(start, start + region.width), y * region.width);
  }
  return { index: frame.index, pts: frame.pts, captureTime: frame.captureTime, width: region.width, height: region.height, data };
}

/**
 * Cuts each scanner screen to its ultrasound image, so that the model sees the image and not the menus, text and
 * graphics around it (HDMI capture gives the whole screen). The region is detected automatically, or given.
 *
 * Detection: the screen is cut into 8x8 blocks; a block is image-like when it is neither flat (background, panels)
 * nor two-level (text, lines, calipers: strokes on a flat background). The largest connected area of such blocks
 * (one-block gaps bridged, thin protrusions trimmed) gives the box, refined to the pixel. About one full pass over
 * the screen: see `bench/ultrasoundRegion.bench.ts` for its cost.
 *
 * Re-detection: on every frame a cheap check compares the blocks along the region's border with those seen when it
 * was adopted; when many changed (zoom, depth or layout change), or every `redetectEvery` frames, it detects again.
 * A new region replaces the current one only if it differs (IoU below `stableIou`) and `confirmations` detections
 * in a row agree on it: no jitter from frame to frame, and a probe lifted off for a moment does not move the crop.
 * Until a region is found, frames pass whole (`origin: 'full-frame'`); a frame of another size starts afresh.
 *
 * @example
 * fromVideo('/dev/video0', { v4l2: { inputFormat: 'mjpeg', videoSize: '1920x1080' } })
 *   .pipe(ultrasoundRegion())
 *   .subscribe(({ frame, region }) => console.log(frame.index, region));
 *
 * @param options See {@link UltrasoundRegionOptions}; invalid values throw an `INVALID_OPTION` error here, a manual
 * region outside the screen errors the stream.
 * @return One {@link RegionFrame} per screen frame, in order.
 */
export function ultrasoundRegion(options: UltrasoundRegionOptions = {}): OperatorFunction<Frame, RegionFrame> {
  const settings = { ...DEFAULTS, ...options };
  validate(settings);
  const manual = options.region;
  return (source) =>
    new Observable<RegionFrame>((subscriber) => {
      let detector: RegionDetector | undefined;
      let current: Region | null = null;
      /** The border blocks as they were when `current` was adopted. */
      let border: Uint8Array = new Uint8Array(0);
      let candidate: { region: Region; agreements: number } | null = null;
      let sinceDetection = 0;

      const adopt = (frame: Frame, region: Region): void => {
        current = region;
        candidate = null;
        border = (detector as RegionDetector).borderBlocks(frame, region);
      };

      const layoutChanged = (frame: Frame, region: Region): boolean => {
        const now = (detector as RegionDetector).borderBlocks(frame, region);
        let changed = 0;
        now.forEach((state, i) => (changed += state === border[i] ? 0 : 1));
        return changed > LAYOUT_CHANGE_FRACTION * now.length;
      };

      /** Weighs a detection against the current region and the pending candidate. */
      const consider = (frame: Frame, found: Region | null): void => {
        if (!found || (current && regionIou(found, current) >= settings.stableIou)) {
          // Nothing new (or no image at all for now): what the border looks like now is the new normal.
          candidate = null;
          if (current) border = (detector as RegionDetector).borderBlocks(frame, current);
          return;
        }
        if (!current) {
          adopt(frame, found);
          return;
        }
        candidate = candidate && regionIou(found, candidate.region) >= settings.stableIou ? { region: found, agreements: candidate.agreements + 1 } : { region: found, agreements: 1 };
        if (candidate.agreements >= settings.confirmations) adopt(frame, candidate.region);
      };

      const locate = (frame: Frame): RegionFrame => {
        checkFrame(frame);
        const screen = { width: frame.width, height: frame.height };
        if (manual) {
          if (manual.x + manual.width > frame.width || manual.y + manual.height > frame.height) {
            throw new LfusionError('INVALID_OPTION', `region ${JSON.stringify(manual)} does not fit in a ${frame.width}x${frame.height} frame`, { region: manual, screen });
          }
          return { frame: cropFrame(frame, manual), region: manual, origin: 'manual', screen };
        }
        if (detector?.width !== frame.width || detector.height !== frame.height) {
          detector = new RegionDetector(frame.width, frame.height, settings.minAreaFraction);
          current = null;
          candidate = null;
        }
        sinceDetection += 1;
        if (!current || candidate || sinceDetection >= settings.redetectEvery || layoutChanged(frame, current)) {
          sinceDetection = 0;
          consider(frame, detector.detect(frame));
        }
        const region: Region | null = current;
        return region
          ? { frame: cropFrame(frame, region), region, origin: 'detected', screen }
          : { frame, region: { x: 0, y: 0, ...screen }, origin: 'full-frame', screen };
      };

      return source.subscribe({
        next: (frame) => {
          let located: RegionFrame;
          try {
            located = locate(frame);
          } catch (error) {
            subscriber.error(error);
            return;
          }
          subscriber.next(located);
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
    });
}

function validate(settings: Required<Omit<UltrasoundRegionOptions, 'region'>> & Pick<UltrasoundRegionOptions, 'region'>): void {
  const fail = (name: string, rule: string, value: unknown): never => {
    throw new LfusionError('INVALID_OPTION', `${name} must be ${rule}, got ${JSON.stringify(value)}`, { [name]: value });
  };
  const { region } = settings;
  if (region) {
    const whole = [region.x, region.y, region.width, region.height].every(Number.isInteger);
    if (!whole || region.x < 0 || region.y < 0 || region.width < 1 || region.height < 1) fail('region', 'whole pixels inside the screen, width and height >= 1', region);
  }
  if (!(Number.isInteger(settings.redetectEvery) && settings.redetectEvery >= 1)) fail('redetectEvery', 'a whole number >= 1', settings.redetectEvery);
  if (!(Number.isInteger(settings.confirmations) && settings.confirmations >= 1)) fail('confirmations', 'a whole number >= 1', settings.confirmations);
  if (!(settings.stableIou > 0 && settings.stableIou <= 1)) fail('stableIou', 'in (0, 1]', settings.stableIou);
  if (!(settings.minAreaFraction > 0 && settings.minAreaFraction <= 1)) fail('minAreaFraction', 'in (0, 1]', settings.minAreaFraction);
}
