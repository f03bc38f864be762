/**
 * The model package manifest's `biometry` section, patched as text so that every other byte stays as the Python
 * exporter wrote it: set or removed (scripts/biometry.ts, the 2D calibration), or its `clip` part set
 * (scripts/clip-biometry.ts, the clip heads' calibration).
 */

/**
 * The manifest text with its `biometry` section set and every other byte unchanged (the Python exporter's number
 * formatting included): the section is kept as the manifest's last key, replaced or appended.
 */
export function withBiometrySection(text: string, section: unknown): string {
  const parsed = JSON.parse(text) as Record<string, unknown>;
  const body = JSON.stringify(section, null, 1).replaceAll('\n', '\n ');
  const marker = ',\n "biometry": ';
  const at = text.lastIndexOf(marker);
  if ('biometry' in parsed && (at < 0 || Object.keys(parsed).at(-1) !== 'biometry')) throw new Error('the manifest\'s biometry section is not its last key: patch it by hand');
  const head = 'biometry' in parsed ? text.slice(0, at) : text.slice(0, text.lastIndexOf('}')).trimEnd();
  const next = `${head}${marker}${body}\n}\n`;
  JSON.parse(next); // still valid JSON
  return next;
}

/** The manifest text without its `biometry` section (every other byte unchanged). */
export function withoutBiometrySection(text: string): string {
  const parsed = JSON.parse(text) as Record<string, unknown>;
  if (!('biometry' in parsed)) return text;
  const at = text.lastIndexOf(',\n "biometry": ');
  if (at < 0 || Object.keys(parsed).at(-1) !== 'biometry') throw new Error('the manifest\'s biometry section is not its last key: patch it by hand');
  const next = `${text.slice(0, at)}\n}\n`;
  JSON.parse(next);
  return next;
}

/**
 * The manifest text with `biometry.clip` set (the 2D calibration kept as it is). The 2D section must exist: the clip
 * calibration is made after it (`make -C models biometry` before `clip-biometry`).
 */
export function withClipCalibration(text: string, clip: unknown): string {
  const biometry = (JSON.parse(text) as { biometry?: Record<string, unknown> }).biometry;
  if (!biometry) throw new Error('the manifest has no biometry section: calibrate the 2D path first (scripts/biometry.ts calibrate)');
  return withBiometrySection(text, { ...biometry, clip });
}

/** A calibration as the manifest holds it (`biometry`, or its `clip` part): the conformal scale, its floor and how it was found. */
export function calibrationSection(scale: number, floor: number, calibration: Record<string, unknown>) {
  return { interval: 'normalised-conformal-outline', intervalScale: Number(scale.toFixed(4)), intervalFloor: floor, calibration };
}
