/**
 * Cost of finding and cutting the ultrasound region in a 1920x1080 scanner screen (the sample video's scans
 * inside a UI-like screen): one full detection, the per-frame cost between detections (border check + crop),
 * and the per-frame cost with the default re-detection every 30 frames.
 *
 *   npm run bench -- ultrasoundRegion
 *   BENCH_REGION_FRAMES=60 npm run bench -- ultrasoundRegion
 */
import { join } from 'node:path';
import { lastValueFrom, Subject, take, toArray } from 'rxjs';
import { fromVideo } from '../src/operators/fromVideo.js';
import { ultrasoundRegion, type UltrasoundRegionOptions } from '../src/operators/ultrasoundRegion.js';
import { detectUltrasoundRegion } from '../src/operators/ultrasoundRegion/detect.js';
import type { Frame } from '../src/runtime/types/frames.js';
import { scannerScreen } from '../test/helpers/scanner-screen.js';
import type { BenchModule, BenchResult } from './run.js';

const FRAMES = Number(process.env.BENCH_REGION_FRAMES ?? 30);
const REPEATS = Number(process.env.BENCH_REGION_REPEATS ?? 5);
const SAMPLE = new URL('../assets/sample.mp4', import.meta.url).pathname;
const PLACE = { x: 460, y: 110, width: 1000, height: 675 };

async function screens(): Promise<Frame[]> {
  const scans = await lastValueFrom(fromVideo(join(SAMPLE), PLACE).pipe(take(FRAMES), toArray()));
  return scans.map((scan) => scannerScreen(scan, { place: PLACE }).frame);
}

/** Milliseconds per frame through the operator, after a first frame that finds the region. */
function operatorMs(frames: readonly Frame[], options: UltrasoundRegionOptions): number {
  const input = new Subject<Frame>();
  const subscription = input.pipe(ultrasoundRegion(options)).subscribe();
  input.next(frames[0]!);
  const started = performance.now();
  for (const frame of frames) input.next(frame);
  const ms = (performance.now() - started) / frames.length;
  subscription.unsubscribe();
  return ms;
}

const bench: BenchModule = {
  title: `ultrasoundRegion: 1920x1080 screens, ${FRAMES} frames x ${REPEATS}`,
  async run(): Promise<BenchResult[]> {
    const frames = await screens();
    const notes = { screen: '1920x1080', region: `${PLACE.width}x${PLACE.height}`, frames: FRAMES };
    detectUltrasoundRegion(frames[0]!); // warm-up
    const detect: number[] = [];
    const steady: number[] = [];
    const defaults: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      const started = performance.now();
      for (const frame of frames) detectUltrasoundRegion(frame);
      detect.push((performance.now() - started) / frames.length);
      steady.push(operatorMs(frames, { redetectEvery: Number.MAX_SAFE_INTEGER }));
      defaults.push(operatorMs(frames, {}));
    }
    return [
      { name: 'full detection', unit: 'ms', samples: detect, notes },
      { name: 'operator between detections (border check + crop)', unit: 'ms/frame', samples: steady, notes },
      { name: 'operator, default options (re-detect every 30)', unit: 'ms/frame', samples: defaults, notes },
    ];
  },
};

export default bench;
