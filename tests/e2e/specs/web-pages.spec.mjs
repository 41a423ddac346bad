// Web pages and the mirror: the example page (`examples/web/`), served from an origin the user
// allowed, reads a cached model through the mirror and checks its sha256; the same page from an
// origin not on the list is refused, preflight and WebRTC signaling included; the settings show
// the origin's last use. A 64 MiB model comes over a WebRTC data channel, verified, and its
// speed is printed beside the HTTP path's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, launchBrowser, screenshot } from '../harness.mjs';

const EXAMPLE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'examples', 'web');

/** Serves the example page's two files on 127.0.0.1 (a free port); resolves to its origin. */
function servePage() {
  const server = createServer((request, response) => {
    const wanted = new URL(request.url, 'http://x').pathname.slice(1);
    const name = ['mirror-client.js', 'mirror-webrtc.js'].includes(wanted) ? wanted : 'index.html';
    response.writeHead(200, { 'Content-Type': name.endsWith('.js') ? 'text/javascript' : 'text/html' });
    response.end(readFileSync(join(EXAMPLE, name)));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` })));
}

let server;
let browser;
let allowed;
let other;
let mirror;

before(async () => {
  server = await startServer({ args: ['--demo-big-size', '64MiB'] });
  mirror = JSON.parse(readFileSync(join(server.dataDir, 'demo', 'api.json'), 'utf8')).mirror_url;
  allowed = await servePage();
  other = await servePage();
  // Chromium offers no loopback ICE candidates unless told to: the mirror is on 127.0.0.1.
  browser = await launchBrowser({ args: ['--allow-loopback-in-peer-connection'] });
  // The model the page reads: pulled the ordinary way, through the API.
  for (const repo of ['demo/tiny-gguf', 'demo/big']) {
    const pulled = await server.request('POST', '/api/pulls', { repo });
    assert.ok([200, 202].includes(pulled.status), JSON.stringify(pulled.json));
    const id = pulled.json.job_id;
    for (let i = 0; ; i++) {
      const jobs = await server.request('GET', '/api/jobs');
      const job = jobs.json.find((j) => j.id === id);
      if (job.state === 'done') break;
      assert.ok(!['failed', 'cancelled'].includes(job.state), JSON.stringify(job));
      assert.ok(i < 1200, `the pull of ${repo} did not finish`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const set = await server.request('PUT', '/api/settings', { allowed_origins: [allowed.origin] });
  assert.equal(set.status, 200, JSON.stringify(set.json));
});

after(async () => {
  await browser?.close();
  allowed?.server.close();
  other?.server.close();
  await server?.stop();
});

/** The cached GGUF with its sha256, from the mirror's listing of what the cache holds (no
 * token, no Origin: a program). */
async function cachedGguf(repo = 'demo/tiny-gguf') {
  const response = await fetch(`${mirror}/api/models/${repo}/tree/main?recursive=true`);
  assert.equal(response.status, 200);
  const files = await response.json();
  const gguf = files.find((f) => f.path.endsWith('.gguf') && f.lfs);
  assert.ok(gguf, JSON.stringify(files));
  return gguf;
}

async function runPage(origin, path) {
  const page = browser.page;
  await page.goto(`${origin}/index.html?mirror=${encodeURIComponent(mirror)}&repo=demo/tiny-gguf&path=${encodeURIComponent(path)}`);
  await page.locator('#result[data-done="true"]').waitFor({ timeout: 60000 });
  return JSON.parse(await page.locator('#result').innerText());
}

test('a page from an allowed origin reads a cached model and verifies it', async () => {
  const gguf = await cachedGguf();
  const result = await runPage(allowed.origin, gguf.path);
  await screenshot(browser.page, 'web-page-allowed');
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.equal(result.sha256, gguf.lfs.oid);
  assert.equal(result.verified, true);
  assert.equal(result.size, gguf.size);
  const settings = await server.request('GET', '/api/settings');
  assert.ok(settings.json.origins_last_used[allowed.origin] > 0, JSON.stringify(settings.json.origins_last_used));
  // The person sees the list and each origin's last use in Settings, and edits it there.
  const page = browser.page;
  await page.goto(server.url);
  await page.getByRole('tab', { name: /^Settings/ }).click();
  await page.locator('#settings-form[aria-busy="false"]').waitFor();
  const field = page.getByLabel('Web pages that may use the local mirror');
  assert.equal(await field.inputValue(), allowed.origin);
  assert.match(await page.locator('#origins-last-used').innerText(), new RegExp(`${allowed.origin.replace(/[.:/]/g, '\\$&')}: last used`));
  await field.fill(`${allowed.origin}\nhttps://Example.COM:443/`);
  await page.getByRole('button', { name: /^Save/ }).click();
  await page.locator('#settings-saved', { hasText: /Saved/ }).waitFor();
  const saved = await server.request('GET', '/api/settings');
  assert.deepEqual(saved.json.allowed_origins, [allowed.origin, 'https://example.com']);
  await screenshot(page, 'web-pages-settings');
  // Removing it again leaves the allowed page's origin alone.
  await server.request('PUT', '/api/settings', { allowed_origins: [allowed.origin] });
});

test('a page from another origin is refused, preflight included', async () => {
  const gguf = await cachedGguf();
  const result = await runPage(other.origin, gguf.path);
  assert.equal(result.ok, false, JSON.stringify(result));
  // What the browser saw: the mirror refused the origin (no CORS headers, 403).
  const direct = await fetch(`${mirror}/demo/tiny-gguf/resolve/main/${gguf.path}`, { headers: { Origin: other.origin } });
  assert.equal(direct.status, 403);
  assert.equal(direct.headers.get('access-control-allow-origin'), null);
  const preflight = await fetch(`${mirror}/demo/tiny-gguf/resolve/main/${gguf.path}`, {
    method: 'OPTIONS',
    headers: { Origin: other.origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
  });
  assert.equal(preflight.status, 403);
  const allowedPreflight = await fetch(`${mirror}/demo/tiny-gguf/resolve/main/${gguf.path}`, {
    method: 'OPTIONS',
    headers: { Origin: allowed.origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
  });
  assert.equal(allowedPreflight.status, 204);
  assert.equal(allowedPreflight.headers.get('access-control-allow-origin'), allowed.origin);
  // Trusting an origin with the token is the person's decision in the app, never an API call.
  const trust = await server.request('PUT', '/api/settings', { origins_without_token: [allowed.origin] });
  assert.equal(trust.status, 403, JSON.stringify(trust.json));
});

test('a 64 MiB model over a WebRTC data channel, verified, beside HTTP', async () => {
  const big = await cachedGguf('demo/big');
  assert.ok(big.size > 60 * 1024 * 1024, String(big.size));
  const page = browser.page;
  await page.goto(`${allowed.origin}/index.html`);
  const measured = await page.evaluate(async ({ mirror, path }) => {
    const { connect } = await import('./mirror-webrtc.js');
    const { fetchVerified } = await import('./mirror-client.js');
    const started = performance.now();
    const channel = await connect(mirror);
    const connectedAt = performance.now();
    const file = await channel.fetchFile('demo/big', path);
    const channelSeconds = (performance.now() - connectedAt) / 1000;
    // A range, and a file the page may not read (not cached): errors come back on the channel.
    const part = await channel.fetchFile('demo/big', path, { range: [100, 200] });
    let refused = null;
    try { await channel.fetchFile('demo/tiny-safetensors', 'config.json'); } catch (error) { refused = { message: error.message, status: error.status }; }
    channel.close();
    const httpStarted = performance.now();
    const overHttp = await fetchVerified(mirror, 'demo/big', path);
    const httpSeconds = (performance.now() - httpStarted) / 1000;
    return {
      sha256: file.sha256, size: file.size, verified: file.verified, partLength: part.bytes.byteLength, refused,
      connectSeconds: (connectedAt - started) / 1000, channelSeconds, httpSeconds, httpSha256: overHttp.sha256,
    };
  }, { mirror, path: big.path });
  assert.equal(measured.sha256, big.lfs.oid);
  assert.equal(measured.verified, true);
  assert.equal(measured.size, big.size);
  assert.equal(measured.partLength, 100);
  assert.equal(measured.refused?.status, 401, JSON.stringify(measured.refused));
  assert.equal(measured.httpSha256, big.lfs.oid);
  const mb = (seconds) => (big.size / seconds / 1e6).toFixed(1);
  console.log(`data channel: ${mb(measured.channelSeconds)} MB/s (connected in ${measured.connectSeconds.toFixed(2)} s); HTTP: ${mb(measured.httpSeconds)} MB/s; ${(big.size / 1048576).toFixed(1)} MiB, same page, same run`);
  // Signaling refuses pages of origins not on the list.
  const signal = await fetch(`${mirror}/api/webrtc/offer`, { method: 'POST', headers: { Origin: other.origin, 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(signal.status, 403);
});

test('a proxy is a setting only the app changes: a browser page is told so', async () => {
  const page = browser.page;
  await page.goto(server.url);
  await page.getByRole('tab', { name: /^Settings/ }).click();
  await page.locator('#settings-form[aria-busy="false"]').waitFor();
  await page.getByLabel('Proxy', { exact: true }).fill('ftp://proxy.example');
  await page.getByRole('button', { name: /^Save/ }).click();
  // Refused beside the field itself.
  await page.locator('#err-proxy', { hasText: 'is not an http(s) proxy URL' }).waitFor();
  await page.getByLabel('Proxy', { exact: true }).fill('http://proxy.example:3128');
  await page.getByRole('button', { name: /^Save/ }).click();
  await page.locator('#settings-error', { hasText: 'cannot change proxy' }).waitFor();
  assert.match(await page.locator('#settings-error').innerText(), /app's Settings/);
  const { json } = await server.request('GET', '/api/settings');
  assert.equal(json.proxy, null);
  await screenshot(page, 'settings-proxy-refused');
});
