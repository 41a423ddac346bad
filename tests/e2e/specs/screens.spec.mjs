// Every main screen at 1280×800 and 800×600, light and dark: written to target/app-test/ (the
// app suite's folder of screenshots) for a person to look at, and each checked for what a
// screenshot alone would not catch: nothing wider than the window, no "null"/"undefined".

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, startServer } from '../harness.mjs';

const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'target', 'app-test');
const SIZES = [[1280, 800], [800, 600]];
const SCHEMES = ['light', 'dark'];

describe('Main screens at two sizes, light and dark', () => {
  let server;
  let browser;
  let page;

  before(async () => {
    mkdirSync(OUT, { recursive: true });
    server = await startServer();
    // Something downloaded, so the library, Downloads and Cache screens have content.
    await server.request('POST', '/api/pulls', { repo: 'demo/tiny-gguf', variant: 'Q2_K' });
    for (let i = 0; i < 300; i += 1) {
      const { json: jobs } = await server.request('GET', '/api/jobs');
      if (jobs.some((j) => j.state === 'done')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    browser = await launchBrowser();
    page = browser.page;
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  const screens = [
    ['welcome', async () => { await page.locator('#welcome').waitFor(); }],
    ['models', async () => {
      await page.locator('#welcome-skip').click();
      await page.locator('#results li.result').first().waitFor();
    }],
    ['model-page', async () => {
      await page.locator('#results').getByRole('button', { name: 'demo/tiny-gguf' }).click();
      await page.locator('#model-card h1').waitFor();
    }],
    ['downloads', async () => {
      await page.getByRole('tab', { name: /^Downloads/ }).click();
      await page.locator('#jobs li.job').first().waitFor();
    }],
    ['cache', async () => {
      await page.getByRole('tab', { name: /^Cache/ }).click();
      await page.locator('#panel-cache').getByText('demo/tiny-gguf').first().waitFor();
    }],
    ['settings', async () => {
      await page.getByRole('tab', { name: 'Settings' }).click();
      await page.locator('#settings-form[aria-busy="false"]').waitFor();
    }],
  ];

  for (const scheme of SCHEMES) {
    for (const [width, height] of SIZES) {
      test(`${width}×${height} ${scheme}`, async () => {
        await page.emulateMedia({ colorScheme: scheme });
        await page.setViewportSize({ width, height });
        // Each pass starts as a first start: the welcome screen is shown again.
        await server.request('PUT', '/api/settings', { first_run_done: false });
        await page.goto(server.url);
        await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
        for (const [name, show] of screens) {
          await show();
          await page.waitForTimeout(150);
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          assert.ok(overflow <= 0, `${name} at ${width}×${height} is ${overflow}px wider than the window`);
          const text = await page.locator('#main').innerText();
          assert.doesNotMatch(text, /\bnull\b|\bundefined\b|NaN/, `${name}: ${text.slice(0, 200)}`);
          await page.screenshot({ path: join(OUT, `${name}-${width}x${height}-${scheme}.png`) });
        }
      });
    }
  }
});
