// Web pages and the mirror: the example page (`examples/web/`), served from an origin the user
// allowed, reads a cached model through the mirror and checks its sha256; the same page from an
// origin not on the list is refused, preflight included; the settings show the origin's last
// use.
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
    const name = new URL(request.url, 'http://x').pathname === '/mirror-client.js' ? 'mirror-client.js' : 'index.html';
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
  server = await startServer();
  mirror = JSON.parse(readFileSync(join(server.dataDir, 'demo', 'api.json'), 'utf8')).mirror_url;
  allowed = await servePage();
  other = await servePage();
  browser = await launchBrowser();
  // The model the page reads: pulled the ordinary way, through the API.
  const pulled = await server.request('POST', '/api/pulls', { repo: 'demo/tiny-gguf' });
  assert.ok([200, 202].includes(pulled.status), JSON.stringify(pulled.json));
  const id = pulled.json.job_id;
  for (let i = 0; ; i++) {
    const jobs = await server.request('GET', '/api/jobs');
    const job = jobs.json.find((j) => j.id === id);
    if (job.state === 'done') break;
    assert.ok(!['failed', 'cancelled'].includes(job.state), JSON.stringify(job));
    assert.ok(i < 600, 'the pull did not finish');
    await new Promise((r) => setTimeout(r, 100));
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
async function cachedGguf() {
  const response = await fetch(`${mirror}/api/models/demo/tiny-gguf/tree/main?recursive=true`);
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
