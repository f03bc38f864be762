/**
 * Seedable random numbers for posterior sampling: xoshiro128** seeded through splitmix32, standard normals
 * by Marsaglia's polar form of Box–Muller, and inverted-dropout masks.
 *
 * `Math.random` cannot be seeded, and results must be reproducible from a seed, so every random draw the SDK
 * makes comes from here.
 */

const TWO_POW_32 = 4294967296;

/** One splitmix32 step: returns the next state and a well-mixed 32-bit output (used for seeding and hashing). */
function splitmix32(state: number): { state: number; value: number } {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  z ^= z >>> 15;
  return { state: next, value: z >>> 0 };
}

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be a non-negative safe integer, got ${seed}`);
  }
}

/** Folds a safe integer (up to 2^53) into 32 bits so that seeds differing only in their high bits stay distinct. */
function foldSeed(seed: number): number {
  const low = seed >>> 0;
  const high = Math.floor(seed / TWO_POW_32) >>> 0;
  return (low ^ splitmix32(high).value) >>> 0;
}

/**
 * Derives an independent seed from a seed and a list of integer keys (frame index, tensor id, ...).
 * The same inputs always give the same seed; a different key gives an unrelated stream.
 *
 * @example
 * const frameSeed = deriveSeed(42, frame.index);
 */
export function deriveSeed(seed: number, ...keys: number[]): number {
  checkSeed(seed);
  let state = foldSeed(seed);
  for (const key of keys) {
    checkSeed(key);
    state = splitmix32(state ^ foldSeed(key)).value;
  }
  return splitmix32(state).value;
}

/**
 * A xoshiro128** generator. Not cryptographic; fast, 2^128 - 1 period, good statistical quality.
 *
 * @example
 * const rng = new Random(42);
 * const noise = rng.fillNormal(new Float32Array(1024));
 */
export class Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** @param seed non-negative safe integer; the four state words come from splitmix32 so they are never all zero. */
  constructor(seed: number) {
    checkSeed(seed);
    let step = splitmix32(foldSeed(seed));
    this.s0 = step.value;
    step = splitmix32(step.state);
    this.s1 = step.value;
    step = splitmix32(step.state);
    this.s2 = step.value;
    step = splitmix32(step.state);
    this.s3 = step.value;
  }

  /** Next uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number {
    const s1 = this.s1;
    const scrambled = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return scrambled >>> 0;
  }

  /** Next uniform double in [0, 1) with 32 random bits. */
  nextFloat(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  /** Fills `out` with independent standard normal draws (polar Box–Muller) and returns it. */
  fillNormal<T extends Float32Array | Float64Array>(out: T): T {
    let i = 0;
    while (i < out.length) {
      let u: number;
      let v: number;
      let s: number;
      do {
        u = (this.nextUint32() / 2147483648) - 1;
        v = (this.nextUint32() / 2147483648) - 1;
        s = u * u + v * v;
      } while (s >= 1 || s === 0);
      const factor = Math.sqrt((-2 * Math.log(s)) / s);
      out[i++] = u * factor;
      if (i < out.length) out[i++] = v * factor;
    }
    return out;
  }

  /**
   * Fills `out` with an inverted-dropout mask: each entry independently `0` with probability `rate`,
   * otherwise `1 / (1 - rate)`, so the mask has expectation 1 everywhere.
   */
  fillDropoutMask<T extends Float32Array | Float64Array>(out: T, rate: number): T {
    if (!(rate >= 0 && rate < 1)) throw new RangeError(`dropout rate must be in [0, 1), got ${rate}`);
    const kept = 1 / (1 - rate);
    for (let i = 0; i < out.length; i++) out[i] = this.nextFloat() < rate ? 0 : kept;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
