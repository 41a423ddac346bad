// Model Cache UI: search a repo, pick a variant, follow downloads, manage the cache and settings.
// Everything goes through `api` (ui/api.js), which picks Tauri IPC or the local HTTP API.

import { api, ApiError } from './api.js';

// ---------------------------------------------------------------------------------------------
// Small DOM and formatting tools

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** Creates an element: `h('button', {class: 'x', onclick}, 'text', child)`. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node && typeof value !== 'string') node[key] = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Binary units (KiB, MiB, GiB), three significant digits, as `mcache` prints them. */
export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return '—';
  let value = Number(n);
  if (Math.abs(value) < 1024) return `${value} B`;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit += 1; }
  // A value that rounds to 1024 is shown in the next unit (1023.99 MiB reads 1.00 GiB).
  if (Number(value.toPrecision(3)) >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit += 1; }
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

const fmtSpeed = (bps) => (bps > 0 ? `${fmtBytes(bps)}/s` : '—');

/** Peer names by source name (`peer:ID`), so download cards say who served the bytes. */
const peerNames = new Map();

/** Where a file's bytes came from, when several sources had it: ` · from hub 12 MB at 5 MB/s, …`. */
function sourcesText(sources) {
  if (!Array.isArray(sources) || sources.length < 2) return '';
  const parts = sources.map((s) => `${peerNames.get(s.source) || s.source} ${fmtBytes(s.bytes)}`
    + (s.bytes_per_second ? ` at ${fmtSpeed(s.bytes_per_second)}` : '')
    + (s.dropped ? ' (dropped)' : ''));
  return ` · from ${parts.join(', ')}`;
}

/** A time left as `mcache` prints it (`model_cache::units::format_duration`): 45s, 3m05s,
 * 2h07m, 3 days. */
export function fmtEta(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor((s + 43200) / 86400)} days`;
}

function fmtAgo(ms) {
  if (!ms) return 'never';
  const diff = (Date.now() - ms) / 1000;
  if (diff < 60) return 'just now';
  if (diff < 3600) return `${Math.floor(diff / 60)} min ago`;
  if (diff < 86400) return `${Math.floor(diff / 3600)} h ago`;
  if (diff < 86400 * 30) return `${Math.floor(diff / 86400)} days ago`;
  return new Date(ms).toLocaleDateString();
}

const pct = (done, total) => (total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 0);

const REPO_PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Turns what the user typed into `{repo, revision, file}`: `org/name`, `org/name@rev`, or a Hub
 * URL such as `https://huggingface.co/org/name/tree/main` or `.../blob/rev/file.gguf` (whose
 * file is then selected). Throws an ApiError (kind `invalid_input`) with a hint when it is
 * neither.
 */
export function parseRepoInput(text) {
  let input = String(text || '').trim();
  if (!input) throw new ApiError('invalid_input', 'Enter a repository id such as `org/model`', null);
  let revision = null;
  let file = null;
  const looksLikeUrl = /^https?:\/\//i.test(input) || /^(www\.)?(huggingface\.co|hf\.co)\//i.test(input);
  if (looksLikeUrl) {
    let url;
    try { url = new URL(/^https?:/i.test(input) ? input : `https://${input}`); } catch (_) {
      throw new ApiError('invalid_input', `\`${input}\` is not a valid URL`, null);
    }
    let parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 'datasets' || parts[0] === 'spaces') {
      throw new ApiError('invalid_input', `\`${input}\` is a ${parts[0].slice(0, -1)}, not a model repository`,
        'Model Cache downloads model repositories; paste a link to a model page.');
    }
    if (parts[0] === 'models') parts = parts.slice(1);
    // `org/name/{tree,blob,resolve}/{rev}/...` carries a revision; a lone `name` is a legacy id.
    const marker = parts.findIndex((p, i) => i >= 1 && ['tree', 'blob', 'resolve', 'commit'].includes(p));
    if (marker >= 1) {
      if (parts[marker + 1]) revision = parts[marker + 1];
      // A file page (`blob`, `resolve`) names the file; a `tree` page names a folder.
      if (['blob', 'resolve'].includes(parts[marker]) && parts.length > marker + 2) file = parts.slice(marker + 2).join('/');
      parts = parts.slice(0, marker);
    }
    input = parts.slice(0, 2).join('/');
  } else {
    const at = input.lastIndexOf('@');
    if (at > 0) { revision = input.slice(at + 1) || null; input = input.slice(0, at); }
  }
  const parts = input.split('/');
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => REPO_PART.test(p) && !p.includes('..'))) {
    throw new ApiError('invalid_input', `\`${text.trim()}\` is not a repository id`,
      'A repository id looks like `org/model` (letters, digits, `-`, `_`, `.`), or paste the model\'s Hub URL.');
  }
  return { repo: parts.join('/'), revision, file };
}

/** Engine text for a person: the CLI's `code` quotes dropped. */
const plain = (text) => String(text || '').replace(/`/g, '');

// Hints in the window's words, by error kind: shown when the engine gives none, or when its hint
// names a command-line step (`mcache login`, `--token`) that a window user has no use for.
const FALLBACK_HINTS = {
  gated: () => 'This model is gated: request access on its Hub page, then add your access token in Settings.',
  bad_token: () => 'The access token was refused: add a valid token in Settings.',
  repo_not_found: () => (loadedSettings && loadedSettings.token_set
    ? 'Check the repository id (org/name).'
    : 'Check the repository id (org/name). If it is private, add an access token in Settings.'),
  revision_not_found: () => 'Check the branch, tag or commit after the @.',
  offline: () => 'Offline mode is on: turn it off in Settings to reach the Hub.',
  offline_miss: () => 'The file is not in the cache and offline mode is on: turn it off in Settings.',
  rate_limited: () => 'The Hub is rate limiting requests: wait a minute and retry.',
  disk_full: () => 'Free some disk space, delete unused models in the Cache tab, or lower the reserve in Settings.',
  network: () => 'Check the network connection and the Hub endpoint in Settings.',
};

const namesCommandLine = (hint) => /\bmcache\b|(^|\s)--[a-z]|HF_[A-Z_]+=/.test(hint || '');

function errorNode(err) {
  const e = err instanceof ApiError ? err : new ApiError('internal', String(err && err.message ? err.message : err), null);
  const fallback = FALLBACK_HINTS[e.kind] ? FALLBACK_HINTS[e.kind]() : null;
  const hint = e.hint && !namesCommandLine(e.hint) ? e.hint : (fallback || e.hint || null);
  return [
    h('div', { class: 'message' }, h('strong', {}, plain(e.message))),
    hint ? h('div', { class: 'hint' }, 'Hint: ', plain(hint)) : null,
  ];
}

function showError(box, err) {
  // `replaceChildren(null)` would write the text "null": only real nodes go in.
  box.replaceChildren(...errorNode(err).filter(Boolean));
  box.dataset.kind = err && err.kind ? err.kind : 'internal';
  box.hidden = false;
}

function clearError(box) { box.hidden = true; box.replaceChildren(); delete box.dataset.kind; }

function toast(title, body, level = 'info', ms = 6000) {
  const node = h('div', { class: `toast ${level}`, role: level === 'error' ? 'alert' : 'status' },
    h('strong', {}, title), body ? h('span', {}, body) : null);
  $('#toasts').append(node);
  setTimeout(() => node.remove(), ms);
}

/** Runs an async action with its button disabled, reporting failures as a toast. */
async function busy(button, action) {
  if (button) button.disabled = true;
  try { return await action(); } catch (err) {
    const e = err instanceof ApiError ? err : new ApiError('internal', String(err), null);
    toast(e.message, e.hint || FALLBACK_HINTS[e.kind] || '', 'error', 10000);
    return undefined;
  } finally { if (button) button.disabled = false; }
}

const confirmDialog = (title, body, okLabel) => new Promise((resolve) => {
  const dialog = $('#confirm-dialog');
  $('#confirm-title').textContent = title;
  $('#confirm-body').textContent = body;
  $('#confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  dialog.showModal();
  $('#confirm-cancel').focus();
});

// ---------------------------------------------------------------------------------------------
// Tabs (WAI-ARIA tabs pattern: arrows move between tabs, Tab goes into the panel)

const tabs = $$('[role="tab"]');
const onShow = {};

function selectTab(tab, focus = false) {
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute('aria-selected', String(selected));
    t.tabIndex = selected ? 0 : -1;
    $(`#${t.getAttribute('aria-controls')}`).hidden = !selected;
  }
  if (focus) tab.focus();
  const handler = onShow[tab.id];
  if (handler) handler();
}

function showTab(id) { selectTab($(`#${id}`)); }

for (const tab of tabs) {
  tab.addEventListener('click', () => selectTab(tab));
  tab.addEventListener('keydown', (event) => {
    const i = tabs.indexOf(tab);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    selectTab(tabs[(next + tabs.length) % tabs.length], true);
  });
}

// ---------------------------------------------------------------------------------------------
// Engine status in the top bar

const status = { stream: 'connecting', health: null, error: null };

function renderStatus() {
  const node = $('#engine-status');
  const live = status.stream === 'live' && !status.error;
  const parts = [h('span', { class: `dot ${live ? 'live' : status.error ? 'down' : ''}`, 'aria-hidden': 'true' })];
  if (status.error) parts.push(`Engine unreachable: ${status.error.message}`);
  else if (status.health) {
    const hl = status.health;
    parts.push(`${hl.offline ? 'Offline' : status.stream === 'live' ? 'Connected' : status.stream === 'unauthorized' ? 'Disconnected' : 'Reconnecting…'} · v${hl.version}`);
    // Say which hub answers when it is not the public one (the demo hub, a mirror, a proxy).
    let hub = null;
    try { hub = hl.endpoint ? new URL(hl.endpoint).host : null; } catch (_) { hub = null; }
    if (hl.demo) parts.push(' · demo hub');
    else if (hub && hub !== 'huggingface.co') parts.push(` · hub ${hub}`);
    if (hl.storage) parts.push(h('span', { class: 'hide-narrow' }, ` · ${fmtBytes(hl.storage.used_bytes)} used, ${fmtBytes(hl.storage.free_bytes)} free`));
  } else parts.push('Connecting…');
  node.replaceChildren(...parts);
  const alerts = status.health && Array.isArray(status.health.alerts) ? status.health.alerts : [];
  $('#alerts').replaceChildren(...alerts.map((a) => h('div', { class: 'alert', role: 'alert' }, a)));
}

async function refreshHealth() {
  try {
    status.health = await api.health();
    status.error = null;
  } catch (err) {
    status.error = err;
  }
  renderStatus();
}

// ---------------------------------------------------------------------------------------------
// Models: search and variants

const variantsState = { report: null, selected: null, files: new Set() };

const variantFiles = (v) => [...(v.files || []), ...(v.companions || [])];
const allPaths = (v) => [...variantFiles(v), ...(v.extras || [])];

function sizeOfSelection() {
  const sizes = new Map();
  for (const v of variantsState.report ? variantsState.report.variants : []) {
    for (const f of allPaths(v)) sizes.set(f.path, f.size);
  }
  let total = 0;
  for (const p of variantsState.files) total += sizes.get(p) || 0;
  return total;
}

/** True when the ticked files are exactly what pulling the selected variant would fetch. */
function selectionIsVariant() {
  const v = variantsState.report && variantsState.report.variants.find((x) => x.name === variantsState.selected);
  if (!v) return false;
  const expected = new Set(variantFiles(v).map((f) => f.path));
  if (expected.size !== variantsState.files.size) return false;
  for (const p of expected) if (!variantsState.files.has(p)) return false;
  return true;
}

function selectVariant(name) {
  const v = variantsState.report.variants.find((x) => x.name === name);
  variantsState.selected = name;
  variantsState.files = new Set(v ? variantFiles(v).map((f) => f.path) : []);
  syncSelection();
}

function syncSelection() {
  for (const row of $$('#variants tr[data-variant]')) {
    const selected = row.dataset.variant === variantsState.selected;
    row.classList.toggle('selected', selected);
    const radio = $('input[type="radio"]', row);
    if (radio) radio.checked = selected;
  }
  for (const box of $$('#variants input[data-path]')) box.checked = variantsState.files.has(box.dataset.path);
  const summary = $('#download-summary');
  const button = $('#download-button');
  if (!summary || !button) return;
  const count = variantsState.files.size;
  if (count === 0) {
    summary.textContent = 'Nothing selected.';
  } else if (selectionIsVariant()) {
    summary.textContent = `Variant ${variantsState.selected}: ${count} file${count === 1 ? '' : 's'}, ${fmtBytes(sizeOfSelection())}`;
  } else {
    summary.textContent = `${count} selected file${count === 1 ? '' : 's'}, ${fmtBytes(sizeOfSelection())}`;
  }
  button.disabled = count === 0;
}

const FIT_LABELS = { gpu: 'Fits in GPU', fits: 'Fits in RAM', tight: 'Tight fit', too_big: 'Too large', unknown: 'Fit unknown' };

/** The reason behind a fit badge, in plain words, from the estimate's own figures. */
function fitReason(fit, machine) {
  if (!fit || !fit.needed_bytes) return 'The memory this model needs is not known.';
  const parts = [`Needs about ${fmtBytes(fit.needed_bytes)} of memory`];
  if (fit.weights_bytes) {
    const extra = [`${fmtBytes(fit.weights_bytes)} of weights`];
    if (fit.kv_cache_bytes) extra.push(`${fmtBytes(fit.kv_cache_bytes)} of context cache${fit.context ? ` for ${fit.context} tokens` : ''}`);
    if (fit.overhead_bytes) extra.push(`${fmtBytes(fit.overhead_bytes)} for the runtime`);
    parts[0] += ` (${extra.join(' + ')})`;
  }
  const m = machine || {};
  if (fit.tier === 'unknown') parts.push('this machine\'s memory could not be read');
  else {
    parts.push(`this machine has ${fmtBytes(fit.available_bytes)} of RAM free${m.vram ? ` and ${fmtBytes(m.vram)} of GPU memory` : ''}`);
    if (fit.tier === 'tight') parts.push('it runs after closing other programs, or split between GPU and CPU');
  }
  return `${parts.join('; ')}.`;
}

function fitBadge(fit, machine) {
  const tier = fit && fit.tier ? fit.tier : 'unknown';
  const key = tier === 'fits' && fit.in_gpu ? 'gpu' : tier;
  const label = FIT_LABELS[key] || FIT_LABELS.unknown;
  const title = fitReason(fit, machine);
  return h('span', { class: `badge ${tier} fit-badge`, title, 'aria-label': `${label}. ${title}` }, label);
}

/** A parameter count as people say it: `2.6 M`, `7.2 B`. */
function fmtParams(n) {
  if (!Number.isFinite(n) || n <= 0) return '—';
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

const fmtCount = (n) => (Number.isFinite(n) ? new Intl.NumberFormat('en', { notation: 'compact' }).format(n) : '—');

/** The facts a variant's headers give, as `[label, text]` pairs; empty values are left out. */
function headerFacts(header) {
  if (!header || typeof header !== 'object') return [];
  const facts = [];
  const add = (label, value) => { if (value !== null && value !== undefined && value !== '' && value !== 0) facts.push([label, value]); };
  add('Architecture', header.architecture);
  add('Parameters', header.parameter_count ? fmtParams(header.parameter_count) : null);
  add('Context length', header.context_length ? `${header.context_length} tokens` : null);
  add('Layers', header.block_count);
  add('KV heads', header.head_count_kv);
  add('Context cache per token', header.kv_cache_bytes_per_token ? fmtBytes(header.kv_cache_bytes_per_token) : null);
  add('Tensor data', header.tensor_data_bytes ? fmtBytes(header.tensor_data_bytes) : null);
  return facts;
}

function renderVariants(report) {
  const root = $('#variants');
  variantsState.report = report;
  const machine = report.machine || {};
  const head = h('div', { class: 'repo-head' },
    h('h2', { id: 'variants-title' }, report.repo),
    h('span', { class: 'muted' }, `revision ${report.revision}`, report.commit ? ` · commit ${String(report.commit).slice(0, 10)}` : ''),
    h('span', { class: 'muted' }, `This machine: ${fmtBytes(machine.total_ram)} RAM (${fmtBytes(machine.available_ram)} free)`,
      machine.vram ? `, ${fmtBytes(machine.vram)} VRAM` : ''));
  if (!report.variants || report.variants.length === 0) {
    root.replaceChildren(head, h('p', { class: 'empty' }, 'This repository has no recognisable model files.'));
    return;
  }
  const rows = report.variants.map((v) => {
    const id = `variant-${v.name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const notes = [];
    if (v.recommended || report.recommended === v.name) notes.push(h('span', { class: 'badge recommended' }, '★ Recommended'));
    if (!v.complete) notes.push(h('span', { class: 'badge incomplete', title: 'Some files of this variant are missing from the repository' }, 'Incomplete'));
    const fileItem = (f, kind) => h('li', {},
      h('input', { type: 'checkbox', id: `${id}-${kind}-${f.path}`, dataset: { path: f.path }, 'aria-label': `Include ${f.path}`,
        onchange: (e) => {
          if (e.target.checked) variantsState.files.add(f.path); else variantsState.files.delete(f.path);
          syncSelection();
        } }),
      h('label', { class: 'path mono', for: `${id}-${kind}-${f.path}` }, f.path, kind !== 'file' ? h('span', { class: 'muted' }, ` (${f.kind || kind})`) : ''),
      h('span', { class: 'muted num' }, fmtBytes(f.size)));
    const files = [
      ...(v.files || []).map((f) => fileItem(f, 'file')),
      ...(v.companions || []).map((f) => fileItem(f, 'companion')),
      ...(v.extras || []).map((f) => fileItem(f, 'extra')),
    ];
    const facts = headerFacts(v.header);
    const details = facts.length ? h('details', { class: 'header-facts' }, h('summary', {}, 'Details'),
      h('dl', { class: 'facts-list' }, facts.flatMap(([k, val]) => [h('dt', {}, k), h('dd', {}, String(val))]))) : null;
    if (v.cached) notes.push(h('span', { class: 'badge done cached-tick', title: 'Every file of this variant is in the cache' }, '✓ Cached'));
    const actions = v.cached
      ? h('div', { class: 'variant-actions' },
        h('button', { type: 'button', class: 'use-variant', 'aria-label': `Use ${v.name}`, onclick: (e) => showUseIt(e.currentTarget, report, v) }, 'Use it'),
        h('button', { type: 'button', class: 'reveal-variant', 'aria-label': `Reveal ${v.name} in the file manager`, onclick: (e) => revealRepo(e.currentTarget, report.repo) }, 'Reveal'),
        h('button', { type: 'button', class: 'open-cache', onclick: () => showTab('tab-cache') }, 'Open in Cache'),
        h('button', { type: 'button', class: 'danger delete-variant', 'aria-label': `Delete ${v.name}`, onclick: (e) => deleteVariant(e.currentTarget, report, v.name) }, 'Delete'))
      : h('div', { class: 'variant-actions' },
        h('button', { type: 'button', class: 'download-variant', 'aria-label': `Download ${v.name}`, disabled: !v.complete,
          onclick: (e) => downloadVariant(e.currentTarget, report, v.name) }, 'Download'));
    return h('tr', { dataset: { variant: v.name, quant: v.quant || '', format: v.format }, class: v.recommended || report.recommended === v.name ? 'is-recommended' : '' },
      h('td', {},
        h('input', { type: 'radio', name: 'variant', id, value: v.name, 'aria-label': `Select variant ${v.name}`,
          onchange: () => selectVariant(v.name) })),
      h('td', {},
        h('label', { for: id, class: 'variant-name' }, v.name), ' ', notes,
        details,
        v.warnings && v.warnings.length ? h('ul', { class: 'warnings' }, v.warnings.map((w) => h('li', {}, w))) : null,
        h('details', { class: 'files' }, h('summary', {}, `${files.length} file${files.length === 1 ? '' : 's'}`), h('ul', {}, files))),
      h('td', {}, v.format),
      h('td', {}, v.quant || '—', v.bits_per_weight ? h('div', { class: 'muted small' }, `${Number(v.bits_per_weight).toFixed(2)} bpw`) : null),
      h('td', { class: 'num' }, fmtBytes(v.size_bytes)),
      h('td', {}, fitBadge(v.fit, machine)),
      h('td', {}, actions));
  });
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'grid', 'aria-labelledby': 'variants-title' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Select')),
      h('th', { scope: 'col' }, 'Variant'), h('th', { scope: 'col' }, 'Format'), h('th', { scope: 'col' }, 'Quant'),
      h('th', { scope: 'col', class: 'num' }, 'Size'), h('th', { scope: 'col' }, 'Fit'),
      h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
    h('tbody', {}, rows)));
  const bar = h('div', { class: 'download-bar' },
    h('span', { class: 'summary', id: 'download-summary', 'aria-live': 'polite' }),
    h('button', { type: 'button', class: 'primary', id: 'download-button', onclick: (e) => startDownload(e.currentTarget) }, 'Download'));
  const about = h('div', { class: 'model-about', id: 'model-about', 'aria-live': 'polite', dataset: { repo: report.repo } });
  const card = h('section', { class: 'model-card', id: 'model-card', 'aria-labelledby': 'model-card-title', hidden: true });
  root.replaceChildren(head, about, table, bar, card);
  loadModelPage(report);
  const initial = report.recommended || (report.variants.find((v) => v.recommended) || {}).name || null;
  if (initial) selectVariant(initial);
  else { variantsState.selected = null; variantsState.files = new Set(); syncSelection(); }
}

const LICENSE_NAMES = { mit: 'MIT', 'apache-2.0': 'Apache 2.0', 'cc-by-4.0': 'CC BY 4.0', 'cc-by-nc-4.0': 'CC BY-NC 4.0', 'bsd-3-clause': 'BSD 3-Clause', 'gpl-3.0': 'GPL 3.0', openrail: 'OpenRAIL', llama2: 'Llama 2', llama3: 'Llama 3', 'llama3.1': 'Llama 3.1', gemma: 'Gemma' };

/** Opens a web link in the system browser (the app) or a new tab (a browser). */
function openLink(url) {
  if (!/^https?:\/\//i.test(url)) return;
  if (api.app) api.app.openLink(url).catch((err) => toast('Could not open the link', plain(err.message), 'error'));
  else window.open(url, '_blank', 'noopener');
}

/** A link that opens outside the app. */
const outsideLink = (href, text, attrs = {}) => h('a', {
  href, target: '_blank', rel: 'noopener noreferrer', ...attrs,
  onclick: (e) => { e.preventDefault(); openLink(href); },
}, text);

/** Fills the model's page around its variants: license and gating above, the card below. */
async function loadModelPage(report) {
  const seq = searchState.seq;
  let page;
  try {
    page = await api.modelPage(report.repo, report.revision);
  } catch (err) {
    console.warn('Could not read the model page', err);
    return;
  }
  const about = $('#model-about');
  if (seq !== searchState.seq || !about || about.dataset.repo !== report.repo) return;
  const facts = [];
  if (page.license) {
    const name = page.license === 'other' && page.license_name ? page.license_name : (LICENSE_NAMES[page.license] || page.license);
    facts.push(h('span', { class: 'badge license', id: 'model-license' }, 'License: ',
      page.license_link ? outsideLink(page.license_link, name) : name));
  }
  if (page.gated && page.gated !== 'open') {
    const how = page.gated === 'auto' ? 'access is granted when you ask' : 'the authors review each request';
    if (page.access === true) {
      facts.push(h('span', { class: 'badge gated', id: 'model-gating' }, 'Gated: you have access'));
    } else {
      facts.push(h('span', { class: 'badge gated', id: 'model-gating' }, `Gated: ${how}. `,
        outsideLink(page.page_url, 'Request access on the Hub', { id: 'request-access' }),
        ' — then add your token in Settings.'));
    }
  }
  facts.push(outsideLink(page.page_url, 'Open on the Hub', { class: 'hub-page' }));
  about.replaceChildren(...facts);
  const card = $('#model-card');
  if (page.card_html) {
    const body = document.createElement('div');
    body.className = 'card-body';
    // Sanitised by the engine (crates/model-cache/src/card.rs): no script, no raw HTML, no images.
    body.innerHTML = page.card_html;
    for (const link of body.querySelectorAll('a[href]')) {
      link.addEventListener('click', (e) => { e.preventDefault(); openLink(link.href); });
    }
    card.replaceChildren(h('h3', { id: 'model-card-title' }, 'About this model'), body);
    card.hidden = false;
  } else {
    card.hidden = true;
  }
}

/** True when the box holds a repository id or a Hub URL rather than words to search for. */
export function looksLikeRepo(text) {
  const input = String(text || '').trim();
  return input.includes('/') || /^https?:/i.test(input);
}

async function search(event) {
  event.preventDefault();
  const text = $('#search-input').value;
  if (looksLikeRepo(text)) await lookUp(text);
  else await findModels(text);
}

const searchState = { query: '', next: null, machine: null, seq: 0 };

function resultRow(r, machine) {
  const facts = [
    h('span', { title: 'Downloads in the last 30 days' }, `↓ ${fmtCount(r.downloads)}`),
    h('span', { title: 'Likes' }, `♥ ${fmtCount(r.likes)}`),
  ];
  if (r.last_modified) facts.push(h('span', {}, `Updated ${String(r.last_modified).slice(0, 10)}`));
  if (r.parameters) facts.push(h('span', {}, `${fmtParams(r.parameters)} parameters`));
  if (r.size_bytes) facts.push(h('span', {}, `${r.size_variant || 'Weights'}: ${fmtBytes(r.size_bytes)}`));
  const formats = (r.formats || []).map((f) => h('span', { class: 'chip format' }, { gguf: 'GGUF', safetensors: 'safetensors', mlx: 'MLX', onnx: 'ONNX' }[f] || f));
  return h('li', { class: 'result', dataset: { repo: r.repo } },
    h('button', { type: 'button', class: 'link open-repo', onclick: () => { $('#search-input').value = r.repo; lookUp(r.repo); } }, r.repo),
    r.cached ? h('span', { class: 'badge done cached-tick', title: 'In the cache' }, '✓ Cached') : null,
    r.gated !== 'open' ? h('span', { class: 'badge info', title: 'The author asks users to request access on the Hub' }, 'Gated') : null,
    h('span', { class: 'facts muted' }, facts),
    formats,
    r.fit ? fitBadge(r.fit, machine) : h('span', { class: 'badge unknown fit-badge', title: 'The Hub\'s listing gives no size for this model' }, 'Size unknown'));
}

function renderResults(report, append) {
  const root = $('#results');
  root.hidden = false;
  searchState.next = report.next || null;
  searchState.machine = report.machine || searchState.machine;
  let list = $('#results ol.results');
  if (!append || !list) {
    const title = searchState.query ? `Models matching “${searchState.query}”` : 'Popular models';
    list = h('ol', { class: 'results', 'aria-labelledby': 'results-title' });
    root.replaceChildren(h('h2', { id: 'results-title' }, title), list);
  }
  for (const r of report.results || []) list.append(resultRow(r, searchState.machine));
  $('#results-more')?.remove();
  if (!list.children.length) root.append(h('p', { class: 'empty' }, 'No model matches. Try fewer or other words, or enter a repository id such as org/model.'));
  if (searchState.next) {
    root.append(h('button', { type: 'button', id: 'results-more', onclick: (e) => moreResults(e.currentTarget) }, 'More results'));
  }
}

/** Searches the Hub for `text` (empty: the most popular models) and lists one page. */
async function findModels(text, { quiet = false } = {}) {
  const box = $('#search-error');
  clearError(box);
  searchState.query = String(text || '').trim();
  const seq = ++searchState.seq;
  $('#variants').replaceChildren();
  $('#library').hidden = true;
  if (!searchState.query) renderLibrary();
  showTitle(null);
  // The button stays enabled: a new search (Enter while one loads) replaces the one in flight.
  $('#results').hidden = false;
  $('#results').replaceChildren(h('p', { class: 'muted' }, searchState.query ? `Searching for ${searchState.query}…` : 'Loading popular models…'));
  try {
    const report = await api.search({ q: searchState.query, sort: $('#search-sort').value, filter: $('#search-format').value, limit: 20 });
    // A repo opened (or another search made) meanwhile wins.
    if (seq === searchState.seq) renderResults(report, false);
  } catch (err) {
    if (seq !== searchState.seq) return;
    $('#results').replaceChildren();
    if (!quiet) showError(box, err);
  }
}

/** The landing's library: what is cached and what is downloading, each a click from its variants. */
async function renderLibrary() {
  const root = $('#library');
  const seq = searchState.seq;
  let repos; let jobs;
  try {
    [repos, jobs] = await Promise.all([api.cacheList(), api.jobs()]);
  } catch (_) {
    root.hidden = true;
    return;
  }
  if (seq !== searchState.seq || searchState.query) return;
  const open = (repo) => () => { $('#search-input').value = repo; lookUp(repo); };
  const items = [];
  for (const job of jobs.filter((j) => ACTIVE.has(j.state))) {
    const done = job.bytes_total > 0 ? Math.floor((job.bytes_done / job.bytes_total) * 100) : 0;
    items.push(h('li', { class: 'result library-item', dataset: { repo: job.repo, state: 'downloading' } },
      h('button', { type: 'button', class: 'link open-repo', onclick: open(job.repo) }, job.repo),
      job.variant ? h('span', { class: 'chip' }, job.variant) : null,
      h('span', { class: 'badge running' }, job.state === 'running' ? `Downloading ${done}%` : describeState(job.state))));
  }
  for (const r of repos.filter((x) => x.repo_type === 'model')) {
    items.push(h('li', { class: 'result library-item', dataset: { repo: r.repo, state: 'cached' } },
      h('button', { type: 'button', class: 'link open-repo', onclick: open(r.repo) }, r.repo),
      h('span', { class: 'badge done cached-tick' }, '✓ Cached'),
      h('span', { class: 'muted' }, fmtBytes(r.size_bytes))));
  }
  root.replaceChildren(h('h2', { id: 'library-title' }, 'Your library'),
    items.length ? h('ol', { class: 'results', 'aria-labelledby': 'library-title' }, items)
      : h('p', { class: 'empty' }, 'Nothing downloaded yet: pick a model below, or search for one.'));
  root.hidden = false;
}

const describeState = (state) => ({ queued: 'Queued', paused: 'Paused', deferred: 'Waiting' }[state] || state);

async function moreResults(button) {
  if (!searchState.next) return;
  button.disabled = true;
  try {
    renderResults(await api.search({ cursor: searchState.next }), true);
  } catch (err) {
    button.disabled = false;
    showError($('#search-error'), err);
  }
}

const GIB = 1024 ** 3;

/**
 * Asks before a download that does not fit in the free space above the reserve, or would take
 * the cache over its budget: remove the least-recently-used models (named, with sizes), raise
 * the budget, or cancel. Nothing is removed without this consent unless the settings give it
 * ("evict to make room", "clean up in the background"). Resolves to the request to send (with
 * the agreed `evict` keys), or null when the user cancels.
 */
async function withRoom(request) {
  let room;
  try {
    room = await api.pullRoom(request);
  } catch (err) {
    // The pull itself reports what is wrong with the request.
    console.warn('Could not check the room for the download', err);
    return request;
  }
  if (room.fits || room.consent) return request;
  const reasons = [];
  if (room.disk_short > 0) {
    reasons.push(`only ${fmtBytes(room.free_above_reserve)} is free on the disk above the reserve of ${fmtBytes(room.reserve)}`);
  }
  if (room.over_budget_by > 0) {
    reasons.push(`the cache would be ${fmtBytes(room.over_budget_by)} over its budget of ${fmtBytes(room.budget)}`);
  }
  $('#room-body').textContent = `This download needs ${fmtBytes(room.needed)}, but ${reasons.join(', and ')}.`;
  const canEvict = room.evictions.length > 0 && room.evictions_enough;
  $('#room-evict-part').hidden = room.evictions.length === 0;
  $('#room-evict-intro').textContent = room.evictions_enough
    ? 'Removing these models, least recently used first, makes room:'
    : 'Even removing every model that can go (not pinned, not downloading) would not make enough room:';
  $('#room-evictions').replaceChildren(...room.evictions.map((e) => h('li', { dataset: { key: e.key } },
    `${e.repo}${e.variant ? ` (${e.variant.replace(/^[a-z]+:/, '')})` : ''} — ${fmtBytes(e.bytes_freed)}`)));
  $('#room-evict').hidden = !canEvict;
  // Raising the budget helps only when the disk has the room.
  const budget = Math.ceil(((room.used ?? 0) + room.needed) / GIB) * GIB;
  const budgetButton = $('#room-budget');
  budgetButton.hidden = !(room.over_budget_by > 0 && room.disk_short === 0);
  budgetButton.textContent = `Raise the budget to ${fmtBytes(budget)} and download`;
  const dialog = $('#room-dialog');
  dialog.returnValue = '';
  const choice = await new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue), { once: true });
    dialog.showModal();
    $('#room-cancel').focus();
  });
  if (choice === 'evict') return { ...request, evict: room.evictions.map((e) => e.key) };
  if (choice === 'budget') {
    await api.updateSettings({ size_budget_bytes: budget });
    return request;
  }
  return null;
}

async function downloadVariant(button, report, name) {
  const box = $('#search-error');
  clearError(box);
  button.disabled = true;
  try {
    const request = await withRoom({ repo: report.repo, revision: report.revision, variant: name });
    if (!request) return;
    const { job_id: jobId } = await api.pull(request);
    toast('Download queued', `${report.repo} (${name})`);
    await refreshJobs();
    showTab('tab-downloads');
    const node = $(`#jobs li[data-id="${jobId}"]`);
    if (node) node.scrollIntoView({ block: 'nearest' });
  } catch (err) {
    showError(box, err);
  } finally {
    button.disabled = false;
  }
}

/** `text` quoted for a POSIX shell. */
const shellQuote = (text) => `'${String(text).replace(/'/g, "'\\''")}'`;
const pyString = (text) => JSON.stringify(String(text));

/** The ready-to-paste ways to use a cached variant: its path, a command, a Python snippet. */
export function usageFor(repo, commit, variant, snapshotPath) {
  const main = (variant.files || [])[0];
  const file = main ? main.path : '';
  const path = snapshotPath && file ? `${snapshotPath}/${file}` : snapshotPath || '';
  const out = { path, command: null, python: null };
  if (variant.format === 'gguf' && file) {
    out.command = `llama-server -m ${shellQuote(path)}`;
    out.python = `from huggingface_hub import hf_hub_download\n\npath = hf_hub_download(${pyString(repo)}, ${pyString(file)}${commit ? `, revision=${pyString(commit)}` : ''})\nprint(path)`;
  } else {
    const patterns = [...(variant.files || []), ...(variant.companions || [])].map((f) => pyString(f.path)).join(', ');
    out.python = `from huggingface_hub import snapshot_download\n\nfolder = snapshot_download(${pyString(repo)}${commit ? `, revision=${pyString(commit)}` : ''}, allow_patterns=[${patterns}])\nprint(folder)`;
  }
  return out;
}

async function copyText(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'Copied.';
  } catch (_) {
    status.textContent = 'Could not reach the clipboard: select the text and copy it with Ctrl+C.';
  }
}

async function showUseIt(button, report, variant) {
  await busy(button, async () => {
    const repos = await api.cacheList();
    const cached = repos.find((r) => r.repo === report.repo);
    const revision = cached && (cached.revisions.find((r) => r.commit === report.commit) || cached.revisions[0]);
    if (!revision) throw new ApiError('not_found', `${report.repo} is no longer in the cache`, 'Download the variant again.');
    const use = usageFor(report.repo, report.commit, variant, revision.snapshot_path);
    const status = h('p', { class: 'muted', role: 'status', id: 'use-it-status' });
    const field = (id, label, value, multiline) => h('div', { class: 'field' },
      h('label', { for: id }, label),
      multiline
        ? h('textarea', { id, readOnly: true, rows: String(value).split('\n').length, class: 'mono', spellcheck: 'false' }, value)
        : h('input', { id, type: 'text', readOnly: true, value, class: 'mono', spellcheck: 'false' }),
      h('button', { type: 'button', onclick: () => copyText(value, status) }, `Copy ${label.toLowerCase()}`));
    const section = h('section', { id: 'use-it', class: 'use-it', 'aria-labelledby': 'use-it-title' },
      h('h3', { id: 'use-it-title' }, `Use ${variant.name} of ${report.repo}`),
      field('use-path', 'Path', use.path, false),
      use.command ? field('use-command', 'Command', use.command, false) : null,
      field('use-python', 'Python', use.python, true),
      h('button', { type: 'button', onclick: (e) => revealRepo(e.currentTarget, report.repo) }, 'Reveal folder'),
      status);
    $('#use-it')?.remove();
    $('#variants').append(section);
    section.scrollIntoView({ block: 'nearest' });
  });
}

async function deleteVariant(button, report, name) {
  const ok = await confirmDialog(`Delete ${name} of ${report.repo}?`,
    'Its weight files are removed from the cache; files another variant uses stay.', 'Delete');
  if (!ok) return;
  await busy(button, async () => {
    const { freed_bytes: freed } = await api.deleteCached(report.repo, report.commit || report.revision, name);
    toast('Deleted', `${report.repo} (${name}): ${fmtBytes(freed)} freed`);
    await lookUp(report.repo);
  });
}

async function revealRepo(button, repo) {
  await busy(button, async () => {
    const { path } = await api.reveal(repo);
    toast('Folder', path);
  });
}

/**
 * Shows the variants of the repo in `text` (what the search box accepts), then selects `pick`'s
 * quant or file (or the file a pasted Hub URL names). The window's title names the repo shown.
 */
async function lookUp(text, pick = {}) {
  const box = $('#search-error');
  clearError(box);
  let target;
  try { target = parseRepoInput(text); } catch (err) { showError(box, err); return; }
  const button = $('#search-button');
  button.disabled = true;
  searchState.seq += 1;
  $('#results').hidden = true;
  $('#library').hidden = true;
  $('#variants').replaceChildren(h('p', { class: 'muted' }, `Looking up ${target.repo}…`));
  try {
    const report = await api.variants(target.repo, target.revision);
    renderVariants(report);
    applyPick(report, { quant: pick.quant || null, file: pick.file || target.file || null });
    showTitle(report.repo);
  } catch (err) {
    $('#variants').replaceChildren();
    showTitle(null);
    showError(box, err);
    // A gated repo still has a page: its license, its card when readable, where to ask.
    if (err.kind === 'gated') {
      variantsState.report = null;
      $('#variants').replaceChildren(
        h('div', { class: 'repo-head' }, h('h2', { id: 'variants-title' }, target.repo)),
        h('div', { class: 'model-about', id: 'model-about', 'aria-live': 'polite', dataset: { repo: target.repo } }),
        h('section', { class: 'model-card', id: 'model-card', 'aria-labelledby': 'model-card-title', hidden: true }));
      showTitle(target.repo);
      loadModelPage({ repo: target.repo, revision: target.revision });
    }
  } finally {
    button.disabled = false;
  }
}

/** Selects the variant of `quant` (a quant or variant name), then the one holding `file`; says
 * so when the repo has neither. */
function applyPick(report, { quant, file }) {
  const variants = report.variants || [];
  const missing = [];
  if (quant) {
    const wanted = quant.toLowerCase();
    const found = variants.find((v) => v.name.toLowerCase() === wanted)
      || variants.find((v) => (v.quant || '').toLowerCase() === wanted);
    if (found) selectVariant(found.name); else missing.push(`no ${quant} variant`);
  }
  if (file) {
    const holder = variants.find((v) => variantFiles(v).some((f) => f.path === file));
    if (holder) selectVariant(holder.name);
    else if (variants.some((v) => allPaths(v).some((f) => f.path === file))) {
      variantsState.selected = null;
      variantsState.files = new Set([file]);
      syncSelection();
    } else missing.push(`no file ${file}`);
  }
  if (missing.length) {
    showError($('#search-error'), new ApiError('not_found', `${report.repo} has ${missing.join(' and ')}`,
      'Pick one of the variants listed below.'));
  }
}

function showTitle(repo) {
  const title = repo ? `${repo} — Model Cache` : 'Model Cache';
  document.title = title;
  if (api.app) api.app.setTitle(title).catch((err) => console.warn('Could not set the window title', err));
}

async function startDownload(button) {
  const report = variantsState.report;
  if (!report || variantsState.files.size === 0) return;
  const request = { repo: report.repo, revision: report.revision };
  if (selectionIsVariant()) request.variant = variantsState.selected;
  else request.files = [...variantsState.files];
  const box = $('#search-error');
  clearError(box);
  button.disabled = true;
  try {
    const agreed = await withRoom(request);
    if (!agreed) return;
    const { job_id: jobId } = await api.pull(agreed);
    toast('Download queued', `${report.repo}${request.variant ? ` (${request.variant})` : ''}`);
    await refreshJobs();
    showTab('tab-downloads');
    const node = $(`#jobs li[data-id="${jobId}"]`);
    if (node) node.scrollIntoView({ block: 'nearest' });
  } catch (err) {
    showError(box, err);
  } finally {
    button.disabled = false;
  }
}

$('#search-form').addEventListener('submit', search);
for (const select of ['#search-sort', '#search-format']) {
  $(select).addEventListener('change', () => {
    if (!looksLikeRepo($('#search-input').value)) findModels($('#search-input').value);
  });
}

// ---------------------------------------------------------------------------------------------
// Downloads: the queue, live from events

const jobsState = { order: [], byId: new Map(), updatedAt: new Map(), speeds: new Map(), pending: new Set(), frame: 0 };

const REASONS = {
  battery: 'Waiting: on battery',
  disk: 'Waiting: not enough free disk space',
  schedule: 'Waiting: outside the download schedule',
  offline: 'Waiting: offline',
  paused: 'Paused',
};

const describeReason = (reason) => {
  if (!reason) return null;
  const key = String(reason).toLowerCase();
  return REASONS[key] || String(reason);
};

const ACTIVE = new Set(['queued', 'running', 'paused', 'deferred']);

function fileDone(f) {
  if (typeof f.done === 'boolean') return f.done ? f.size : 0;
  return Number(f.done) || 0;
}

/**
 * The job's speed: the engine's estimate (the same one `mcache pull` shows), from its latest
 * progress event; none once events stop for 3 s (a stalled connection has no speed).
 */
function jobSpeed(job) {
  if (job.state !== 'running') return 0;
  const latest = jobsState.speeds.get(job.id);
  if (!latest) return job.speed_bps || 0;
  return Date.now() - latest.at < 3000 ? latest.speed : 0;
}

/** Time left at that speed, as the engine computes `eta_seconds`. */
function jobEta(job, speed) {
  if (job.state !== 'running') return null;
  if (speed > 0) return Math.ceil(Math.max(0, job.bytes_total - job.bytes_done) / speed);
  return jobsState.speeds.has(job.id) ? null : job.eta_seconds ?? null;
}

function actionButton(job, action, label, enabled) {
  return h('button', { type: 'button', class: 'small', disabled: !enabled, dataset: { action },
    'aria-label': `${label} ${job.repo}`,
    onclick: (e) => busy(e.currentTarget, async () => {
      const updated = await api.jobAction(job.id, action);
      if (updated && updated.id !== undefined) upsertJob(updated);
      if (action === 'move-up' || action === 'move-down') await refreshJobs();
    }) }, label);
}

function finishedButton(job, action, label, run) {
  return h('button', { type: 'button', class: 'small', dataset: { action }, 'aria-label': `${label}: ${job.repo}`,
    onclick: (e) => busy(e.currentTarget, run) }, label);
}

function renderJob(job) {
  let node = $(`#jobs li[data-id="${job.id}"]`);
  if (!node) {
    node = h('li', { class: 'job', dataset: { id: String(job.id) }, 'aria-label': `Download of ${job.repo}` },
      h('div', { class: 'job-head' },
        h('span', { class: 'job-title' }),
        h('span', { class: 'badge state' }),
        h('span', { class: 'reason' }),
        h('div', { class: 'job-actions' })),
      h('progress', { max: 100, value: 0 }),
      h('div', { class: 'job-line' },
        h('span', { class: 'bytes' }), h('span', { class: 'speed' }), h('span', { class: 'eta' }), h('span', { class: 'where mono' })),
      h('div', { class: 'job-error error-box', role: 'alert', hidden: true }),
      h('details', { class: 'files' }, h('summary', {}, 'Files'), h('div', { class: 'file-progress' })));
    $('#jobs').append(node);
  }
  const speed = jobSpeed(job);
  const percent = pct(job.bytes_done, job.bytes_total);
  $('.job-title', node).textContent = `${job.repo}${job.variant ? ` · ${job.variant}` : ''}${job.revision && job.revision !== 'main' ? ` @ ${job.revision}` : ''}`;
  const badge = $('.badge.state', node);
  badge.className = `badge state ${job.state}`;
  badge.textContent = job.state;
  $('.reason', node).textContent = job.state === 'deferred' || job.reason ? describeReason(job.reason) || '' : '';
  const bar = $('progress', node);
  bar.value = percent;
  bar.setAttribute('aria-label', `${job.repo}: ${percent}%`);
  $('.bytes', node).textContent = `${fmtBytes(job.bytes_done)} of ${fmtBytes(job.bytes_total)} (${percent}%)`;
  $('.speed', node).textContent = job.state === 'running' ? fmtSpeed(speed) : '';
  $('.eta', node).textContent = job.state === 'running' ? `ETA ${fmtEta(jobEta(job, speed))}` : '';
  if (job.state !== 'done') $('.where', node).textContent = '';
  node.dataset.state = job.state;

  // Buttons are rebuilt only when the state changes, so keyboard focus stays where it was.
  const actions = $('.job-actions', node);
  const removed = job.state === 'done' && jobsState.cached && !jobsState.cached.has(job.repo);
  const actionsKey = `${job.state}${removed ? ':removed' : ''}`;
  if (job.state === 'done') {
    $('.where', node).textContent = removed ? 'Removed from the cache since' : job.snapshot_path || '';
  }
  if (actions.dataset.state !== actionsKey) {
    const active = ACTIVE.has(job.state);
    const focused = actions.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    // A finished card offers what makes sense after the end, never live controls.
    if (job.state === 'done') {
      actions.replaceChildren(removed ? '' : finishedButton(job, 'reveal', 'Open folder', async () => {
        const { path } = await api.reveal(job.repo);
        toast(api.transport === 'ipc' ? 'Opened in the file manager' : 'Folder', path);
      }));
    } else if (job.state === 'failed' || job.state === 'cancelled') {
      actions.replaceChildren(finishedButton(job, 'retry', 'Retry', async () => {
        const request = { repo: job.repo, revision: job.revision };
        if (job.variant) request.variant = job.variant;
        else request.files = (job.files || []).map((f) => f.path);
        const agreed = await withRoom(request);
        if (!agreed) return;
        const { job_id: id } = await api.pull(agreed);
        toast('Download queued again', `${job.repo}${job.variant ? ` (${job.variant})` : ''}: job ${id}`);
        await refreshJobs();
      }));
    } else {
      actions.replaceChildren(
        job.state === 'paused'
          ? actionButton(job, 'resume', 'Resume', true)
          : actionButton(job, 'pause', 'Pause', job.state === 'running' || job.state === 'queued' || job.state === 'deferred'),
        actionButton(job, 'cancel', 'Cancel', active),
        actionButton(job, 'move-up', '↑', active),
        actionButton(job, 'move-down', '↓', active));
    }
    for (const b of $$('button', actions)) {
      if (b.dataset.action === 'move-up') b.title = 'Move up in the queue';
      if (b.dataset.action === 'move-down') b.title = 'Move down in the queue';
    }
    actions.dataset.state = actionsKey;
    if (focused) {
      const again = $(`button[data-action="${focused === 'pause' ? 'resume' : focused === 'resume' ? 'pause' : focused}"]`, actions);
      if (again && !again.disabled) again.focus();
    }
  }

  const errBox = $('.job-error', node);
  if (job.error) showError(errBox, new ApiError(job.error.kind, job.error.message, job.error.hint));
  else clearError(errBox);

  const grid = $('.file-progress', node);
  const rows = [];
  // Speed and ETA are the job's (files share its connections), shown on its line.
  for (const f of job.files || []) {
    const done = fileDone(f);
    const filePct = pct(done, f.size);
    rows.push(
      h('span', { class: 'path mono' }, f.path),
      h('progress', { max: 100, value: filePct, 'aria-label': `${f.path}: ${filePct}%` }),
      h('span', { class: 'figures' }, f.state === 'queued' && !f.size ? 'waiting' : `${fmtBytes(done)} / ${fmtBytes(f.size)}`,
        f.state && f.state !== 'done' && f.state !== 'running' ? ` · ${f.state}` : '',
        sourcesText(f.sources),
        f.reused ? ` · ${fmtBytes(f.reused)} reused from cached chunks` : ''));
  }
  grid.replaceChildren(...rows);
  $('summary', node).textContent = `${(job.files || []).length} file${(job.files || []).length === 1 ? '' : 's'}`;
}

function renderTotals() {
  const jobs = jobsState.order.map((id) => jobsState.byId.get(id)).filter(Boolean);
  const active = jobs.filter((j) => ACTIVE.has(j.state));
  // "Active" counts what moves or will move by itself: a paused job is counted as paused.
  const moving = active.filter((j) => j.state !== 'paused');
  const paused = active.length - moving.length;
  const running = jobs.filter((j) => j.state === 'running');
  const speed = running.reduce((s, j) => s + jobSpeed(j), 0);
  const done = active.reduce((s, j) => s + j.bytes_done, 0);
  const total = active.reduce((s, j) => s + j.bytes_total, 0);
  const counts = [moving.length ? `${moving.length} active` : null, paused ? `${paused} paused` : null].filter(Boolean).join(', ');
  $('#totals').textContent = active.length
    ? `${counts} · ${fmtBytes(done)} of ${fmtBytes(total)}${speed > 0 ? ` · ${fmtSpeed(speed)} · ETA ${fmtEta((total - done) / speed)}` : ''}`
    : '';
  $('#downloads-count').textContent = moving.length ? String(moving.length) : '';
  $('#jobs-empty').hidden = jobs.length > 0;
  const finished = jobs.length - active.length;
  $('#clear-finished').disabled = finished === 0;
  $('#clear-finished').title = finished ? `Remove ${finished} finished download${finished === 1 ? '' : 's'} from this list (the files stay)` : 'Nothing finished to clear';
}

function scheduleRender(id) {
  jobsState.pending.add(id);
  if (jobsState.frame) return;
  jobsState.frame = requestAnimationFrame(() => {
    jobsState.frame = 0;
    for (const jobId of jobsState.pending) {
      const job = jobsState.byId.get(jobId);
      if (job) renderJob(job);
    }
    jobsState.pending.clear();
    renderTotals();
  });
}

function upsertJob(job) {
  const before = jobsState.byId.get(job.id);
  jobsState.byId.set(job.id, job);
  jobsState.updatedAt.set(job.id, performance.now());
  if (!jobsState.order.includes(job.id)) jobsState.order.push(job.id);
  scheduleRender(job.id);
  if (before && before.state !== job.state && (job.state === 'done' || job.state === 'cancelled')) {
    jobsState.speeds.delete(job.id);
    if (!$('#panel-cache').hidden) refreshCache();
  }
}

function applyProgress(event) {
  const job = jobsState.byId.get(event.job_id);
  if (!job) { refreshJobs(); return; }
  // A progress event carries the job's speed (the engine's estimate over all its files).
  jobsState.speeds.set(job.id, { speed: event.speed_bps || 0, at: Date.now() });
  const file = (job.files || []).find((f) => f.path === event.path);
  if (file) {
    file.done = event.done;
    if (event.total) file.size = event.total;
  } else {
    job.files = [...(job.files || []), { path: event.path, size: event.total, done: event.done, state: 'running' }];
  }
  job.bytes_done = job.files.reduce((s, f) => s + fileDone(f), 0);
  if (job.state === 'queued' || job.state === 'deferred') job.state = 'running';
  scheduleRender(job.id);
}

async function refreshJobs() {
  const box = $('#jobs-error');
  try {
    const asked = performance.now();
    const [listed, cached] = await Promise.all([api.jobs(), api.cacheList().catch(() => null)]);
    if (cached) jobsState.cached = new Set(cached.map((r) => r.repo));
    clearError(box);
    // A job event that arrived while the list was on its way is newer than the list's row.
    const jobs = listed.map((j) => ((jobsState.updatedAt.get(j.id) || 0) > asked && jobsState.byId.get(j.id)) || j);
    jobsState.order = jobs.map((j) => j.id);
    jobsState.byId = new Map(jobs.map((j) => [j.id, j]));
    // Reorder the existing nodes to the queue's order and drop vanished jobs.
    const list = $('#jobs');
    for (const li of $$('li[data-id]', list)) if (!jobsState.byId.has(Number(li.dataset.id)) && !jobsState.byId.has(li.dataset.id)) li.remove();
    for (const job of jobs) renderJob(job);
    for (const job of jobs) list.append($(`li[data-id="${job.id}"]`, list));
    renderTotals();
  } catch (err) {
    showError(box, err);
  }
}

$('#pause-all').addEventListener('click', (e) => busy(e.currentTarget, async () => {
  const { affected } = await api.pauseAll();
  toast('Paused', `${affected} download${affected === 1 ? '' : 's'} paused`);
  await refreshJobs();
}));
$('#resume-all').addEventListener('click', (e) => busy(e.currentTarget, async () => {
  const { affected } = await api.resumeAll();
  toast('Resumed', `${affected} download${affected === 1 ? '' : 's'} resumed`);
  await refreshJobs();
}));
$('#clear-finished').addEventListener('click', async (e) => {
  const button = e.currentTarget;
  button.disabled = true;
  try {
    const { affected } = await api.clearFinished();
    toast('Cleared', `${affected} finished download${affected === 1 ? '' : 's'} removed from the list; the models stay in the cache`);
  } catch (err) {
    showError($('#jobs-error'), err);
  }
  // The list decides whether anything is left to clear.
  await refreshJobs();
});
onShow['tab-downloads'] = refreshJobs;

// Keep speeds and ETAs honest when events stop arriving (e.g. a stalled connection).
setInterval(() => { for (const id of jobsState.order) if ((jobsState.byId.get(id) || {}).state === 'running') scheduleRender(id); }, 1000);

// ---------------------------------------------------------------------------------------------
// Cache browser

async function refreshStats() {
  try {
    const s = await api.stats();
    const total = s.hits + s.misses;
    const item = (label, value) => h('div', {}, h('dt', {}, label), h('dd', {}, value));
    $('#stats').replaceChildren(
      item('Storage used', `${fmtBytes(s.storage_used_bytes)}${s.budget_bytes ? ` of ${fmtBytes(s.budget_bytes)}` : ''}`),
      item('Downloaded', fmtBytes(s.bytes_downloaded)),
      item('Served from cache', fmtBytes(s.bytes_from_cache)),
      ...(s.bytes_reused ? [item('Reused Xet chunks', fmtBytes(s.bytes_reused))] : []),
      item('Cache hits', total ? `${s.hits} of ${total} (${pct(s.hits, total)}%)` : '—'),
      ...(s.downloads || []).slice(0, 5).map((d) => item(
        `${d.repo}${d.variant ? ` · ${d.variant}` : ''}`,
        `${fmtBytes(d.bytes)} at ${fmtSpeed(d.speed_bps)}`)));
  } catch (err) {
    $('#stats').replaceChildren();
  }
}

function renderCache(repos) {
  const body = $('#cache-table tbody');
  $('#cache-empty').hidden = repos.length > 0;
  $('#cache-table').hidden = repos.length === 0;
  body.replaceChildren(...repos.map((r) => {
    const pinId = `pin-${r.repo.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const revisions = (r.revisions || []).map((rev) => h('li', {},
      h('span', { class: 'mono' }, String(rev.commit).slice(0, 10)),
      rev.refs && rev.refs.length ? ` (${rev.refs.join(', ')})` : '',
      ` · ${rev.files} file${rev.files === 1 ? '' : 's'} · ${fmtBytes(rev.size_bytes)} `,
      (r.revisions || []).length > 1 ? h('button', { type: 'button', class: 'small', 'aria-label': `Delete revision ${String(rev.commit).slice(0, 10)} of ${r.repo}`,
        onclick: (e) => deleteCached(e.currentTarget, r, rev) }, 'Delete') : null));
    return h('tr', { dataset: { repo: r.repo } },
      h('td', {},
        h('div', { class: 'variant-name' }, r.repo),
        r.repo_type && r.repo_type !== 'model' ? h('span', { class: 'badge neutral' }, r.repo_type) : null,
        updateNotes(r),
        h('details', { class: 'files' }, h('summary', {}, `${(r.revisions || []).length} revision${(r.revisions || []).length === 1 ? '' : 's'}`),
          h('ul', { class: 'revisions' }, revisions), h('div', { class: 'muted small mono' }, r.path))),
      h('td', { class: 'num' }, fmtBytes(r.size_bytes)),
      h('td', { title: r.last_used ? new Date(r.last_used).toLocaleString() : '' }, fmtAgo(r.last_used)),
      h('td', {}, h('label', { class: 'switch', for: pinId },
        h('input', { type: 'checkbox', id: pinId, role: 'switch', checked: Boolean(r.pinned), 'aria-label': `Pin ${r.repo}`,
          onchange: (e) => togglePin(e.currentTarget, r) }),
        h('span', {}, r.pinned ? 'Pinned' : 'No'))),
      h('td', {}, h('div', { class: 'row-actions' },
        h('button', { type: 'button', class: 'small', 'aria-label': `Reveal ${r.repo} in the file manager`,
          onclick: (e) => busy(e.currentTarget, async () => {
            const { path } = await api.reveal(r.repo);
            toast(api.transport === 'ipc' ? 'Opened in the file manager' : 'Folder', path);
          }) }, 'Reveal'),
        convertControl(r),
        h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${r.repo}`,
          onclick: (e) => deleteCached(e.currentTarget, r, null) }, 'Delete'))));
  }));
}

/** Convert: a GGUF precision and a button that queues the conversion of the cached snapshot
 * (safetensors to GGUF; Llama, Mistral and Qwen2 natively). The job shows in Downloads; the
 * output goes to the app-data folder's `converted/`, never into the hub cache. */
function convertControl(r) {
  const select = h('select', { class: 'small', 'aria-label': `GGUF precision for ${r.repo}` },
    h('option', { value: 'f16' }, 'F16'),
    h('option', { value: 'q8_0' }, 'Q8_0'));
  return h('span', { class: 'convert' }, select,
    h('button', { type: 'button', class: 'small', 'aria-label': `Convert to GGUF: ${r.repo}`,
      title: 'Convert to GGUF for llama.cpp, Ollama or LM Studio. ONNX models cannot be converted: there is no standard ONNX to GGUF converter.',
      onclick: (e) => busy(e.currentTarget, async () => {
        const { job_id: id } = await api.convert(r.repo, select.value);
        toast('Conversion queued', `${r.repo} to GGUF ${select.value.toUpperCase()}: job ${id}. The file goes to Model Cache's own folder (converted/), with a record of its source commit.`);
      }) }, 'Convert to GGUF'));
}

const short = (commit) => String(commit).slice(0, 7);

/** "A newer version is available" with Update and Keep-this-version, or "Kept at …" with
 * Follow, for each followed branch of a cached model. */
function updateNotes(r) {
  const notes = [];
  for (const u of r.updates || []) {
    notes.push(h('div', { class: 'update-note', dataset: { branch: u.branch } },
      h('span', { class: 'badge info' }, 'Update available'),
      ` ${u.branch}: ${short(u.commit)} → ${short(u.latest)} `,
      h('button', { type: 'button', class: 'small', 'aria-label': `Update ${r.repo} to the latest ${u.branch}`,
        onclick: (e) => busy(e.currentTarget, async () => {
          const { job_id: id } = await api.update(r.repo, u.branch);
          toast('Update queued', `${r.repo} (${u.branch}): job ${id}; unchanged files are not downloaded again.`);
          refreshJobs();
        }) }, 'Update'),
      h('button', { type: 'button', class: 'small', 'aria-label': `Keep this version of ${r.repo} (${short(u.commit)})`,
        onclick: (e) => busy(e.currentTarget, async () => {
          await api.hold(r.repo, u.branch, true);
          await refreshCache();
        }) }, 'Keep this version')));
  }
  for (const held of r.held || []) {
    notes.push(h('div', { class: 'update-note', dataset: { branch: held.branch } },
      h('span', { class: 'badge neutral' }, 'Kept'),
      ` ${held.branch} stays at ${short(held.commit)} `,
      h('button', { type: 'button', class: 'small', 'aria-label': `Follow ${held.branch} of ${r.repo} again`,
        onclick: (e) => busy(e.currentTarget, async () => {
          await api.hold(r.repo, held.branch, false);
          await refreshCache();
        }) }, `Follow ${held.branch}`)));
  }
  return notes;
}

async function checkUpdates(button) {
  await busy(button, async () => {
    const report = await api.checkUpdates(true);
    const found = (report.updates || []).length;
    const failed = (report.failed || []).length;
    toast('Checked for updates', report.skipped === 'offline'
      ? 'Offline: nothing was checked.'
      : `${report.checked} checked · ${found ? `${found} update${found === 1 ? '' : 's'} available` : 'everything is up to date'}`
        + (failed ? ` · ${failed} could not be checked` : ''));
    await refreshCache();
  });
}

async function togglePin(box, repo) {
  const wanted = box.checked;
  box.disabled = true;
  try {
    const updated = await api.pin(repo.repo, wanted);
    box.checked = Boolean(updated.pinned);
    box.nextElementSibling.textContent = updated.pinned ? 'Pinned' : 'No';
  } catch (err) {
    box.checked = !wanted;
    showError($('#cache-error'), err);
  } finally {
    box.disabled = false;
  }
}

async function deleteCached(button, repo, revision) {
  const what = revision ? `revision ${String(revision.commit).slice(0, 10)} of ${repo.repo}` : repo.repo;
  const size = revision ? revision.size_bytes : repo.size_bytes;
  const extra = repo.pinned && !revision ? ' It is pinned.' : '';
  const ok = await confirmDialog(`Delete ${what}?`, `This removes ${fmtBytes(size)} from the cache; other programs using it will have to download it again.${extra}`, 'Delete');
  if (!ok) { button.focus(); return; }
  await busy(button, async () => {
    const { freed_bytes: freed } = await api.deleteCached(repo.repo, revision ? revision.commit : null);
    toast('Deleted', `${what}: ${fmtBytes(freed)} freed`);
    await refreshCache();
  });
}

async function refreshCache() {
  const box = $('#cache-error');
  try {
    const repos = await api.cacheList();
    clearError(box);
    renderCache(repos);
    // Download cards of models removed since say so.
    jobsState.cached = new Set(repos.map((r) => r.repo));
    for (const id of jobsState.order) if ((jobsState.byId.get(id) || {}).state === 'done') scheduleRender(id);
  } catch (err) {
    showError(box, err);
  }
  refreshStats();
}

// ---------------------------------------------------------------------------------------------
// Peers: sharing with other Model Cache machines on the LAN

/** `models--org--name` as `org/name` (datasets and spaces keep their prefix). */
function repoName(folder) {
  const [kind, ...parts] = folder.split('--');
  const id = parts.join('/');
  return kind === 'models' ? id : `${kind}/${id}`;
}

function renderPeers(view) {
  $('#peers-sharing').checked = Boolean(view.sharing);
  $('#peers-compress').checked = Boolean(view.compress);
  $('#peers-this').textContent = `This machine: ${view.this.name} (${view.this.peer_id})`
    + (view.sharing ? ', sharing' : ', not sharing');
  peerNames.clear();
  for (const p of view.paired) peerNames.set(`peer:${p.peer_id}`, p.name);
  const body = $('#peers-table tbody');
  body.replaceChildren(...view.paired.map((p) => h('tr', { dataset: { peer: p.peer_id } },
    h('th', { scope: 'row' }, p.name),
    h('td', {}, h('code', {}, p.peer_id)),
    h('td', {}, p.address || '—'),
    h('td', {}, p.online ? 'online' : 'not seen'),
    h('td', { class: 'num' }, fmtBytes(p.bytes_served)),
    h('td', { class: 'num' }, fmtBytes(p.bytes_received)),
    h('td', {}, h('button', {
      type: 'button',
      'aria-label': `What ${p.name} holds`,
      onclick: (e) => busy(e.currentTarget, async () => {
        const refs = await api.holdings(p.peer_id);
        const list = $('#peers-holdings');
        $('#peers-holdings-title').textContent = `${p.name} holds`;
        $('#peers-holdings-title').hidden = false;
        list.replaceChildren(...(refs.length ? refs.map((r) => h('li', {},
          h('span', {}, repoName(r.repo)), ` ${r.ref_name} `, h('code', {}, r.commit.slice(0, 10)))) : [h('li', {}, 'Nothing shared.')]));
      }),
    }, 'Holds…'), ' ', h('button', {
      type: 'button',
      'aria-label': `Unpair ${p.name}`,
      onclick: (e) => busy(e.currentTarget, async () => {
        const ok = await confirmDialog(`Unpair ${p.name}?`, 'It is neither served nor used again until you pair again.', 'Unpair');
        if (!ok) return;
        renderPeers(await api.unpair(p.peer_id));
        toast('Unpaired', p.name);
      }),
    }, 'Unpair')))));
  $('#peers-empty').hidden = view.paired.length > 0;
  $('#peers-seen').replaceChildren(...view.unpaired.map((s) => h('li', { dataset: { peer: s.peer_id } },
    `${s.name} (${s.peer_id}) at ${s.address} `,
    h('button', {
      type: 'button',
      onclick: () => { $('#peers-pair-address').value = s.peer_id; $('#peers-pair-code').focus(); },
    }, 'Pair…'))));
  $('#peers-seen-list').replaceChildren(...view.unpaired.map((s) => h('option', { value: s.peer_id }, s.name)));
  $('#peers-seen-empty').hidden = view.unpaired.length > 0;
}

async function refreshPeers() {
  const box = $('#peers-error');
  try {
    renderPeers(await api.peers());
    clearError(box);
  } catch (err) {
    showError(box, err);
  }
}

onShow['tab-peers'] = refreshPeers;
$('#peers-refresh').addEventListener('click', (e) => busy(e.currentTarget, refreshPeers));
$('#peers-sharing').addEventListener('change', (e) => busy(e.currentTarget, async () => {
  renderPeers(await api.setSharing(e.currentTarget.checked));
}).finally(refreshPeers));
$('#peers-compress').addEventListener('change', (e) => busy(e.currentTarget, async () => {
  renderPeers(await api.setPeerCompression(e.currentTarget.checked));
}).finally(refreshPeers));
$('#peers-show-code').addEventListener('click', (e) => busy(e.currentTarget, async () => {
  const { code, expires_at: expires } = await api.showPairingCode();
  const minutes = Math.max(1, Math.round((expires - Date.now()) / 60000));
  $('#peers-code').textContent = `${code} — type it on the other machine within ${minutes} min`;
}));
$('#peers-pair-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const address = $('#peers-pair-address').value.trim();
  const code = $('#peers-pair-code').value.trim();
  if (!address || !code) return;
  busy($('#peers-pair'), async () => {
    const peer = await api.pair(address, code);
    toast('Paired', `${peer.name} (${peer.peer_id})`);
    $('#peers-pair-code').value = '';
    await refreshPeers();
  });
});

$('#cache-refresh').addEventListener('click', (e) => busy(e.currentTarget, refreshCache));
$('#cache-check-updates').addEventListener('click', (e) => checkUpdates(e.currentTarget));
// Import: a dry run first ("Check") says how each file would be placed and what it saves; a
// file that needs a copy is only copied after the person agrees to its size.

const IMPORT_METHODS = {
  already_there: 'already there', hard_link: 'hard link', reflink: 'reflink', copy: 'copy', needs_copy: 'needs a copy',
};

function importBody(extra) {
  const path = $('#import-path').value.trim();
  return {
    from: $('#import-from').value,
    paths: path ? [path] : [],
    repo: $('#import-repo').value.trim() || null,
    suggested_repos: $('#import-suggested').checked,
    revision: null,
    copy: false,
    dry_run: false,
    ...extra,
  };
}

function describeImport(report) {
  const lines = [];
  for (const item of report.items) {
    const where = item.placement
      ? (item.placement.kind === 'hub' ? `as ${item.placement.repo}` : `into ${item.placement.dir}`)
      : '';
    lines.push(`${item.state.replace('_', ' ')}: ${item.name} (${fmtBytes(item.bytes)}) ${where}`);
    for (const file of item.files) lines.push(`    ${file.path}  ${fmtBytes(file.size)}  ${IMPORT_METHODS[file.method] || file.method}`);
    if (item.error) lines.push(`    ${item.error}`);
  }
  const verb = report.dry_run ? 'would save' : 'saved';
  lines.push(`${report.items.length} model(s), ${fmtBytes(report.bytes)}: ${verb} ${fmtBytes(report.saved_bytes)}` +
    (report.copy_bytes > 0 ? `; ${fmtBytes(report.copy_bytes)} need a copy` : ''));
  return lines.join('\n');
}

async function runImport(button, dryRun) {
  const box = $('#import-error');
  const out = $('#import-result');
  await busy(button, async () => {
    try {
      let report = await api.importModels(importBody({ dry_run: dryRun }));
      const needsCopy = report.items.some((i) => i.state === 'needs_copy');
      if (!dryRun && needsCopy) {
        const ok = await confirmDialog('Copy the files?',
          `Some files can be neither hard-linked nor cloned here. Copying them uses ${fmtBytes(report.copy_bytes)} more disk.`, 'Copy');
        if (ok) report = await api.importModels(importBody({ copy: true }));
      }
      clearError(box);
      out.textContent = describeImport(report);
      out.hidden = false;
      if (!dryRun) await refreshCache();
    } catch (err) {
      showError(box, err);
    }
  });
}

$('#import-check').addEventListener('click', (e) => runImport(e.currentTarget, true));
$('#import-form').addEventListener('submit', (e) => { e.preventDefault(); runImport($('#import-run'), false); });

onShow['tab-cache'] = refreshCache;

// ---------------------------------------------------------------------------------------------
// Settings

const BYTE_UNITS = { MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };
const RATE_UNITS = { 'KiB/s': 2 ** 10, 'MiB/s': 2 ** 20, 'Mbit/s': 125000 };
let loadedSettings = null;

/** Shows a byte figure in the largest unit that keeps it at 1 or more. */
function setAmount(input, select, units, value) {
  if (value === null || value === undefined) { input.value = ''; return; }
  const names = Object.keys(units).filter((u) => !u.startsWith('Mbit'));
  let unit = names[0];
  for (const u of names) if (value >= units[u]) unit = u;
  select.value = unit;
  input.value = String(Math.round((value / units[unit]) * 1000) / 1000);
}

function readAmount(input, select, units, label, allowEmpty) {
  const raw = input.value.trim();
  if (raw === '') {
    if (allowEmpty) return null;
    throw new ApiError('invalid_input', `${label} needs a value`, null);
  }
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new ApiError('invalid_input', `${label} must be a positive number, not \`${raw}\``, null);
  return Math.round(n * units[select.value]);
}

function fillSettings(s) {
  loadedSettings = s;
  $('#set-cache-dir').value = s.cache_dir || '';
  setAmount($('#set-budget'), $('#set-budget-unit'), BYTE_UNITS, s.size_budget_bytes);
  setAmount($('#set-reserve'), $('#set-reserve-unit'), BYTE_UNITS, s.disk_reserve_bytes);
  setAmount($('#set-rate'), $('#set-rate-unit'), RATE_UNITS, s.max_rate_bps);
  $('#set-connections').value = s.connections ?? '';
  $('#set-endpoint').value = s.endpoint || '';
  $('#set-mirrors').value = (s.mirrors || []).join('\n');
  $('#set-proxy').value = s.proxy || '';
  $('#set-ca-bundle').value = s.ca_bundle || '';
  $('#set-bucket').value = s.bucket || '';
  $('#set-bucket-endpoint').value = s.bucket_endpoint || '';
  $('#set-bucket-push').checked = Boolean(s.bucket_push);
  $('#bucket-credentials').textContent = s.bucket_credentials ? 'found' : 'none found (only a public bucket can be read)';
  $('#set-origins').value = (s.allowed_origins || []).join('\n');
  $('#set-origins-trusted').value = (s.origins_without_token || []).join('\n');
  const used = $('#origins-last-used');
  used.replaceChildren();
  for (const origin of s.allowed_origins || []) {
    const at = (s.origins_last_used || {})[origin];
    const item = document.createElement('li');
    item.textContent = `${origin}: ${at ? `last used ${new Date(at).toLocaleString()}` : 'not used yet'}`;
    used.append(item);
  }
  $('#set-offline').checked = Boolean(s.offline);
  const battery = s.battery_policy || { mode: 'never', percent: 20 };
  $('#set-battery-mode').value = battery.mode;
  $('#set-battery-percent').value = battery.percent ?? 20;
  $('#set-battery-percent').disabled = battery.mode !== 'below';
  $('#set-on-metered').value = s.on_metered || 'download';
  $('#set-schedule-on').checked = Boolean(s.schedule);
  $('#set-schedule-start').value = s.schedule ? s.schedule.start : '01:00';
  $('#set-schedule-end').value = s.schedule ? s.schedule.end : '07:00';
  syncScheduleInputs();
  for (const kind of NOTIFY_KINDS) $(`#set-notify-${kind}`).checked = s[`notify_${kind}`] !== false;
  $('#set-notify-deferred-after').value = String(Math.max(1, Math.round(spanSeconds(s.notify_deferred_after || '10m') / 60)));
  syncNotifyInputs();
  $('#token-status').textContent = s.token_set ? 'set' : 'not set';
}

const NOTIFY_KINDS = ['finished', 'failed', 'deferred', 'storage', 'evicted', 'updates'];

/** Seconds of a span as the engine writes it (`10m`, `2h`, `90s`, `1w`), or of a number. */
function spanSeconds(span) {
  if (typeof span === 'number') return span;
  const m = /^(\d+)\s*([smhdw]?)$/.exec(String(span).trim());
  if (!m) return NaN;
  return Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 })[m[2]];
}

function syncNotifyInputs() {
  $('#set-notify-deferred-after').disabled = !$('#set-notify-deferred').checked;
}
$('#set-notify-deferred').addEventListener('change', syncNotifyInputs);

function syncScheduleInputs() {
  const on = $('#set-schedule-on').checked;
  $('#set-schedule-start').disabled = !on;
  $('#set-schedule-end').disabled = !on;
}

$('#set-schedule-on').addEventListener('change', syncScheduleInputs);
$('#set-battery-mode').addEventListener('change', () => { $('#set-battery-percent').disabled = $('#set-battery-mode').value !== 'below'; });

/** Reads the form into a partial AppSettings holding only what differs from what was loaded. */
/** The input each settings field is typed in (where its error is shown). */
const FIELD_INPUTS = {
  cache_dir: '#set-cache-dir',
  size_budget_bytes: '#set-budget',
  disk_reserve_bytes: '#set-reserve',
  max_rate_bps: '#set-rate',
  connections: '#set-connections',
  endpoint: '#set-endpoint',
  mirrors: '#set-mirrors',
  proxy: '#set-proxy',
  ca_bundle: '#set-ca-bundle',
  bucket: '#set-bucket',
  bucket_endpoint: '#set-bucket-endpoint',
  bucket_push: '#set-bucket-push',
  allowed_origins: '#set-origins',
  origins_without_token: '#set-origins-trusted',
  battery_policy: '#set-battery-percent',
  schedule: '#set-schedule-start',
  notify_deferred_after: '#set-notify-deferred-after',
};

/** Shows each refused field's reason beside it (and clears the earlier ones); focuses the first. */
function showFieldErrors(fields) {
  for (const old of $$('#settings-form .field-error')) old.remove();
  for (const input of $$('#settings-form [aria-invalid="true"]')) {
    input.removeAttribute('aria-invalid');
    const ids = (input.getAttribute('aria-describedby') || '').split(' ').filter((id) => id && !id.startsWith('err-'));
    if (ids.length) input.setAttribute('aria-describedby', ids.join(' ')); else input.removeAttribute('aria-describedby');
  }
  let first = null;
  for (const { field, message } of fields || []) {
    const input = $(FIELD_INPUTS[field] || `#settings-form [name="${field}"]`);
    if (!input) continue;
    const id = `err-${field}`;
    const note = h('p', { class: 'field-error', id }, plain(message));
    const holder = input.closest('.with-unit, .inline') || input;
    holder.after(note);
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-describedby', [input.getAttribute('aria-describedby'), id].filter(Boolean).join(' '));
    first = first || input;
  }
  if (first) first.focus();
}

function readSettingsForm() {
  const errors = [];
  const check = (field, read) => {
    try { return read(); } catch (err) { errors.push({ field, message: err.message }); return undefined; }
  };
  const s = {
    cache_dir: $('#set-cache-dir').value.trim(),
    size_budget_bytes: check('size_budget_bytes', () => readAmount($('#set-budget'), $('#set-budget-unit'), BYTE_UNITS, 'Size budget', true)),
    disk_reserve_bytes: check('disk_reserve_bytes', () => readAmount($('#set-reserve'), $('#set-reserve-unit'), BYTE_UNITS, 'Disk reserve', false)),
    max_rate_bps: check('max_rate_bps', () => readAmount($('#set-rate'), $('#set-rate-unit'), RATE_UNITS, 'Bandwidth limit', true)),
    endpoint: $('#set-endpoint').value.trim(),
    mirrors: $('#set-mirrors').value.split('\n').map((m) => m.trim()).filter(Boolean),
    proxy: $('#set-proxy').value.trim() || null,
    ca_bundle: $('#set-ca-bundle').value.trim() || null,
    bucket: $('#set-bucket').value.trim().replace(/\/+$/, '') || null,
    bucket_endpoint: $('#set-bucket-endpoint').value.trim().replace(/\/+$/, '') || null,
    bucket_push: $('#set-bucket-push').checked,
    allowed_origins: $('#set-origins').value.split('\n').map((m) => m.trim()).filter(Boolean),
    origins_without_token: $('#set-origins-trusted').value.split('\n').map((m) => m.trim()).filter(Boolean),
    offline: $('#set-offline').checked,
    battery_policy: { mode: $('#set-battery-mode').value, percent: Number($('#set-battery-percent').value) },
    on_metered: $('#set-on-metered').value,
    schedule: $('#set-schedule-on').checked ? { start: $('#set-schedule-start').value, end: $('#set-schedule-end').value } : null,
  };
  const connections = Number($('#set-connections').value);
  if (!Number.isInteger(connections) || connections < 1 || connections > 256) {
    errors.push({ field: 'connections', message: 'Connections must be a whole number from 1 to 256' });
  }
  s.connections = connections;
  if (s.max_rate_bps === 0) errors.push({ field: 'max_rate_bps', message: 'A limit of 0 would stop all downloads: leave it empty for no limit, or pause downloads instead' });
  if (!s.cache_dir) errors.push({ field: 'cache_dir', message: 'The cache folder cannot be empty' });
  const p = s.battery_policy.percent;
  if (s.battery_policy.mode === 'below' && (!Number.isInteger(p) || p < 0 || p > 100)) {
    errors.push({ field: 'battery_policy', message: 'The battery level must be a whole percentage from 0 to 100' });
  }
  const notUrl = (url) => {
    let parsed = null;
    try { parsed = new URL(url); } catch (_) { parsed = null; }
    return !parsed || !/^https?:$/.test(parsed.protocol);
  };
  if (notUrl(s.endpoint)) errors.push({ field: 'endpoint', message: `${s.endpoint || 'An empty address'} is not an http(s) URL` });
  const badMirror = s.mirrors.find(notUrl);
  if (badMirror) errors.push({ field: 'mirrors', message: `${badMirror} is not an http(s) URL` });
  if (s.bucket && !/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(s.bucket)) {
    errors.push({ field: 'bucket', message: `${s.bucket} is not a bucket address; write it as s3://bucket or s3://bucket/prefix` });
  }
  if (s.bucket_endpoint && notUrl(s.bucket_endpoint)) errors.push({ field: 'bucket_endpoint', message: `${s.bucket_endpoint} is not an http(s) URL` });
  if (!s.bucket && (s.bucket_push || s.bucket_endpoint) && !(loadedSettings && loadedSettings.bucket)) {
    errors.push({ field: 'bucket', message: 'Name the team bucket first' });
  }
  if (s.proxy && notUrl(s.proxy)) errors.push({ field: 'proxy', message: `${s.proxy} is not an http(s) proxy URL` });
  if (s.schedule && (!/^\d\d:\d\d$/.test(s.schedule.start) || !/^\d\d:\d\d$/.test(s.schedule.end))) {
    errors.push({ field: 'schedule', message: 'The schedule needs a start and an end time' });
  }
  for (const kind of NOTIFY_KINDS) s[`notify_${kind}`] = $(`#set-notify-${kind}`).checked;
  const waitMinutes = Number($('#set-notify-deferred-after').value);
  if ($('#set-notify-deferred').checked) {
    if (!Number.isInteger(waitMinutes) || waitMinutes < 1 || waitMinutes > 10080) {
      errors.push({ field: 'notify_deferred_after', message: 'The wait must be a whole number of minutes from 1 to 10080 (7 days)' });
    } else if (!loadedSettings || spanSeconds(loadedSettings.notify_deferred_after) !== waitMinutes * 60) {
      s.notify_deferred_after = `${waitMinutes}m`;
    }
  }
  if (errors.length) {
    throw new ApiError('invalid_input', `${errors.length === 1 ? 'One setting needs' : `${errors.length} settings need`} a fix: see the marked field${errors.length === 1 ? '' : 's'}`, null, errors);
  }
  const partial = {};
  for (const [key, value] of Object.entries(s)) {
    if (!loadedSettings || JSON.stringify(loadedSettings[key]) !== JSON.stringify(value)) partial[key] = value;
  }
  return partial;
}

// Edits not yet saved are kept when the tab is shown again (no reload over the user's typing).
let settingsDirty = false;
$('#settings-form').addEventListener('input', () => { settingsDirty = true; $('#settings-saved').textContent = ''; });

// In the app, the cache folder can be chosen with the system's folder chooser; the choice
// fills the field, saved (and checked by the engine) with the rest of the form.
if (api.app) {
  const pick = $('#set-cache-dir-pick');
  pick.hidden = false;
  pick.addEventListener('click', () => busy(pick, async () => {
    const field = $('#set-cache-dir');
    const folder = await api.app.pickFolder('Choose the cache folder', field.value.trim());
    if (!folder) return;
    field.value = folder;
    field.dispatchEvent(new Event('input', { bubbles: true }));
    field.focus();
  }));
}

async function loadSettings() {
  const box = $('#settings-error');
  const form = $('#settings-form');
  if (settingsDirty) return;
  form.setAttribute('aria-busy', 'true');
  try {
    const s = await api.settings();
    if (!settingsDirty) fillSettings(s);
    else $('#token-status').textContent = s.token_set ? 'set' : 'not set';
    clearError(box);
    return s;
  } catch (err) {
    showError(box, err);
  } finally {
    form.setAttribute('aria-busy', 'false');
  }
}

$('#settings-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const box = $('#settings-error');
  const saved = $('#settings-saved');
  saved.textContent = '';
  clearError(box);
  showFieldErrors([]);
  let partial;
  try { partial = readSettingsForm(); } catch (err) { showError(box, err); showFieldErrors(err.fields); return; }
  if (Object.keys(partial).length === 0) { settingsDirty = false; saved.textContent = 'Nothing changed.'; return; }
  const button = $('#settings-save');
  button.disabled = true;
  try {
    fillSettings(await api.updateSettings(partial));
    settingsDirty = false;
    saved.textContent = 'Saved.';
    refreshHealth();
  } catch (err) {
    showError(box, err);
    // The engine checks every field too (and more than the form can): each reason beside its field.
    if (err.fields && err.fields.length) showFieldErrors(err.fields);
  } finally {
    button.disabled = false;
  }
});

async function saveToken(value) {
  const msg = $('#token-msg');
  msg.textContent = '';
  try {
    const { token_set: set } = await api.setToken(value);
    $('#token-status').textContent = set ? 'set' : 'not set';
    $('#token-input').value = '';
    msg.textContent = set ? 'Token saved.' : 'Token removed.';
  } catch (err) {
    showError($('#settings-error'), err);
  }
}

$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = $('#token-input').value.trim();
  if (!value) { showError($('#settings-error'), new ApiError('invalid_input', 'Paste a token first', 'Create one at huggingface.co/settings/tokens (read access is enough).')); return; }
  saveToken(value);
});
$('#token-clear').addEventListener('click', () => saveToken(null));
onShow['tab-settings'] = loadSettings;

// ---------------------------------------------------------------------------------------------
// Engine events and start-up

function onEngineEvent(event) {
  if (!event || typeof event !== 'object') return;
  switch (event.type) {
    case 'job': {
      const job = event.job || event;
      if (job && job.id !== undefined) upsertJob(job);
      // A finished download changes the storage figures in the status line.
      if (job && job.state === 'done') refreshHealth();
      break;
    }
    case 'progress':
      applyProgress(event);
      break;
    case 'notification':
      toast(event.title, event.body, event.level === 'error' ? 'error' : 'info');
      // Update checks and evictions announce themselves this way: the list of cached models
      // changes with them (a removed model never stays listed).
      if (/^Updates? available$|^Removed .* from the cache$/.test(event.title) && !$('#panel-cache').hidden) refreshCache();
      break;
    default:
      break;
  }
}

/**
 * Opens what the app was asked to open (`{repo, file, quant}` from its command line, a second
 * launch or a `modelcache://` link), as if the user had typed the repo; a refused link shows
 * why instead.
 */
async function openRequested() {
  const request = await api.app.takeOpenRequest().catch((err) => { console.warn('Could not read the open request', err); return null; });
  if (!request) return;
  showTab('tab-models');
  if (request.error) {
    showError($('#search-error'), new ApiError(request.error.kind, request.error.message, request.error.hint));
    return;
  }
  $('#search-input').value = request.repo;
  await lookUp(request.repo, { file: request.file, quant: request.quant });
}

async function setUpDesktop() {
  if (!api.app) return;
  const field = $('#autostart-field');
  const box = $('#set-autostart');
  try {
    box.checked = Boolean(await api.app.autostart());
    field.hidden = false;
  } catch (err) {
    console.warn('Start at login is unavailable', err);
  }
  box.addEventListener('change', async () => {
    try {
      box.checked = Boolean(await api.app.setAutostart(box.checked));
    } catch (err) {
      box.checked = !box.checked;
      showError($('#settings-error'), err);
    }
  });
  api.app.onOpenRequest(openRequested);
  await openRequested();
}

/** The app waits for its cache folder (an unplugged drive): say so, and reload once it runs. */
async function waitingForCache() {
  if (!api.app) return false;
  const { waiting } = await api.app.startupState();
  if (!waiting) return false;
  api.app.onReady(() => window.location.reload());
  // The event may have gone out between the question and the listener: ask again now and then.
  setInterval(async () => {
    const now = await api.app.startupState().catch(() => null);
    if (now && !now.waiting) window.location.reload();
  }, 3000);
  $('#engine-status').textContent = 'Waiting for the cache folder';
  $('#main').replaceChildren(h('section', { class: 'panel', id: 'waiting', role: 'alert' },
    h('h2', {}, 'The cache folder is not there'),
    h('p', {}, plain(waiting.message)),
    h('p', { class: 'help' }, plain(waiting.hint))));
  $$('[role="tab"]').forEach((tab) => { tab.disabled = true; });
  return true;
}

/** The welcome screen: where models go (and what is already there), the budget, battery and
 * metered-network behaviour, start at login. Shown until saved or dismissed; Settings shows it
 * again. */
async function showWelcome(force = false, known = null) {
  let settings = known;
  if (!settings) {
    try { settings = await api.settings(); } catch (err) { console.warn('Could not read the settings', err); return; }
  }
  if (settings.first_run_done && !force) return;
  const section = $('#welcome');
  $('#welcome-cache-dir').textContent = settings.cache_dir;
  setAmount($('#welcome-budget'), $('#welcome-budget-unit'), BYTE_UNITS, settings.size_budget_bytes);
  const battery = (settings.battery_policy || {}).mode || 'never';
  $('#welcome-battery').value = battery;
  $('#welcome-metered-policy').value = settings.on_metered || 'download';
  $('#welcome-cache-contents').textContent = 'Looking at what is already there…';
  section.hidden = false;
  if (force) { showTab('tab-models'); section.scrollIntoView(); $('#welcome-title').focus(); }
  try {
    const repos = await api.cacheList();
    const bytes = repos.reduce((sum, r) => sum + (r.size_bytes || 0), 0);
    $('#welcome-cache-contents').textContent = repos.length
      ? `Already there: ${repos.length} model${repos.length === 1 ? '' : 's'}, ${fmtBytes(bytes)} — nothing will be downloaded again.`
      : 'Nothing is there yet.';
  } catch (err) {
    $('#welcome-cache-contents').textContent = 'What is already there could not be read.';
  }
  try {
    const health = await api.health();
    const storage = (health.health || health).storage || {};
    $('#welcome-disk-free').textContent = Number.isFinite(storage.free_bytes)
      ? `${fmtBytes(storage.free_bytes)} free on that disk.` : '';
  } catch (_) { /* the free space is a nicety */ }
  if (api.app) {
    try {
      $('#welcome-autostart').checked = Boolean(await api.app.autostart());
      $('#welcome-autostart-field').hidden = false;
    } catch (_) { /* start at login is unavailable here */ }
  }
}

async function closeWelcome(save) {
  const box = $('#welcome-error');
  clearError(box);
  const patch = { first_run_done: true };
  if (save) {
    try {
      patch.size_budget_bytes = readAmount($('#welcome-budget'), $('#welcome-budget-unit'), BYTE_UNITS, 'Disk budget', true);
    } catch (err) { showError(box, err); $('#welcome-budget').focus(); return; }
    const mode = $('#welcome-battery').value;
    patch.battery_policy = { mode, percent: 30 };
    patch.on_metered = $('#welcome-metered-policy').value;
  }
  const button = save ? $('#welcome-save') : $('#welcome-skip');
  button.disabled = true;
  try {
    const settings = await api.updateSettings(patch);
    if (save && api.app && !$('#welcome-autostart-field').hidden) {
      await api.app.setAutostart($('#welcome-autostart').checked);
      $('#set-autostart').checked = $('#welcome-autostart').checked;
    }
    if (!settingsDirty) fillSettings(settings);
    $('#welcome').hidden = true;
    if (save) toast('Settings saved', 'Change them any time in Settings.');
    $('#search-input').focus();
  } catch (err) {
    showError(box, err);
  } finally {
    button.disabled = false;
  }
}

$('#welcome-form').addEventListener('submit', (e) => { e.preventDefault(); closeWelcome(true); });
$('#welcome-skip').addEventListener('click', () => closeWelcome(false));
$('#show-welcome').addEventListener('click', () => showWelcome(true));

async function start() {
  if (await waitingForCache()) return;
  if (!api.hasCredentials) {
    showError($('#search-error'), new ApiError('unauthorized', 'This page was opened without its access secret',
      'Open the link printed by `mcache serve` (it ends with `#token=…`), or use the desktop app.'));
  }
  $('#about').textContent = `Connected through ${api.transport === 'ipc' ? 'the app (IPC)' : 'the local API'}.`;
  api.subscribe(onEngineEvent, (s) => {
    const was = status.stream;
    status.stream = s;
    renderStatus();
    // A page opened without a secret already says how to get in.
    if (s === 'unauthorized' && api.hasCredentials) {
      showError($('#search-error'), new ApiError('unauthorized', 'The engine no longer accepts this page\'s access secret',
        'It was restarted with a new one: open the new link printed by `mcache serve` (it ends with `#token=…`).'));
    }
    // After a reconnect, events may have been missed: reload the queue.
    if (s === 'live' && was !== 'live') refreshJobs();
  });
  refreshHealth();
  setInterval(refreshHealth, 15000);
  refreshJobs();
  // The settings read once at start also say whether the welcome screen is due.
  loadSettings().then((settings) => { if (api.hasCredentials && settings) showWelcome(false, settings); });
  $('#search-input').focus();
  // The first screen lists the most downloaded models; a repo the app was asked to open wins.
  if (api.hasCredentials) findModels('', { quiet: true });
  setUpDesktop();
}

start();
