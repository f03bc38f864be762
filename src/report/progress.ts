/**
 * A progress bar on stderr: frames done of the total (when known), frames per second and time left. On a
 * terminal it redraws one line (at most 10 times a second); otherwise it prints a line every 2 s.
 */

/** One progress line: `[####....] 12/340 frames  3.1 fps  ETA 106s` (no bar without a total). */
export function progressLine(done: number, total: number | undefined, elapsedMs: number, label = ''): string {
  const seconds = elapsedMs / 1000;
  const fps = seconds > 0 ? done / seconds : 0;
  const prefix = label ? `${label}  ` : '';
  if (total === undefined) return `${prefix}${done} frames  ${fps.toFixed(1)} fps`;
  const width = 30;
  const filled = Math.min(width, Math.round((done / Math.max(total, 1)) * width));
  const eta = fps > 0 ? Math.max(0, (total - done) / fps) : NaN;
  return `${prefix}[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} frames  ${fps.toFixed(1)} fps  ETA ${Number.isNaN(eta) ? '?' : `${eta.toFixed(0)}s`}`;
}

export class ProgressBar {
  private done = 0;
  private lastDrawn = 0;
  private readonly started = Date.now();
  private readonly tty: boolean;

  /** `total`: frames expected over the whole run, when known; `label()` is shown before the bar (e.g. the current file). */
  constructor(
    private readonly total: number | undefined,
    private readonly label: () => string = () => '',
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = stream.isTTY === true;
  }

  /** Counts one more frame and redraws when due. */
  tick(): void {
    this.done += 1;
    this.draw(false);
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    this.draw(true);
  }

  get frames(): number {
    return this.done;
  }

  private draw(final: boolean): void {
    if (!final && Date.now() - this.lastDrawn < (this.tty ? 100 : 2000)) return;
    this.lastDrawn = Date.now();
    const line = progressLine(this.done, this.total, Date.now() - this.started, this.label());
    this.stream.write(this.tty ? `\r\x1b[K${line}${final ? '\n' : ''}` : `${line}\n`);
  }
}
