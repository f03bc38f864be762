/**
 * Live overlay: a capture card or a network stream in, the overlay viewer (and the WebSocket) out.
 *
 *   node --import tsx src/examples/live-overlay.ts /dev/video0 --input-format mjpeg --video-size 1920x1080 --framerate 30
 *   node --import tsx src/examples/live-overlay.ts udp://0.0.0.0:5000
 *   node --import tsx src/examples/live-overlay.ts assets/sample.mp4 [--once]   (a file, paced like a scanner)
 *
 * Options: --port (default 8080, 0 picks a free one), --model <package>, --uncertainty (fused map, OOD alerts).
 * Open the printed viewer URL in a browser on this machine; Ctrl-C stops.
 */
import { parseArgs } from 'node:util';
import { createPipeline, modelInfo, ResultServer, type FromVideoOptions } from '../sdk/index.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: 'string', default: '8080' },
    model: { type: 'string' },
    uncertainty: { type: 'boolean' },
    'input-format': { type: 'string' },
    'video-size': { type: 'string' },
    framerate: { type: 'string' },
    once: { type: 'boolean' },
  },
});
const source = positionals[0] ?? '/dev/video0';

// How to read the source. A capture card: what `ffmpeg -f v4l2 -list_formats all -i /dev/video0` offers.
// A file: paced at its own frame rate, looped unless --once, so that it behaves like a scanner.
let video: Omit<FromVideoOptions, 'flow'>;
if (source.startsWith('/dev/')) {
  video = {
    v4l2: {
      ...(values['input-format'] ? { inputFormat: values['input-format'] } : {}),
      ...(values['video-size'] ? { videoSize: values['video-size'] } : {}),
      ...(values.framerate ? { frameRate: Number(values.framerate) } : {}),
    },
  };
} else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
  video = { stallTimeoutMs: 3000 }; // a silent UDP stream counts as lost after 3 s
} else {
  video = { realtime: true, ...(values.once ? {} : { inputOptions: ['-stream_loop', '-1'] }) };
}

const pipeline = await createPipeline({
  source,
  ...(values.model ? { modelPath: values.model } : {}),
  live: true, // keep only the newest frame while inference is busy
  video,
  image: true, // the viewer draws over the frame the model saw
  analysis: values.uncertainty ? 'uncertainty' : 'segment',
  // Defaults for devices and URLs, written out to show the knobs:
  //   reconnect: { backoff: { initialMs: 500, factor: 2, maxMs: 10_000 } },  // false: end when the source is lost
  //   region: {},                                                            // detect the ultrasound image on the screen
  //   region: { region: { x: 560, y: 140, width: 900, height: 700 } },       // or fix it (screen pixels)
});
const server = await ResultServer.listen({ port: Number(values.port), model: modelInfo(pipeline.model.manifest), streams: pipeline.streams });
console.log(`viewer: ${server.viewerUrl}`);
console.log(`websocket: ${server.url}`);

pipeline.sourceEvents$.subscribe((event) =>
  console.warn(event.type === 'source-lost' ? `source lost (${event.code}), retry ${event.attempt} in ${event.retryInMs} ms` : `source restored after ${event.downtimeMs} ms`),
);
const delivery = server.deliver(pipeline);

let stopping: Promise<void> | undefined;
const stop = (): Promise<void> =>
  (stopping ??= (async () => {
    delivery.stop();
    await server.close();
    await pipeline.close();
  })());
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());

await delivery.done.catch((error: Error) => {
  console.error(`stopped: ${error.message}`);
  process.exitCode = 1;
});
await stop();
