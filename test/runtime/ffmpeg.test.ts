import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  greyDecodeArgs,
  isErrorLine,
  OutputSizeReader,
  parseShowinfo,
  resolveFfmpeg,
  saysSourceMissing,
  toVideoInput,
} from '../../src/runtime/ffmpeg.js';

test('resolution order: explicit path, then FFMPEG_PATH, then the shipped binary', () => {
  assert.equal(resolveFfmpeg('/opt/ff', { FFMPEG_PATH: '/env/ff' }), { path: '/opt/ff', origin: 'option' });
  assert.equal(resolveFfmpeg(undefined, { FFMPEG_PATH: '/env/ff' }), { path: '/env/ff', origin: 'FFMPEG_PATH' });
  const shipped = resolveFfmpeg(undefined, {});
  assert.is(shipped.origin, '@ffmpeg-installer/ffmpeg');
  assert.match(shipped.path, /@ffmpeg-installer[/\\][^/\\]+[/\\]ffmpeg(\.exe)?$/);
});

test('classifies sources: network URLs, /dev/videoN (or any path with V4L2 options), files', () => {
  assert.equal(toVideoInput('udp://127.0.0.1:5000'), { kind: 'network', url: 'udp://127.0.0.1:5000' });
  assert.equal(toVideoInput('RTSP://cam/stream').kind, 'network');
  assert.equal(toVideoInput('/dev/video2'), { kind: 'v4l2', device: '/dev/video2', capture: {} });
  assert.equal(toVideoInput('/dev/v4l/by-id/card', { videoSize: '1920x1080' }).kind, 'v4l2');
  assert.equal(toVideoInput('clips/scan:1.mp4'), { kind: 'file', path: 'clips/scan:1.mp4' });
});

test('decode arguments: file input, grey raw video out, scaling, showinfo last, realtime', () => {
  const args = greyDecodeArgs({ input: toVideoInput('a:b.mp4'), width: 224, height: 224, realtime: true });
  assert.ok(args.indexOf('-re') < args.indexOf('-i'));
  assert.is(args[args.indexOf('-i') + 1], 'file:a:b.mp4');
  assert.is(args[args.indexOf('-vf') + 1], 'format=gray,scale=224:224,showinfo');
  assert.equal(args.slice(-5), ['-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1']);
  assert.is(greyDecodeArgs({ input: toVideoInput('a.mp4'), width: 400 }).join(' ').includes('scale=400:-1'), true);
  assert.is(greyDecodeArgs({ input: toVideoInput('a.mp4') }).join(' ').includes('scale'), false);
});

test('decode arguments: V4L2 capture options and RTSP over TCP go before -i', () => {
  const v4l2 = greyDecodeArgs({
    input: toVideoInput('/dev/video0', { inputFormat: 'mjpeg', videoSize: '1920x1080', frameRate: 30 }),
    inputOptions: ['-thread_queue_size', '64'],
  });
  const beforeInput = v4l2.slice(0, v4l2.indexOf('-i')).join(' ');
  assert.ok(beforeInput.endsWith('-f v4l2 -input_format mjpeg -video_size 1920x1080 -framerate 30 -thread_queue_size 64'));
  assert.is(v4l2[v4l2.indexOf('-i') + 1], '/dev/video0');
  const rtsp = greyDecodeArgs({ input: toVideoInput('rtsp://cam/stream') });
  assert.ok(rtsp.join(' ').includes('-rtsp_transport tcp -i rtsp://cam/stream'));
});

test('parses showinfo frame lines from ffmpeg 4 and 5, and nothing else', () => {
  const v4 = '[Parsed_showinfo_2 @ 0x37e68e40] [info] n:  12 pts:  12288 pts_time:1.2     pos: 5025 fmt:gray s:160x120';
  const v5 = '[Parsed_showinfo_2 @ 0x55b6f2413c80] [info] n:   0 pts:      0 pts_time:0       pos:       48 fmt:gray';
  assert.equal(parseShowinfo(v4), { n: 12, ptsTime: 1.2 });
  assert.equal(parseShowinfo(v5), { n: 0, ptsTime: 0 });
  const noPts = parseShowinfo('[Parsed_showinfo_0 @ 0x1] [info] n:   3 pts:NOPTS pts_time:NOPTS pos: -1');
  assert.is(noPts?.n, 3);
  assert.ok(Number.isNaN(noPts?.ptsTime));
  assert.is(parseShowinfo('[Parsed_showinfo_2 @ 0x1] [info] config in time_base: 1/10240, frame_rate: 10/1'), null);
  assert.is(parseShowinfo('[info] frame=   30 fps=0.0 q=-0.0 Lsize=    2250kB'), null);
});

test('reads the frame size from the Output section only, as ffmpeg 4 and 5 print it', () => {
  const reader = new OutputSizeReader();
  const input = '[info]     Stream #0:0: Video: rawvideo (Y800 / 0x30303859), gray, 640x480, 20 fps';
  assert.is(reader.read(input), null);
  assert.is(reader.read("[info] Output #0, rawvideo, to 'pipe:1':"), null);
  assert.equal(
    reader.read('[info]     Stream #0:0(und): Video: rawvideo (Y800 / 0x30303859), gray, 224x168 [SAR 1:1 DAR 4:3], q=2-31'),
    { width: 224, height: 168 },
  );
  const ffmpeg5 = new OutputSizeReader();
  ffmpeg5.read("[info] Output #0, rawvideo, to 'pipe:1':");
  assert.equal(
    ffmpeg5.read('[info]   Stream #0:0(und): Video: rawvideo (Y800 / 0x30303859), gray(pc, progressive), 80x54, q=2-31'),
    { width: 80, height: 54 },
  );
});

test('tells errors and missing sources apart in stderr', () => {
  assert.ok(isErrorLine('[mov,mp4,m4a,3gp,3g2,mj2 @ 0x3f48dc40] [error] stream 0, offset 0x26d5: partial file'));
  assert.ok(isErrorLine('[fatal] something'));
  assert.not.ok(isErrorLine('[warning] Finishing stream 0:0 without any data written to it.'));
  assert.ok(saysSourceMissing('[error] file:/tmp/missing.mp4: No such file or directory'));
  assert.ok(saysSourceMissing('[tcp @ 0x1] [error] Connection to tcp://127.0.0.1:9 failed: Connection refused'));
  assert.not.ok(saysSourceMissing('[error] /tmp/rand.mp4: Invalid data found when processing input'));
});

test.run();
