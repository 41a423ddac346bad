// The one module that talks to the engine. Inside the desktop app it uses Tauri IPC (commands
// with the same names and JSON shapes as the local API, see docs/local-api.md); in a plain browser
// it uses the local HTTP API under /api/ with the per-install secret as a bearer token. The rest
// of the UI never knows which transport it is on, so both behave the same.

const TOKEN_KEY = 'model-cache-api-token';

/** An error from the engine, normalised across transports: `kind` is stable, `hint` may be null. */
export class ApiError extends Error {
  /** `fields`: the refused fields of a settings change, `[{field, message}]`. */
  constructor(kind, message, hint, fields = []) {
    super(message);
    this.name = 'ApiError';
    this.kind = kind || 'internal';
    this.hint = hint || null;
    this.fields = Array.isArray(fields) ? fields : [];
  }
}

function toApiError(raw) {
  if (raw instanceof ApiError) return raw;
  // The HTTP API wraps errors as {"error": {...}}; IPC rejects with the inner object or a string.
  const inner = raw && typeof raw === 'object' && raw.error && typeof raw.error === 'object' ? raw.error : raw;
  if (inner && typeof inner === 'object' && (inner.kind || inner.message)) {
    return new ApiError(inner.kind, String(inner.message || inner.kind), inner.hint, inner.fields);
  }
  if (raw instanceof Error) return new ApiError('network', raw.message, null);
  return new ApiError('internal', String(raw), null);
}

/** Takes the secret from the URL fragment (`#token=...`) once, keeps it for the tab, and removes
 * it from the address bar so it is not shared by copying the URL. */
function browserToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (match) {
    const token = decodeURIComponent(match[1]);
    try { window.sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* private mode */ }
    const url = window.location.pathname + window.location.search;
    window.history.replaceState(null, '', url);
    return token;
  }
  try { return window.sessionStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
}

function ipcTransport(tauri) {
  return {
    name: 'ipc',
    async call(command, args) {
      try {
        return await tauri.core.invoke(command, args || {});
      } catch (err) {
        throw toApiError(err);
      }
    },
    subscribe(onEvent, onStatus) {
      let unlisten = null;
      let closed = false;
      tauri.event.listen('engine-event', (event) => onEvent(event.payload)).then((fn) => {
        if (closed) fn(); else { unlisten = fn; onStatus('live'); }
      }, () => onStatus('offline'));
      return () => { closed = true; if (unlisten) unlisten(); };
    },
  };
}

function httpTransport() {
  let token = browserToken();
  // The server writes a new secret at every start: once it refuses ours (401), the secret is
  // dead for good, so it is dropped rather than sent again. The page needs the new link.
  const forgetToken = () => {
    token = null;
    try { window.sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* private mode */ }
  };
  // A link with a new secret opened on an already loaded page only changes the fragment: start
  // over so every request and the event stream use it.
  window.addEventListener('hashchange', () => {
    if (/(?:^#|&)token=/.test(window.location.hash)) window.location.reload();
  });
  const headers = (extra) => {
    const h = { Accept: 'application/json', ...extra };
    if (token) h.Authorization = `Bearer ${token}`;
    return h;
  };

  async function request(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError('network', `Cannot reach the Model Cache engine: ${err.message}`,
        'Is `mcache serve` or the app still running?');
    }
    const text = await response.text();
    let json = null;
    if (text) {
      try { json = JSON.parse(text); } catch (_) { json = null; }
    }
    if (!response.ok) {
      // Only 401 means "wrong secret"; a 403 here may be the Hub refusing the engine.
      if (response.status === 401) forgetToken();
      if (json && json.error) throw toApiError(json);
      throw new ApiError(response.status === 401 ? 'unauthorized' : 'internal',
        `The engine answered ${response.status} ${response.statusText}`, null);
    }
    return json;
  }

  const q = (params) => {
    const s = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') s.set(k, v);
    const str = s.toString();
    return str ? `?${str}` : '';
  };

  // Commands mapped onto the HTTP routes of docs/local-api.md; `args` are the IPC arguments.
  const routes = {
    health: () => request('GET', '/api/health'),
    variants: (a) => request('GET', `/api/variants${q({ repo: a.repo, revision: a.revision })}`),
    model_page: (a) => request('GET', `/api/model${q({ repo: a.repo, revision: a.revision })}`),
    search: (a) => request('GET', `/api/search${q({ q: a.q, filter: a.filter, sort: a.sort, limit: a.limit, cursor: a.cursor })}`),
    pull: (a) => request('POST', '/api/pulls', a),
    pull_room: (a) => request('POST', '/api/pulls/room', a),
    jobs: () => request('GET', '/api/jobs'),
    job_action: (a) => request('POST', `/api/jobs/${encodeURIComponent(a.id)}/${encodeURIComponent(a.action)}`),
    pause_all: () => request('POST', '/api/jobs/pause-all'),
    resume_all: () => request('POST', '/api/jobs/resume-all'),
    clear_finished: () => request('POST', '/api/jobs/clear-finished'),
    cache_list: () => request('GET', '/api/cache'),
    cache_pin: (a) => request('POST', '/api/cache/pin', a),
    cache_update: (a) => request('POST', '/api/cache/update', a),
    cache_hold: (a) => request('POST', '/api/cache/hold', a),
    convert: (a) => request('POST', '/api/convert', { repo: a.repo, type: a.precision }),
    check_updates: (a) => request('POST', '/api/updates/check', a),
    cache_delete: (a) => request('POST', '/api/cache/delete', a),
    cache_reveal: (a) => request('POST', '/api/cache/reveal', a),
    import_models: (a) => request('POST', '/api/import', a.body),
    settings_get: () => request('GET', '/api/settings'),
    settings_set: (a) => request('PUT', '/api/settings', a.settings),
    set_token: (a) => request('POST', '/api/token', a),
    stats: () => request('GET', '/api/stats'),
    peers: () => request('GET', '/api/peers'),
    peers_sharing: (a) => request('POST', '/api/peers/sharing', a),
    peers_compression: (a) => request('POST', '/api/peers/compression', a),
    peers_pairing: () => request('POST', '/api/peers/pairing'),
    peers_pair: (a) => request('POST', '/api/peers/pair', a),
    peers_unpair: (a) => request('POST', '/api/peers/unpair', a),
    peers_holdings: (a) => request('GET', `/api/peers/holdings${q({ peer: a.peer })}`),
  };

  return {
    name: 'http',
    hasToken: Boolean(token),
    async call(command, args) {
      const route = routes[command];
      if (!route) throw new ApiError('invalid_input', `Unknown command \`${command}\``, null);
      return route(args || {});
    },
    // EventSource cannot send an Authorization header, so the SSE stream is read with fetch and
    // parsed by hand; it reconnects with a growing delay when the stream ends, except after a
    // 401 or 403: the secret (or the page's origin) is refused and retrying cannot help, so it
    // forgets the secret and stops with the status 'unauthorized'.
    subscribe(onEvent, onStatus) {
      let stopped = false;
      let controller = null;
      let delay = 500;
      const run = async () => {
        while (!stopped) {
          controller = new AbortController();
          try {
            const response = await fetch('/api/events', {
              headers: headers({ Accept: 'text/event-stream' }),
              signal: controller.signal,
              cache: 'no-store',
            });
            if (response.status === 401 || response.status === 403) {
              forgetToken();
              stopped = true;
              onStatus('unauthorized');
              return;
            }
            if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
            onStatus('live');
            delay = 500;
            await readSse(response.body, onEvent);
          } catch (err) {
            if (stopped) return;
          }
          if (stopped) return;
          onStatus('reconnecting');
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 10000);
        }
      };
      run();
      return () => { stopped = true; if (controller) controller.abort(); };
    },
  };
}

/** Reads a `text/event-stream` body and calls `onEvent` with each event's parsed JSON data. */
async function readSse(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).replace(/^ /, ''))
        .join('\n');
      if (!data) continue; // comments (keep-alives) and empty events
      try {
        onEvent(JSON.parse(data));
      } catch (err) {
        console.warn('Ignoring a malformed engine event', err);
      }
    }
  }
}

function createApi() {
  const tauri = window.__TAURI__;
  const transport = tauri && tauri.core && tauri.event ? ipcTransport(tauri) : httpTransport();
  const call = (command, args) => transport.call(command, args);
  return {
    transport: transport.name,
    /** False in a browser opened without `#token=...` (every call will get 401). */
    hasCredentials: transport.name === 'ipc' || transport.hasToken,
    health: () => call('health'),
    variants: (repo, revision) => call('variants', { repo, revision: revision || null }),
    /** The model's page: card HTML (sanitised by the engine), license, gating. */
    modelPage: (repo, revision) => call('model_page', { repo, revision: revision || null }),
    /** One page of a Hub search: `{q, filter, sort, limit}`, or `{cursor}` for the next page. */
    search: (params) => call('search', {
      q: params.q || null, filter: params.filter || null, sort: params.sort || null,
      limit: params.limit || null, cursor: params.cursor || null,
    }),
    pull: (request) => call('pull', request),
    /** Whether a pull fits on the disk and in the budget, and what making room would remove. */
    pullRoom: (request) => call('pull_room', request),
    jobs: () => call('jobs'),
    jobAction: (id, action) => call('job_action', { id, action }),
    pauseAll: () => call('pause_all'),
    resumeAll: () => call('resume_all'),
    /** Finished jobs leave the list (statistics keep them): `{affected}`. */
    clearFinished: () => call('clear_finished'),
    cacheList: () => call('cache_list'),
    pin: (repo, pinned) => call('cache_pin', { repo, pinned }),
    /** Queues the update of a followed branch: `{job_id}`. */
    update: (repo, branch) => call('cache_update', { repo, branch: branch || null }),
    /** Queues the conversion of a cached model to GGUF (`type`: `f16` or `q8_0`): `{job_id}`. */
    convert: (repo, type) => call('convert', { repo, precision: type }),
    /** Keeps a branch at its cached commit (`held`), or follows it again. */
    hold: (repo, branch, held) => call('cache_hold', { repo, branch: branch || null, held }),
    checkUpdates: (force) => call('check_updates', { force: Boolean(force) }),
    deleteCached: (repo, revision, variant) => call('cache_delete', { repo, revision: revision || null, variant: variant || null }),
    reveal: (repo) => call('cache_reveal', { repo }),
    /** `body` is an `ImportBody` (docs/local-api.md); answers an `ImportReport`. */
    importModels: (body) => call('import_models', { body }),
    settings: () => call('settings_get'),
    updateSettings: (partial) => call('settings_set', { settings: partial }),
    setToken: (token) => call('set_token', { token }),
    stats: () => call('stats'),
    /** LAN peers: `PeersView` (this machine, paired, seen). */
    peers: () => call('peers'),
    setSharing: (on) => call('peers_sharing', { on: Boolean(on) }),
    setPeerCompression: (on) => call('peers_compression', { on: Boolean(on) }),
    /** A new pairing code to show: `{code, expires_at}`. */
    showPairingCode: () => call('peers_pairing'),
    /** Pairs with the machine at `address` (or a seen peer's id) showing `code`: `PeerView`. */
    pair: (address, code) => call('peers_pair', { address, code }),
    unpair: (peer) => call('peers_unpair', { peer }),
    /** What a paired peer holds, asked now: `[{repo, ref_name, commit}]`. */
    holdings: (peer) => call('peers_holdings', { peer }),
    /** Desktop app only (null in a browser): start at login, the window's title, and what the
     * app is asked to open (its command line, a second launch, a `modelcache://` link). */
    app: transport.name === 'ipc' ? {
      /** `{waiting: {message, hint}}` while the app waits for its cache folder, else
       * `{waiting: null}`. */
      startupState: () => call('startup_state'),
      /** Calls `callback()` once the app has started (after waiting for its cache folder). */
      onReady: (callback) => window.__TAURI__.event.listen('app-ready', () => callback()),
      autostart: () => call('autostart_get'),
      setAutostart: (enabled) => call('autostart_set', { enabled }),
      /** Opens an http(s) link in the system browser. */
      openLink: (url) => call('open_link', { url }),
      /** The system's folder chooser: the folder picked, or null when cancelled. */
      pickFolder: (title, start) => call('pick_folder', { title, start: start || null }),
      setTitle: (title) => window.__TAURI__.window.getCurrentWindow().setTitle(title),
      /** `{repo, file, quant}`, `{error: {kind, message, hint}}` or null; each request once. */
      takeOpenRequest: () => call('open_request'),
      /** Calls `callback()` when a request is waiting (take it with `takeOpenRequest`). */
      onOpenRequest: (callback) => window.__TAURI__.event.listen('open-repo', () => callback()),
    } : null,
    /** Calls `onEvent(event)` for every engine event; `onStatus` gets 'live' | 'reconnecting' |
     * 'unauthorized' (the secret was refused; the stream has stopped for good). Returns a
     * function that stops listening. */
    subscribe: (onEvent, onStatus = () => {}) => transport.subscribe(onEvent, onStatus),
  };
}

export const api = createApi();
