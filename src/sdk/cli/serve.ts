/**
 * `lfusion serve <source>`: the live pipeline behind a WebSocket server and the overlay viewer, until
 * Ctrl-C or the end of the source. Files are paced at their frame rate and looped unless `--once`;
 * V4L2 devices take the capture flags (`--input-format`, `--video-size`, `--framerate`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceError } from '../../runtime/errors.js';
import { toVideoInput, type V4l2Options } from '../../runtime/ffmpeg.js';
import { checkAccessOptions } from '../access.js';
import { createPipeline } from '../pipeline.js';
import { modelInfo, ResultServer, type ResultServerOptions } from '../server.js';
import { pipelineOptions, usageError, type CliValues } from './args.js';
import { once, untilSignalled } from './shutdown.js';

/** `--input-format`, `--video-size`, `--framerate`: V4L2 capture settings; `undefined` when none is given. */
function v4l2Options(values: CliValues): V4l2Options | undefined {
  const { 'input-format': inputFormat, 'video-size': videoSize, framerate } = values;
  if (inputFormat === undefined && videoSize === undefined && framerate === undefined) return undefined;
  if (videoSize !== undefined && !/^\d+x\d+$/.test(videoSize)) throw usageError(`--video-size must be WIDTHxHEIGHT, got ${videoSize}`);
  const frameRate = framerate === undefined ? undefined : Number(framerate);
  if (frameRate !== undefined && !(frameRate > 0)) throw usageError(`--framerate must be a positive number, got ${framerate}`);
  return { ...(inputFormat ? { inputFormat } : {}), ...(videoSize ? { videoSize } : {}), ...(frameRate ? { frameRate } : {}) };
}

/** `--token` (or `LFUSION_TOKEN`), `--allow-origin`, `--tls-cert`/`--tls-key`, checked against `--host` before anything starts. */
function accessOptions(values: CliValues, host: string): Pick<ResultServerOptions, 'token' | 'allowedOrigins' | 'tls'> {
  const token = values.token ?? (process.env.LFUSION_TOKEN || undefined);
  const allowedOrigins = values['allow-origin'] ?? [];
  checkAccessOptions(host, { ...(token === undefined ? {} : { token }), allowedOrigins });
  const { 'tls-cert': certFile, 'tls-key': keyFile } = values;
  if ((certFile === undefined) !== (keyFile === undefined)) throw usageError('--tls-cert and --tls-key go together');
  const read = (file: string, flag: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw usageError(`${flag}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  };
  return {
    ...(token === undefined ? {} : { token }),
    allowedOrigins,
    ...(certFile && keyFile ? { tls: { cert: read(certFile, '--tls-cert'), key: read(keyFile, '--tls-key') } } : {}),
  };
}

export async function serve(source: string, values: CliValues): Promise<void> {
  const port = values.port === undefined ? 8080 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw usageError(`--port must be 0..65535, got ${values.port}`);
  const host = values.host ?? '127.0.0.1';
  const access = accessOptions(values, host);
  const v4l2 = v4l2Options(values);
  const isFile = toVideoInput(source, v4l2).kind === 'file';
  // The pipeline opens its source only when results are subscribed: check a file before printing any URL.
  if (isFile && !existsSync(source)) throw new SourceError('SOURCE_NOT_FOUND', `${source} does not exist`, source);
  const pipeline = await createPipeline({
    ...pipelineOptions(source, values, 'live'),
    live: true,
    image: true,
    video: isFile ? { realtime: true, ...(values.once ? {} : { inputOptions: ['-stream_loop', '-1'] }) } : v4l2 ? { v4l2 } : {},
  });
  const { manifest } = pipeline.model;
  const server = await ResultServer.listen({
    port,
    host,
    ...access,
    model: modelInfo(manifest),
    streams: pipeline.streams,
  }).catch(async (error: unknown) => {
    await pipeline.close();
    throw error;
  });
  process.stdout.write(`${server.url}\n`);
  const features = [pipeline.region ? 'region detection' : '', pipeline.reconnect ? 'reconnecting' : ''].filter(Boolean).join(', ');
  process.stderr.write(`lfusion: serving ${source} with ${manifest.name} (${pipeline.pool.executionProvider}${features ? `; ${features}` : ''}); Ctrl-C stops\n`);
  process.stderr.write(`lfusion: overlay viewer at ${server.viewerUrl}\n`);
  const sourceLog = pipeline.sourceEvents$.subscribe((event) =>
    process.stderr.write(event.type === 'source-lost' ? `lfusion: source lost (${event.code}), retry ${event.attempt} in ${event.retryInMs} ms\n` : `lfusion: source restored after ${event.downtimeMs} ms\n`),
  );
  const delivery = server.deliver(pipeline);
  const stop = once(async () => {
    delivery.stop();
    sourceLog.unsubscribe();
    await server.close();
    await pipeline.close();
  });
  await untilSignalled(delivery.done, stop).finally(stop);
}
