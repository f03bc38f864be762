/**
 * `lfusion worker`: runs queued replay jobs until stopped. The first Ctrl-C (or SIGTERM) stops taking jobs and
 * finishes the running ones; a second one quits at once, and the jobs it leaves are taken over by another
 * worker once their locks expire.
 */
import { redisUrl } from '../queue/connection.js';
import { startReplayWorker } from '../queue/worker.js';
import { integerOption, onlyFlags, type CliValues } from './args.js';

export async function worker(values: CliValues): Promise<number> {
  onlyFlags('worker', values, ['redis', 'queue', 'concurrency', 'lock-duration']);
  const concurrency = integerOption(values, 'concurrency', 1) ?? 1;
  const lockSeconds = integerOption(values, 'lock-duration', 1);
  const url = redisUrl(values.redis);
  const running = await startReplayWorker({ redis: url, concurrency, ...(values.queue ? { queue: values.queue } : {}), ...(lockSeconds ? { lockDurationMs: lockSeconds * 1000 } : {}) });
  process.stderr.write(`lfusion: worker ready (concurrency ${concurrency}); Ctrl-C finishes the running jobs and stops\n`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = () => {
      if (stopping) process.exit(130);
      stopping = true;
      process.stderr.write(`\nstopping: finishing ${running.running} running job(s) (Ctrl-C again quits at once; another worker takes them over)\n`);
      void running.close().then(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return 0;
}
