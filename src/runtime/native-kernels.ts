/**
 * The native addon (native/lfusion_native.cc, built at install by native/build.mjs: kernels and posix_spawn), loaded once at
 * start-up when present. Absent, stale, or disabled with `LFUSION_NATIVE=0`, it is `undefined` and
 * {@link nativeKernelsStatus} says why; the operators then use their JavaScript kernels.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The addon's functions: each writes into the arrays it is given (see native/lfusion_native.cc). */
export interface NativeKernels {
  version: number;
  blur(image: Float32Array, width: number, height: number, kernel: Float32Array, out: Float32Array): void;
  warpImage(image: Float32Array, width: number, height: number, warp: Float64Array, out: Float32Array, outWidth: number, outHeight: number, fill: number): void;
  fft2(re: Float64Array, im: Float64Array, rows: number, cols: number, rowTwiddles: Float64Array, colTwiddles: Float64Array): void;
  crossPower(referenceRe: Float64Array, referenceIm: Float64Array, movingRe: Float64Array, movingIm: Float64Array, outRe: Float64Array, outIm: Float64Array): void;
  gaussNewtonSums(template: Float32Array, gradientX: Float32Array, gradientY: Float32Array, width: number, height: number, moving: Float32Array, movingWidth: number, movingHeight: number, warp: Float64Array, cx: number, cy: number, out: Float64Array): void;
  overlapSums(template: Float32Array, width: number, height: number, moving: Float32Array, movingWidth: number, movingHeight: number, warp: Float64Array, out: Float64Array): void;
  /** The Pillow resize of encodeFrames.ts; `columns`/`rows`: `[kernelSize, first[], count[], weights[]]` per pass. */
  resizeGrey(pixels: Uint8Array, inWidth: number, inHeight: number, out: Uint8Array, outWidth: number, outHeight: number, columns: Int32Array, rows: Int32Array, scratch: Uint8Array): void;
  /** posix_spawn of `file` (argv `[file, ...args]`, stdin /dev/null); `piped`: stdout and stderr to pipes, else /dev/null (child-process.ts). */
  spawnPiped(file: string, args: string[], piped: [stdout: boolean, stderr: boolean]): { pid: number; stdout: number; stderr: number; errno?: undefined } | { errno: number; pid?: undefined; stdout?: undefined; stderr?: undefined };
  /** `null` while the child runs; its exit code or signal number once ended (and reaped); `errno` for no such child. */
  reapChild(pid: number): null | { code?: number; signal?: number; errno?: number };
}

/** The addon version this code expects (`kVersion` in native/lfusion_native.cc). */
const VERSION = 4;
// Same relative path from src/runtime/ and dist/runtime/.
const ADDON = new URL('../../native/build/lfusion_native.node', import.meta.url);

function load(): { kernels?: NativeKernels; status: string } {
  if (process.env.LFUSION_NATIVE === '0') return { status: 'disabled by LFUSION_NATIVE=0' };
  let addon: NativeKernels;
  try {
    addon = createRequire(import.meta.url)(fileURLToPath(ADDON)) as NativeKernels;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { status: code === 'MODULE_NOT_FOUND' ? 'not built (no C++ compiler at install, or run `npm run build:native`)' : `failed to load: ${(error as Error).message.split('\n')[0]}` };
  }
  if (addon.version !== VERSION) return { status: `stale build (version ${addon.version}, expected ${VERSION}): run \`npm run build:native\`` };
  return { kernels: addon, status: 'loaded' };
}

const loaded = load();

/** The addon, or `undefined` when it is not available (see {@link nativeKernelsStatus}). */
export const nativeKernels: NativeKernels | undefined = loaded.kernels;
/** `loaded`, or why the addon is not used. */
export const nativeKernelsStatus: string = loaded.status;
