// The Downloads panel tells the truth: counts that match what is shown, finished cards without
// live controls (Open folder on a done one, Retry on a failed or cancelled one), and a card
// whose model was deleted since says so.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, screenshot, startServer, withScreenshot } from '../harness.mjs';

describe('Downloads panel', () => {
  let server;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));
  const card = (id) => page.locator(`#jobs li[data-id="${id}"]`);

  async function pull(body) {
    const { status, json } = await server.request('POST', '/api/pulls', body);
    assert.equal(status, 200, JSON.stringify(json));
    return json.job_id;
  }

  async function waitState(id, states) {
    for (let i = 0; i < 600; i += 1) {
      const { json } = await server.request('GET', '/api/jobs');
      const job = json.find((j) => j.id === id);
      if (job && states.includes(job.state)) return job;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`job ${id} never reached ${states}`);
  }

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    page = browser.page;
    await page.goto(server.url);
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  step('a finished card offers Open folder and no live controls', async () => {
    const id = await pull({ repo: 'demo/tiny-gguf', files: ['config.json'] });
    await waitState(id, ['done']);
    await page.getByRole('tab', { name: /^Downloads/ }).click();
    await card(id).locator('button[data-action="reveal"]').waitFor();
    const actions = await card(id).locator('.job-actions button').evaluateAll((bs) => bs.map((b) => b.dataset.action));
    assert.deepEqual(actions, ['reveal']);
  });

  step('a running download shows one speed and one ETA: its card and the totals agree', async () => {
    // A limit keeps the download running for minutes while the page is read.
    await server.request('PUT', '/api/settings', { max_rate_bps: 48 * 1024 });
    const id = await pull({ repo: 'demo/tiny-gguf', variant: 'F16' });
    await page.getByRole('tab', { name: /^Downloads/ }).click();
    const read = () => page.evaluate((jobId) => ({
      eta: document.querySelector(`#jobs li[data-id="${jobId}"] .eta`).textContent,
      speed: document.querySelector(`#jobs li[data-id="${jobId}"] .speed`).textContent,
      totals: document.querySelector('#totals').textContent,
      files: document.querySelector(`#jobs li[data-id="${jobId}"] .file-progress`).textContent,
    }), id);
    let seen;
    for (let i = 0; i < 200; i += 1) {
      seen = await read().catch(() => null);
      if (seen && /^ETA \d/.test(seen.eta)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // Minutes read as `mcache pull` prints them (2m05s).
    assert.match(seen.eta, /^ETA \d+m\d\ds$/, JSON.stringify(seen));
    // A file row shows its bytes, not a second speed or ETA of its own.
    assert.doesNotMatch(seen.files, /ETA|\/s/, JSON.stringify(seen));
    // The totals line (one job running) shows the same estimate, not a second one.
    assert.ok(seen.totals.endsWith(`${seen.speed.trim()} · ${seen.eta}`), JSON.stringify(seen));
    await server.request('POST', `/api/jobs/${id}/cancel`);
    await waitState(id, ['cancelled']);
    await server.request('PUT', '/api/settings', { max_rate_bps: null });
  });

  step('a paused job is counted as paused, not active', async () => {
    await server.request('POST', '/api/jobs/pause-all');
    const id = await pull({ repo: 'demo/tiny-gguf', files: ['README.md'] });
    await server.request('POST', `/api/jobs/${id}/pause`);
    await server.request('POST', '/api/jobs/resume-all');
    await waitState(id, ['paused']);
    await page.getByRole('tab', { name: 'Models' }).click();
    await page.getByRole('tab', { name: /^Downloads/ }).click();
    await page.locator('#totals', { hasText: '1 paused' }).waitFor();
    assert.doesNotMatch(await page.locator('#totals').innerText(), /active/);
    assert.equal(await page.locator('#downloads-count').innerText(), '');
    // Cancelled: Retry queues the same files again.
    await server.request('POST', `/api/jobs/${id}/cancel`);
    await waitState(id, ['cancelled']);
    await page.getByRole('tab', { name: 'Models' }).click();
    await page.getByRole('tab', { name: /^Downloads/ }).click();
    const retry = card(id).locator('button[data-action="retry"]');
    await retry.waitFor();
    assert.deepEqual(await card(id).locator('.job-actions button').evaluateAll((bs) => bs.map((b) => b.dataset.action)), ['retry']);
    await retry.click();
    await page.locator('.toast', { hasText: 'Download queued again' }).waitFor();
    const { json: jobs } = await server.request('GET', '/api/jobs');
    const again = jobs.find((j) => j.id !== id && j.repo === 'demo/tiny-gguf' && j.files.some((f) => f.path === 'README.md'));
    assert.ok(again, JSON.stringify(jobs));
    await waitState(again.id, ['done']);
  });

  step('the card of a model deleted since says so', async () => {
    const { status } = await server.request('POST', '/api/cache/delete', { repo: 'demo/tiny-gguf' });
    assert.equal(status, 200);
    await page.getByRole('tab', { name: 'Cache' }).click();
    await page.locator('#cache-empty').waitFor({ state: 'visible' });
    await page.getByRole('tab', { name: /^Downloads/ }).click();
    const done = page.locator('#jobs li[data-state="done"]').first();
    await done.locator('.where', { hasText: 'Removed from the cache since' }).waitFor();
    assert.equal(await done.locator('button[data-action="reveal"]').count(), 0);
    await screenshot(page, 'downloads-finished-cards');
  });

  step('Clear finished empties the list of finished downloads; the statistics keep them', async () => {
    const { json: before } = await server.request('GET', '/api/stats');
    const finished = (await server.request('GET', '/api/jobs')).json.filter((j) => ['done', 'failed', 'cancelled'].includes(j.state));
    assert.ok(finished.length > 0);
    const button = page.getByRole('button', { name: 'Clear finished' });
    assert.equal(await button.isEnabled(), true);
    await button.click();
    await page.locator('.toast', { hasText: `${finished.length} finished download` }).waitFor();
    assert.equal(await page.locator('#jobs li[data-id]').count(), 0);
    await page.locator('#jobs-empty').waitFor({ state: 'visible' });
    assert.equal(await button.isDisabled(), true, 'nothing left to clear');
    const { json: jobs } = await server.request('GET', '/api/jobs');
    assert.equal(jobs.filter((j) => ['done', 'failed', 'cancelled'].includes(j.state)).length, 0);
    const { json: after } = await server.request('GET', '/api/stats');
    assert.equal(after.downloads.length, before.downloads.length, 'the statistics keep them');
    // A new download is listed as usual.
    const { json: queued } = await server.request('POST', '/api/pulls', { repo: 'demo/tiny-gguf', variant: 'Q2_K' });
    await page.locator(`#jobs li[data-id="${queued.job_id}"]`).waitFor();
  });
});
