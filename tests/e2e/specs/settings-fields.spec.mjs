// Settings: every refused field is marked at once, each with its reason beside it (from the
// form's own checks and from the engine's), and nothing of a refused change is saved.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, screenshot, startServer, withScreenshot } from '../harness.mjs';

describe('Settings field errors', () => {
  let server;
  let browser;
  let page;
  const step = (name, body) => test(name, withScreenshot(() => page, name, body));

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    page = browser.page;
    await page.goto(server.url);
    await page.locator('#engine-status', { hasText: 'Connected' }).waitFor();
    await page.getByRole('tab', { name: 'Settings' }).click();
    await page.locator('#settings-form[aria-busy="false"]').waitFor();
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  step('several bad fields are each marked beside themselves, and nothing is saved', async () => {
    const { json: before } = await server.request('GET', '/api/settings');
    await page.locator('#set-connections').fill('0');
    await page.locator('#set-battery-mode').selectOption('below');
    await page.locator('#set-battery-percent').fill('150');
    await page.locator('#set-endpoint').fill('not a url');
    await page.getByRole('button', { name: 'Save settings' }).click();
    for (const [field, input, text] of [
      ['connections', '#set-connections', /1 to 256/],
      ['battery_policy', '#set-battery-percent', /0 to 100/],
      ['endpoint', '#set-endpoint', /not an http\(s\) URL/],
    ]) {
      const note = page.locator(`#err-${field}`);
      await note.waitFor();
      assert.match(await note.innerText(), text);
      assert.equal(await page.locator(input).getAttribute('aria-invalid'), 'true');
      assert.match(await page.locator(input).getAttribute('aria-describedby'), new RegExp(`err-${field}`));
    }
    const summary = await page.locator('#settings-error').innerText();
    assert.match(summary, /3 settings need a fix/);
    assert.doesNotMatch(summary, /null|undefined/);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'set-connections');
    await screenshot(page, 'settings-field-errors');
    const { json: after } = await server.request('GET', '/api/settings');
    assert.deepEqual(after, before, 'a refused change saves nothing');
  });

  step('a field the engine refuses is marked too, and a fix clears the marks', async () => {
    await page.reload();
    await page.getByRole('tab', { name: 'Settings' }).click();
    await page.locator('#settings-form[aria-busy="false"]').waitFor();
    // Well-formed for the form, refused by the engine: a relative folder.
    await page.locator('#set-cache-dir').fill('relative/folder');
    await page.getByRole('button', { name: 'Save settings' }).click();
    const note = page.locator('#err-cache_dir');
    await note.waitFor();
    assert.doesNotMatch(await note.innerText(), /`/);
    assert.equal(await page.locator('#set-cache-dir').getAttribute('aria-invalid'), 'true');
    await page.locator('#set-cache-dir').fill((await server.request('GET', '/api/settings')).json.cache_dir);
    await page.locator('#set-connections').fill('12');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#settings-saved', { hasText: 'Saved.' }).waitFor();
    assert.equal(await page.locator('#settings-form .field-error').count(), 0);
    assert.equal(await page.locator('#settings-form [aria-invalid="true"]').count(), 0);
    assert.equal((await server.request('GET', '/api/settings')).json.connections, 12);
  });

  step('the team bucket: a bad address is marked, a new bucket is a change only the app makes', async () => {
    await page.reload();
    await page.getByRole('tab', { name: 'Settings' }).click();
    await page.locator('#settings-form[aria-busy="false"]').waitFor();
    assert.match(await page.locator('#bucket-credentials').innerText(), /none found/);
    await page.locator('#set-bucket').fill('team-models/hf');
    await page.locator('#set-bucket-endpoint').fill('minio:9000');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#err-bucket').waitFor();
    assert.match(await page.locator('#err-bucket').innerText(), /s3:\/\/bucket/);
    assert.match(await page.locator('#err-bucket_endpoint').innerText(), /not an http\(s\) URL/);
    // Well formed: over the local API a new bucket (where the AWS credentials go) is refused
    // as a trust change, named beside its field; nothing is saved.
    await page.locator('#set-bucket').fill('s3://team-models/hf');
    await page.locator('#set-bucket-endpoint').fill('http://127.0.0.1:9000');
    await page.locator('#set-bucket-push').check();
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#settings-error').filter({ hasText: /./ }).waitFor();
    assert.doesNotMatch(await page.locator('#settings-error').innerText(), /null|undefined|forbidden_setting/);
    const { json: settings } = await server.request('GET', '/api/settings');
    assert.equal(settings.bucket, null);
    assert.equal(settings.bucket_push, false);
  });

  step('notification kinds turn off one by one, and the wait is checked beside its field', async () => {
    await page.reload();
    await page.getByRole('tab', { name: 'Settings' }).click();
    await page.locator('#settings-form[aria-busy="false"]').waitFor();
    for (const kind of ['finished', 'failed', 'deferred', 'storage', 'evicted', 'updates']) {
      assert.equal(await page.locator(`#set-notify-${kind}`).isChecked(), true, `${kind} is on by default`);
    }
    assert.equal(await page.locator('#set-notify-deferred-after').inputValue(), '10');
    await page.getByLabel('When a download fails, with what to do').uncheck();
    await page.locator('#set-notify-deferred-after').fill('0');
    await page.getByRole('button', { name: 'Save settings' }).click();
    const note = page.locator('#err-notify_deferred_after');
    await note.waitFor();
    assert.match(await note.innerText(), /1 to 10080/);
    assert.equal(await page.locator('#set-notify-deferred-after').getAttribute('aria-invalid'), 'true');
    assert.equal((await server.request('GET', '/api/settings')).json.notify_failed, true, 'nothing saved');
    await page.locator('#set-notify-deferred-after').fill('15');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#settings-saved', { hasText: 'Saved.' }).waitFor();
    const saved = (await server.request('GET', '/api/settings')).json;
    assert.equal(saved.notify_failed, false);
    assert.equal(saved.notify_finished, true);
    assert.equal(saved.notify_deferred_after, '15m');
    // Turning the waiting notice off disables its minutes.
    await page.getByLabel(/When a download waits/).uncheck();
    assert.equal(await page.locator('#set-notify-deferred-after').isDisabled(), true);
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#settings-saved', { hasText: 'Saved.' }).waitFor();
    assert.equal((await server.request('GET', '/api/settings')).json.notify_deferred, false);
    await screenshot(page, 'settings-notifications');
  });
});
