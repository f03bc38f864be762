/** The shipped model package (models/packages/lfusion-hc18) and its reference vectors, for tests that need the real model. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SHIPPED_PACKAGE = fileURLToPath(new URL('../../models/packages/lfusion-hc18', import.meta.url));

/** True when the package is there; otherwise says which tests are skipped and why. */
export function shippedPackagePresent(what: string): boolean {
  if (existsSync(`${SHIPPED_PACKAGE}/manifest.json`)) return true;
  console.warn(`skipped: ${what} (no model package at ${SHIPPED_PACKAGE}; build it with \`make -C models all\`)`);
  return false;
}
