/** A real live stream on 127.0.0.1 that tests can stop (like a pulled cable) and start again. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { resolveFfmpeg } from '../../src/runtime/ffmpeg.js';

/** A TCP port free right now on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** ffmpeg serving `video`, paced in real time, as MPEG-TS over HTTP to one client (`-listen 1`) at `url`. */
export function startStreamer(video: string, url: string): ChildProcess {
  return spawn(resolveFfmpeg().path, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-i', video, '-c', 'copy', '-f', 'mpegts', '-listen', '1', url], { stdio: 'ignore' });
}

/** ffmpeg sending `video` in a loop, paced in real time, as MPEG-TS over UDP to `url` (`udp://127.0.0.1:<port>`). */
export function startUdpFeeder(video: string, url: string): ChildProcess {
  return spawn(resolveFfmpeg().path, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-stream_loop', '-1', '-i', video, '-c', 'copy', '-f', 'mpegts', `${url}?pkt_size=1316`], { stdio: 'ignore' });
}

/** Kills the streamer at once (SIGKILL: no clean end of stream, as when a cable is pulled). */
export async function stopStreamer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await once(child, 'close');
}
