/**
 * The clip (3D) heads of a model package, seen as one more set of L-FUSION heads: the same operators
 * (`sampleHeads` -> `measureUncertainty` -> `fuseUncertainty` -> `scoreOod`) run them unchanged, given the clip
 * view of the manifest and a runner that maps the 2D graph names onto the clip graphs.
 */
import { LfusionError } from './errors.js';
import type { GraphRunner } from './types/inference.js';
import type { ClipManifest, GraphSpec, ModelManifest } from './types/model.js';

/** The 2D graph each clip graph stands in for. */
const CLIP_GRAPH_OF: Readonly<Record<string, string>> = { laplace_head: 'clip_laplace_head', dropout_head: 'clip_dropout_head', measures: 'clip_measures' };
/** The graphs of the clip heads: the clip path's own inference worker opens only these. */
export const CLIP_GRAPHS: readonly string[] = Object.values(CLIP_GRAPH_OF);
/** Clip heads may call the stacked frames `images`; the 2D operators feed `image`. */
const CLIP_FEED_ALIASES: Readonly<Record<string, string>> = { image: 'images' };
const TWO_D_FEED_OF: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(CLIP_FEED_ALIASES).map(([name, alias]) => [alias, name]));

/** A model package's clip heads. */
export interface ClipModel {
  /**
   * The manifest with the clip heads in place of the 2D ones: `graphs.laplace_head` / `dropout_head` / `measures`
   * declare the clip graphs (so maps hold `frames * outputSize^2` pixels, frame-major) and `laplace`, `dropout`,
   * `sampling`, `fusion`, `ood` are the `clip` section's.
   */
  manifest: ModelManifest;
  settings: ClipManifest;
  /** Runs the clip graphs when the operators ask for the 2D ones. */
  runner(pool: GraphRunner): GraphRunner;
}

/** The name a feed goes by in a graph that declares `inputs`, or undefined when the graph takes no such input. */
function feedName(name: string, inputs: Record<string, unknown>): string | undefined {
  if (name in inputs) return name;
  const alias = CLIP_FEED_ALIASES[name];
  return alias !== undefined && alias in inputs ? alias : undefined;
}

/** A clip graph's declaration with its inputs under the names the 2D operators use. */
function asTwoDimensional(spec: GraphSpec): GraphSpec {
  return { ...spec, inputs: Object.fromEntries(Object.entries(spec.inputs).map(([name, dims]) => [TWO_D_FEED_OF[name] ?? name, dims])) };
}

/**
 * @throws LfusionError `INVALID_OPTION` when the package has no clip heads.
 * @example
 * const clip = clipModel(pkg.manifest);
 * window$.pipe(lfusionClipUncertainty(pool, pkg.manifest)); // uses clipModel inside
 */
export function clipModel(manifest: ModelManifest): ClipModel {
  const settings = manifest.clip;
  if (!settings) throw new LfusionError('INVALID_OPTION', `model package "${manifest.name}" has no clip heads (its manifest has no "clip" section)`, { model: manifest.name });
  const graphs: Record<string, GraphSpec> = { ...manifest.graphs };
  for (const [graph, clipGraph] of Object.entries(CLIP_GRAPH_OF)) graphs[graph] = asTwoDimensional(manifest.graphs[clipGraph]!);
  const { laplace, dropout, sampling, fusion, ood } = settings;
  return {
    manifest: { ...manifest, graphs, laplace, dropout, sampling, fusion, ood },
    settings,
    runner: (pool) => ({
      run(graph, feeds, options) {
        const target = CLIP_GRAPH_OF[graph] ?? graph;
        const inputs = manifest.graphs[target]?.inputs ?? {};
        const renamed = Object.entries(feeds).flatMap(([name, tensor]) => {
          const to = feedName(name, inputs);
          return to === undefined ? [] : [[to, tensor] as const];
        });
        const rename = (names?: readonly string[]) => names?.flatMap((name) => feedName(name, inputs) ?? []);
        const [keep, resident] = [rename(options?.keep), rename(options?.resident)];
        return pool.run(target, Object.fromEntries(renamed), { ...(keep ? { keep } : {}), ...(resident ? { resident } : {}) });
      },
    }),
  };
}
