// Shared by the specs: starts `mcache serve --demo` with throwaway folders, launches Debian's
// Chromium (never a downloaded browser) with a fresh profile, and saves screenshots.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const ARTIFACTS = process.env.E2E_ARTIFACTS || join(process.cwd(), '..', '..', 'target', 'e2e');

/**
 * Starts the server; its first stdout line is the UI URL with `#token=`.
 * Returns `{ url, origin, token, stop, request }`.
 */
export async function startServer({ port = 0, args = [] } = {}) {
  const root = mkdtempSync(join(tmpdir(), 'mcache-e2e-'));
  const cacheDir = join(root, 'hub');
  const dataDir = join(root, 'data');
  mkdirSync(cacheDir);
  mkdirSync(dataDir);
  const command = process.env.E2E_SERVE_CMD
    ? ['sh', ['-c', process.env.E2E_SERVE_CMD]]
    : [process.env.MCACHE_BIN || 'mcache', ['--data-dir', dataDir, '--cache-dir', cacheDir, 'serve', '--demo', '--port', String(port), ...args]];
  const env = { ...process.env, HF_HUB_CACHE: cacheDir, MODEL_CACHE_DATA_DIR: dataDir, HF_HOME: join(root, 'hf-home'), NO_COLOR: '1' };
  delete env.HF_TOKEN;
  delete env.HF_ENDPOINT;
  const proc = spawn(command[0], command[1], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = [];
  proc.stderr.on('data', (chunk) => { stderr.push(chunk.toString()); if (process.env.E2E_VERBOSE) process.stderr.write(chunk); });
  const firstLine = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`The server printed no URL within 60 s:\n${stderr.join('')}`)), 60000);
    const lines = createInterface({ input: proc.stdout });
    lines.once('line', (line) => { clearTimeout(timer); resolve(line.trim()); });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`The server exited with ${code}:\n${stderr.join('')}`)); });
  });
  const match = /^(https?:\/\/[^/\s]+)\/?#token=([0-9a-f]+)$/.exec(firstLine);
  if (!match) throw new Error(`Unexpected first line from the server: ${firstLine}`);
  const [, origin, token] = match;

  /** Calls the API directly (to check what the UI did). */
  async function request(method, path, body) {
    const response = await fetch(`${origin}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    return { status: response.status, json: text ? JSON.parse(text) : null };
  }

  async function stop() {
    if (proc.exitCode === null) {
      proc.kill('SIGINT');
      await new Promise((resolve) => {
        const timer = setTimeout(() => { proc.kill('SIGKILL'); resolve(); }, 10000);
        proc.once('exit', () => { clearTimeout(timer); resolve(); });
      });
    }
    rmSync(root, { recursive: true, force: true });
  }

  return { url: firstLine, origin, token, cacheDir, dataDir, stderr, request, stop };
}

/** Debian's Chromium, headless, with a fresh profile that is deleted on close. */
export async function launchBrowser({ viewport = { width: 1024, height: 720 }, colorScheme = 'light', args = [] } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'mcache-e2e-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport,
    colorScheme,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...args,
    ],
  });
  const page = context.pages()[0] || await context.newPage();
  const consoleErrors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => consoleErrors.push(String(err)));
  return {
    context,
    page,
    consoleErrors,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Runs a test body, saving a screenshot named after the test if it fails. */
export function withScreenshot(getPage, name, body) {
  return async (t) => {
    try {
      await body(t);
    } catch (err) {
      const page = getPage();
      if (page) {
        try {
          const path = await screenshot(page, `failed-${name.replace(/[^a-z0-9]+/gi, '-')}`);
          console.error(`screenshot of the failure: ${path}`);
        } catch (_) { /* the page may be gone */ }
      }
      throw err;
    }
  };
}
