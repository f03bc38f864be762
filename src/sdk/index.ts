/**
 * L-FUSION Stream: fetal-ultrasound segmentation with uncertainty on live scanner video.
 *
 * The one-call pipeline ({@link createPipeline}) decodes a video with ffmpeg, runs the model package's ONNX
 * graphs in worker threads, and emits one {@link FrameResult} per processed frame. Each stage is also an RxJS
 * operator a vendor can compose in their own pipeline, and {@link ResultServer} delivers results over
 * WebSocket (docs/protocol.md).
 *
 * This file is the whole public API; every other module is internal. The SDK is three layers that import
 * only downwards (checked by test/layering.test.ts): `src/runtime/` (types, errors, model packages, inference
 * workers, draws) <- `src/operators/` (one RxJS operator per file) <- `src/sdk/` (this face: pipeline, server,
 * protocol, CLI). `src/report/` (QA replay reports) imports runtime and operators and is used by the CLI and
 * exported here; `src/examples/` imports this file only.
 *
 * @example Every frame of a recording, in a Node process
 * ```ts
 * import { createPipeline } from 'lfusion-stream';
 *
 * const pipeline = await createPipeline({ source: 'assets/sample.mp4' });
 * pipeline.results$.subscribe({
 *   next: (result) => {
 *     const mask = result.planes.find((plane) => plane.name === 'mask')!;
 *     console.log(result.frame.index, mask.data.reduce((sum, q) => sum + q, 0), 'head pixels');
 *   },
 *   complete: () => void pipeline.close(),
 * });
 * ```
 *
 * @example A capture card, with the overlay viewer
 * ```ts
 * import { createPipeline, modelInfo, ResultServer } from 'lfusion-stream';
 *
 * const pipeline = await createPipeline({ source: '/dev/video0', video: { v4l2: { inputFormat: 'mjpeg', videoSize: '1920x1080' } }, image: true });
 * const server = await ResultServer.listen({ port: 8080, model: modelInfo(pipeline.model.manifest), streams: pipeline.streams });
 * console.log(`open ${server.viewerUrl}`); // reconnects on a pulled cable; crops the ultrasound region
 * await server.deliver(pipeline).done;
 * ```
 *
 * @example Composing the operators yourself
 * ```ts
 * import { encodeFrames, fromVideo, InferencePool, keepLatest, loadModelPackage, segmentFrames } from 'lfusion-stream';
 * import { of } from 'rxjs';
 *
 * const model = await loadModelPackage('models/packages/lfusion-hc18');
 * const pool = await InferencePool.open(model);
 * const encode = encodeFrames(pool, model.manifest);
 * const segment = segmentFrames(pool, model.manifest);
 * fromVideo('/dev/video0')
 *   .pipe(keepLatest((frame) => of(frame).pipe(encode, segment)))
 *   .subscribe((result) => draw(result));
 * ```
 *
 * @packageDocumentation
 */

export type * from '../runtime/types/frames.js';
export type * from '../runtime/types/model.js';
export type * from '../runtime/types/inference.js';
export type * from '../runtime/types/uncertainty.js';
export type * from '../runtime/types/results.js';
export type * from '../runtime/types/biometry.js';
export type * from './wire.js';
export { LfusionError, ModelError, ShapeError, SourceError, type LfusionErrorCode } from '../runtime/errors.js';

// Sources and flow control.
export { fromVideo, type FromVideoOptions } from '../operators/fromVideo.js';
export { keepLatest, type KeepLatestOptions } from '../operators/keepLatest.js';
export { keepLatestStages } from '../operators/keepLatestStages.js';
export { reconnecting, type BackoffOptions, type ReconnectingOptions } from '../operators/reconnecting.js';
export { isFrame, isSourceEvent } from '../runtime/source-events.js';

// The ultrasound region of a scanner screen, and back to screen coordinates.
export { regionIou, ultrasoundRegion, type RegionFrame, type UltrasoundRegionOptions } from '../operators/ultrasoundRegion.js';
export { detectUltrasoundRegion } from '../operators/ultrasoundRegion/detect.js';
export { planeToScreen, regionTransform, toScreenPoint } from '../operators/ultrasoundRegion/screen.js';

// Model package and inference.
export { DEFAULT_MODEL_PATH, loadModelPackage, type ModelPackage } from '../runtime/model-package.js';
export { InferencePool, type InferencePoolOptions, type RunOptions } from '../runtime/inference-pool.js';
export { alignFrames, type AlignFramesOptions } from '../operators/alignFrames.js';
export { estimateAlignment } from '../operators/alignFrames/estimate.js';
export { warpToOriginal } from '../operators/alignFrames/warp.js';
export type { KernelChoice } from '../operators/alignFrames/kernels.js';
export { windowClips, type ClipDrop, type FrameEncoder, type WindowClipsOptions } from '../operators/windowClips.js';
export { mergeClipFrames } from '../operators/mergeClipFrames.js';
export { lfusionClipUncertainty, stackWindow } from '../operators/lfusionClipUncertainty.js';
export { clipModel, type ClipModel } from '../runtime/clip-model.js';
export { encodeFrames } from '../operators/encodeFrames.js';
export { segmentFrames } from '../operators/segmentFrames.js';

// Uncertainty.
export { lfusionUncertainty, type UncertaintyOptions } from '../operators/lfusionUncertainty.js';
export { sampleHeads, type SampleOptions } from '../operators/sampleHeads.js';
export { measureUncertainty, toInputGrid, type MeasureOptions } from '../operators/measureUncertainty.js';
export { amortiseSamples, type LiveSamplingOptions } from '../operators/amortiseSamples.js';
export { fuseUncertainty, type FuseOptions } from '../operators/fuseUncertainty.js';
export { scoreOod, type OodOptions } from '../operators/scoreOod.js';
export { raiseAlerts, type AlertOptions } from '../operators/raiseAlerts.js';
export { biometryMeasurer, biometryOnSource, measureBiometry, withOod, type BiometryInput, type BiometryOptions, type BiometrySamples, type Spacing } from '../operators/measureBiometry.js';
export { ellipseCircumference, fitEllipse, hadlockGestationalAge, HADLOCK_WEEKS, type EllipseFit, type WeightedPoints } from '../operators/measureBiometry/ellipse.js';
export { conformalScale, credibleInterval } from '../operators/measureBiometry/summary.js';
export { suggestBestPlane, type BestPlane, type BestPlaneOptions } from '../operators/suggestBestPlane.js';
export { dequantizePlane, MEASURE_RANGES, quantizePlane, type QuantizeRange } from '../runtime/quantize.js';
export { createDrawSource, drawSamples, type DrawMode } from '../runtime/draws.js';
export { deriveSeed, Random } from '../runtime/random.js';
export { compareToReference, loadReferenceVectors, type ReferenceVectors } from '../runtime/reference-vectors.js';

// The one-call pipeline, statistics and delivery.
export { createPipeline } from './pipeline.js';
export type { Analysis, ClipPathOptions, PathName, Pipeline, PipelineOptions } from './pipeline-options.js';
export { StatsRecorder, type StatsOptions } from '../runtime/stats.js';
export { modelInfo, ResultServer, VIEWER_PATH, WEBSOCKET_PATH, type ClientStats, type Deliverable, type Delivery, type ResultServerOptions } from './server.js';
export { decodeFrameMessage, encodeFrameMessage, PROTOCOL_VERSION, type DecodedFrame } from './protocol.js';

// QA replay reports (docs/qa-replay.md).
export { replayReport, type ReplayReportOptions, type ReplayReportSummary } from '../report/replay.js';

// Replays at fleet scale: a Redis job queue (BullMQ), workers on many machines, one page over the set (docs/scale-out.md).
export { redisUrl } from './queue/connection.js';
export {
  enqueueRecordings,
  listRecordings,
  openReplayQueue,
  queueStatus,
  type EnqueuedRecording,
  type QueueStatus,
  type ReplayJobData,
  type ReplayJobProgress,
  type ReplayJobResult,
  type ReportFlags,
  type RetryOptions,
} from './queue/jobs.js';
export { startReplayWorker, type ReplayWorker, type ReplayWorkerOptions } from './queue/worker.js';
export { writeFleetReport } from '../report/fleet.js';
