// The example extension (examples/browser-extension) in headless Chromium: its popup asks
// Model Cache's native-messaging host, which `mcache native-host install --user-data-dir`
// registered in the temporary profile, and lists the models a running `mcache serve` has.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, withScreenshot } from '../harness.mjs';

const EXTENSION = resolve(process.cwd(), '..', '..', 'examples', 'browser-extension');

/** The id Chromium gives an extension whose manifest has a `key`: sha256 of the key, in a-p. */
function extensionId() {
  const manifest = JSON.parse(readFileSync(join(EXTENSION, 'manifest.json'), 'utf8'));
  const hash = createHash('sha256').update(Buffer.from(manifest.key, 'base64')).digest('hex');
  return [...hash.slice(0, 32)].map((c) => String.fromCharCode(97 + parseInt(c, 16))).join('');
}

describe('The example extension', () => {
  let server;
  let context;
  let page;
  let profile;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  before(async () => {
    server = await startServer();
    profile = mkdtempSync(join(tmpdir(), 'mcache-e2e-extension-'));
    const id = extensionId();
    // `serve --demo` keeps its app data in the `demo` folder of the data folder.
    execFileSync(process.env.MCACHE_BIN || 'mcache', [
      '--data-dir', join(server.dataDir, 'demo'), 'native-host', 'install', '--browser', 'chromium',
      '--user-data-dir', profile, '--allow-origin', `chrome-extension://${id}/`,
    ]);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
        `--disable-extensions-except=${EXTENSION}`, `--load-extension=${EXTENSION}`,
      ],
    });
    page = await context.newPage();
  });

  after(async () => {
    if (context) await context.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (server) await server.stop();
  });

  step('says when nothing is cached, then lists a pulled model', async () => {
    const popup = `chrome-extension://${extensionId()}/popup.html`;
    await page.goto(popup);
    await page.locator('#status', { hasText: 'No models are cached yet.' }).waitFor({ timeout: 20000 });

    const queued = await server.request('POST', '/api/pulls', { repo: 'demo/tiny-gguf', variant: 'Q4_K_M' });
    assert.equal(queued.status, 200, JSON.stringify(queued.json));
    for (let i = 0; i < 600; i += 1) {
      const jobs = await server.request('GET', '/api/jobs');
      const job = jobs.json.find((j) => j.id === queued.json.job_id);
      if (job.state === 'done') break;
      assert.notEqual(job.state, 'failed', JSON.stringify(job));
      await new Promise((r) => setTimeout(r, 100));
    }
    await page.reload();
    const item = page.locator('li.model', { hasText: 'demo/tiny-gguf' });
    await item.waitFor({ timeout: 20000 });
    assert.match(await item.textContent(), /demo\/tiny-gguf \d/);
  });
});
