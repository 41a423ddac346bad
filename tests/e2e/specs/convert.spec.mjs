// The Cache tab's Convert to GGUF: a precision and a button per cached model, wired through the
// API to the engine, which queues the conversion or says plainly why it cannot.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, startServer, withScreenshot } from '../harness.mjs';

describe('Convert to GGUF', () => {
  let server;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    page = browser.page;
    const { status, json } = await server.request('POST', '/api/pulls', { repo: 'demo/tiny-gguf', files: ['config.json', 'tiny-model-Q2_K.gguf'] });
    assert.equal(status, 200, JSON.stringify(json));
    for (let i = 0; i < 600; i += 1) {
      const { json: jobs } = await server.request('GET', '/api/jobs');
      if (jobs.find((j) => j.id === json.job_id && j.state === 'done')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await page.goto(server.url);
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  step('a cached model offers F16 and Q8_0, and a GGUF-only model is refused with the reason', async () => {
    await page.getByRole('tab', { name: 'Cache' }).click();
    const row = page.locator('#cache-table tr[data-repo="demo/tiny-gguf"]');
    const precision = row.getByRole('combobox', { name: 'GGUF precision for demo/tiny-gguf' });
    await precision.waitFor();
    assert.deepEqual(await precision.locator('option').allTextContents(), ['F16', 'Q8_0']);
    await precision.selectOption('q8_0');
    await row.getByRole('button', { name: 'Convert to GGUF: demo/tiny-gguf' }).click();
    const alert = page.locator('#toasts [role="alert"]').last();
    await alert.waitFor();
    assert.match(await alert.textContent(), /no safetensors weights to convert/);
    const { json: jobs } = await server.request('GET', '/api/jobs');
    assert.equal(jobs.filter((j) => (j.variant || '').startsWith('GGUF')).length, 0, 'nothing queued');
  });

  step('the API refuses an unknown precision', async () => {
    const { status, json } = await server.request('POST', '/api/convert', { repo: 'demo/tiny-gguf', type: 'q4_k_m' });
    assert.equal(status, 400, JSON.stringify(json));
    assert.equal(json.error.kind, 'invalid_input');
  });
});
