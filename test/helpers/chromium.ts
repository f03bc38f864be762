/** Debian's headless Chromium through playwright-core, for tests of the pages the SDK writes. */
import type { Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/**
 * Opens `file` and waits for `window[readyGlobal]` (the page's own "drawn" flag); `use` reads the page. Also returns
 * the console errors and every request that left the machine (an offline page makes none).
 */
export async function inChromium<T extends object>(file: string, readyGlobal: string, use: (page: Page) => Promise<T>): Promise<T & { errors: string[]; requests: string[] }> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (message) => message.type() === 'error' && errors.push(message.text()));
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('request', (request) => !request.url().startsWith('file:') && !request.url().startsWith('data:') && requests.push(request.url()));
    await page.goto(`file://${file}`);
    await page.waitForFunction((name) => (window as unknown as Record<string, unknown>)[name] !== undefined, readyGlobal, { timeout: 10_000 });
    return { ...(await use(page)), errors, requests };
  } finally {
    await browser.close();
  }
}
