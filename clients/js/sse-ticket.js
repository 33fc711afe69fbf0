// sse-ticket browser client: a dependency-free ES module, no build step.
//
//   import { connect } from './sse-ticket.js';
//   const events = connect({
//     getToken: () => auth.accessToken,          // string or Promise<string>, asked before every ticket
//     topics: ['orders/*'],                      // [] = the subject's own topic user/<sub>
//     eventTypes: ['order.updated'],             // custom `event:` types, besides `message`
//     onEvent: ({ type, data, id }) => { ... },  // type 'reset': events may be missing, reload state
//     onError: (err) => { if (err.fatal) showLogin(); },
//   });
//   events.close();
//
// Apps whose session is a cookie (sse-ticket's auth webhook with cookie
// forwarding) pass `credentials: 'include'` instead of `getToken`: the ticket
// request then carries the page's cookies (also to sse-ticket on another
// origin that the server's CORS allows) and no Authorization header.
//
// Every connection uses a fresh single-use ticket from `POST /sse-token`. The
// browser's own EventSource reconnect would replay a consumed ticket (always
// 401), so on any error or `close` frame the EventSource is closed at once and
// the helper reconnects itself with a new ticket, passing `lastEventId` so the
// server replays what was missed.
//
// Reconnect delay ("equal jitter"): min(maxDelay, retryBase * 2^failures) * (0.5 + random() / 2),
// i.e. between half and all of the exponential step. `failures` counts the
// attempts since the last `ready` frame, so the first reconnect after a stream
// that was open (a `close` frame such as token_expired or shutdown, or a dropped
// connection) waits retryBase/2..retryBase (default 1.5–3 s, the server's
// `retry: 3000`), and failed attempts then double it up to maxDelay.
// A 429 waits `Retry-After` instead. 401/403 (and any other 4xx but 408/429)
// stop for good: retrying with the same credentials cannot help.

/** Default backoff base in ms: the server's `retry:` value (not exposed by EventSource). */
export const DEFAULT_RETRY_BASE = 3000;
/** Default backoff cap in ms. */
export const DEFAULT_MAX_DELAY = 30000;

/** Frame types the server reserves (or the EventSource itself dispatches). */
const RESERVED_TYPES = new Set(['ready', 'reset', 'close', 'error', 'open']);
/** Event ids are UUIDs; anything else would get `400 invalid_query` on resume. */
const EVENT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Reconnect delay in ms after `failures` consecutive failed attempts (0 after a
 * stream that reached `ready`): equal jitter over an exponential step, capped.
 */
export function nextDelay(failures, { base = DEFAULT_RETRY_BASE, maxDelay = DEFAULT_MAX_DELAY, random = Math.random } = {}) {
  const step = Math.min(maxDelay, base * 2 ** Math.max(0, failures));
  return Math.round(step * (0.5 + random() / 2));
}

/**
 * `Retry-After` (delta-seconds or an HTTP date) in ms, or `undefined` when the
 * header is absent or unparsable.
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return undefined;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * What a non-2xx answer of `POST /sse-token` means: `'stop'` when retrying with
 * the same credentials and topics cannot help (401, 403, other 4xx but 408 and
 * 429), `'retry-after'` for 429, `'backoff'` otherwise (5xx, 408).
 */
export function classifyTicketStatus(status) {
  if (status === 429) return 'retry-after';
  if (status === 408 || status < 400 || status >= 500) return 'backoff';
  return 'stop';
}

/** The `type`s the helper listens for: `message` plus the caller's, minus reserved ones. */
export function listenedTypes(eventTypes = []) {
  const types = new Set(['message']);
  for (const t of eventTypes) if (typeof t === 'string' && t && !RESERVED_TYPES.has(t)) types.add(t);
  return [...types];
}

/** The stream URL for a ticket response's `stream_url`, resuming after `lastEventId`. */
export function streamUrl(baseUrl, streamPath, lastEventId) {
  const resume = lastEventId ? `${streamPath.includes('?') ? '&' : '?'}lastEventId=${encodeURIComponent(lastEventId)}` : '';
  return `${baseUrl}${streamPath}${resume}`;
}

/**
 * The Web Locks / BroadcastChannel name shared by the tabs of one stream: base
 * URL, sorted topics, sorted event types and the share key (separates users of
 * one browser; the `sub` is unknown before connecting).
 */
export function shareName({ baseUrl = '', topics = [], eventTypes = [], shareKey = '' } = {}) {
  const sortedTopics = [...new Set(topics)].sort();
  const types = listenedTypes(eventTypes).sort();
  return `sse-ticket:${JSON.stringify([normalizeBase(baseUrl), sortedTopics, types, shareKey ?? ''])}`;
}

/**
 * Remembers the last `capacity` event ids. `check(id)` answers true the first
 * time an id is seen (and remembers it), false for a repeat; an empty id (a
 * frame without `id:`, such as `reset`) is always new.
 */
export function createDeduper(capacity = 1024) {
  const ids = new Set();
  const order = [];
  return {
    check(id) {
      if (!id) return true;
      if (ids.has(id)) return false;
      ids.add(id);
      order.push(id);
      while (order.length > capacity) ids.delete(order.shift());
      return true;
    },
    has: (id) => ids.has(id),
    get size() { return ids.size; },
  };
}

function normalizeBase(baseUrl) {
  return String(baseUrl ?? '').replace(/\/+$/, '');
}

function parseData(raw) {
  try { return JSON.parse(raw); } catch { return raw; }
}

function safeCall(fn, arg) {
  if (typeof fn !== 'function') return;
  try { fn(arg); } catch (err) {
    if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
    else console.error(err);
  }
}

async function readJson(response) {
  try { return await response.json(); } catch { return null; }
}

function headerOf(response, name) {
  try { return response.headers?.get?.(name) ?? null; } catch { return null; }
}

/**
 * The per-connection loop: ticket → EventSource → dispatch → reconnect. Calls
 * `sink.{state,open,event,close,error}`; knows nothing about tabs.
 */
function createLoop(cfg, sink) {
  // Locals, called as plain functions: `window.fetch` and `window.setTimeout`
  // throw "Illegal invocation" when called as methods of another object.
  const { getToken, credentials, fetchImpl, ES, AC, setTimer, clearTimer, random } = cfg;
  const { baseUrl, topics, types, base, maxDelay } = cfg;
  let state = cfg.initialState ?? 'connecting';
  let lastEventId = cfg.lastEventId ?? '';
  let failures = 0;
  let source = null;
  let timer = null;
  let abort = null;
  let done = false;

  function setState(next) {
    if (state === next) return;
    state = next;
    sink.state(next);
  }

  function dropSource() {
    const s = source;
    source = null;
    if (s) s.close(); // never let the browser retry a consumed ticket
  }

  function reconnect(delay) {
    dropSource();
    if (done) return;
    const wait = delay ?? nextDelay(failures, { base, maxDelay, random });
    failures += 1;
    setState('reconnecting');
    if (timer != null) clearTimer(timer);
    timer = setTimer(attempt, wait);
  }

  function stop(finalState) {
    done = true;
    if (timer != null) clearTimer(timer);
    timer = null;
    abort?.abort();
    abort = null;
    dropSource();
    setState(finalState);
  }

  async function attempt() {
    timer = null;
    if (done) return;
    const controller = AC ? new AC() : null;
    abort = controller;

    let token = null;
    try {
      if (getToken) token = await getToken();
    } catch (err) {
      if (done) return;
      sink.error({ status: 0, error: 'token_unavailable', message: String(err?.message ?? err), fatal: false });
      return reconnect();
    }
    if (done) return;

    let response;
    try {
      response = await fetchImpl(`${baseUrl}/sse-token`, {
        method: 'POST',
        headers: ticketHeaders(getToken, token),
        body: JSON.stringify({ topics }),
        cache: 'no-store',
        ...(credentials ? { credentials } : {}),
        ...(controller ? { signal: controller.signal } : {}),
      });
    } catch (err) {
      if (done) return;
      sink.error({ status: 0, error: 'network_error', message: String(err?.message ?? err), fatal: false });
      return reconnect();
    }
    if (done) return;

    if (!response.ok) {
      const body = await readJson(response);
      if (done) return;
      const err = {
        status: response.status,
        error: typeof body?.error === 'string' ? body.error : `http_${response.status}`,
        message: typeof body?.message === 'string' ? body.message : `POST /sse-token answered ${response.status}`,
      };
      const outcome = classifyTicketStatus(response.status);
      if (outcome === 'stop') {
        stop('stopped');
        sink.error({ ...err, fatal: true });
        return;
      }
      sink.error({ ...err, fatal: false });
      return reconnect(outcome === 'retry-after' ? parseRetryAfter(headerOf(response, 'Retry-After')) : undefined);
    }

    const ticket = await readJson(response);
    if (done) return;
    if (typeof ticket?.stream_url !== 'string') {
      sink.error({ status: response.status, error: 'invalid_response', message: 'POST /sse-token answered without stream_url', fatal: false });
      return reconnect();
    }
    abort = null;
    try {
      open(streamUrl(baseUrl, ticket.stream_url, lastEventId));
    } catch (err) {
      dropSource();
      sink.error({ status: 0, error: 'stream_error', message: String(err?.message ?? err), fatal: false });
      reconnect();
    }
  }

  function open(url) {
    const es = new ES(url);
    source = es;
    const live = () => source === es && !done;

    es.addEventListener('ready', (e) => {
      if (!live()) return;
      failures = 0;
      setState('open');
      sink.open(parseData(e.data));
    });

    const onData = (e) => {
      // A native `open`/`error` Event has no data; published frames always do.
      if (!live() || typeof e.data !== 'string') return;
      const id = typeof e.lastEventId === 'string' ? e.lastEventId : '';
      if (EVENT_ID.test(id)) lastEventId = id;
      sink.event({ type: e.type, data: parseData(e.data), id, raw: e.data });
    };
    for (const type of types) es.addEventListener(type, onData);

    es.addEventListener('reset', (e) => {
      if (!live()) return;
      sink.event({ type: 'reset', data: parseData(e.data), id: '', raw: typeof e.data === 'string' ? e.data : '' });
    });

    es.addEventListener('close', (e) => {
      if (!live()) return;
      dropSource();
      const data = parseData(e.data);
      sink.close({ reason: typeof data?.reason === 'string' ? data.reason : 'unknown' });
      reconnect();
    });

    es.addEventListener('error', (e) => {
      if (!live()) return;
      if (typeof e?.data === 'string') return; // a published frame named "error", not a failure
      dropSource();
      sink.error({ status: 0, error: 'stream_error', message: 'the event stream failed or was refused', fatal: false });
      reconnect();
    });
  }

  return {
    start: () => { attempt(); },
    stop,
    get state() { return state; },
    get lastEventId() { return lastEventId; },
  };
}

/**
 * Headers of `POST /sse-token`: always JSON (the server lets a cookie alone
 * authenticate only a JSON-typed request, which a cross-site form cannot
 * send); `Authorization` when there is a `getToken`, unless (cookie mode) it
 * gave no token.
 */
function ticketHeaders(getToken, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (getToken && token != null && token !== '') headers.Authorization = `Bearer ${token}`;
  return headers;
}

/** `fetch` credentials modes accepted by the `credentials` option. */
const CREDENTIALS = new Set(['omit', 'same-origin', 'include']);

function resolveConfig(options) {
  const {
    baseUrl = '',
    getToken,
    credentials,
    topics = [],
    eventTypes = [],
    lastEventId = '',
    retryBase = DEFAULT_RETRY_BASE,
    maxDelay = DEFAULT_MAX_DELAY,
    random = Math.random,
  } = options;
  if (credentials !== undefined && !CREDENTIALS.has(credentials)) {
    throw new TypeError("sse-ticket: options.credentials must be 'omit', 'same-origin' or 'include'");
  }
  // A cookie session ('include') needs no token; otherwise getToken is the credential.
  const tokenOptional = credentials === 'include';
  if (typeof getToken !== 'function' && !(tokenOptional && getToken == null)) {
    throw new TypeError(tokenOptional
      ? 'sse-ticket: options.getToken must be a function when given'
      : "sse-ticket: options.getToken must be a function (or pass credentials: 'include' for a cookie session)");
  }
  const fetchImpl = options.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined);
  const ES = options.EventSource ?? globalThis.EventSource;
  if (typeof fetchImpl !== 'function') throw new TypeError('sse-ticket: no fetch available');
  if (typeof ES !== 'function') throw new TypeError('sse-ticket: no EventSource available');
  return {
    baseUrl: normalizeBase(baseUrl),
    getToken: getToken ?? null,
    credentials,
    topics: [...topics],
    types: listenedTypes(eventTypes),
    eventTypes: [...eventTypes],
    lastEventId,
    base: retryBase,
    maxDelay,
    random,
    fetchImpl,
    ES,
    AC: options.AbortController ?? globalThis.AbortController,
    setTimer: options.setTimeout ?? globalThis.setTimeout.bind(globalThis),
    clearTimer: options.clearTimeout ?? globalThis.clearTimeout.bind(globalThis),
  };
}

/**
 * Opens a ticketed event stream; returns a handle `{ close(), lastEventId, state, isLeader }`.
 * See sse-ticket.d.ts for the options.
 */
export function connect(options = {}) {
  const cfg = resolveConfig(options);
  if (options.shareAcrossTabs) {
    const locks = options.locks ?? globalThis.navigator?.locks;
    const BC = options.BroadcastChannel ?? globalThis.BroadcastChannel;
    if (locks && typeof locks.request === 'function' && typeof BC === 'function') {
      return connectShared(options, cfg, locks, BC);
    }
  }
  return connectSingle(options, cfg);
}

function localSink(options, seen) {
  const { onEvent, onOpen, onClose, onError, onStateChange } = options;
  return {
    state: (s) => safeCall(onStateChange, s),
    open: (info) => safeCall(onOpen, info),
    event: (ev) => { if (seen.check(ev.id)) safeCall(onEvent, ev); },
    close: (info) => safeCall(onClose, info),
    error: (err) => safeCall(onError, err),
  };
}

function connectSingle(options, cfg) {
  const seen = createDeduper();
  const loop = createLoop(cfg, localSink(options, seen));
  loop.start();
  return {
    close() { loop.stop('closed'); },
    get lastEventId() { return loop.lastEventId; },
    get state() { return loop.state; },
    get isLeader() { return true; },
  };
}

// One stream per browser: the tab holding the Web Lock runs the loop and relays
// everything over a BroadcastChannel of the same name; the others replay the
// relayed messages into their own callbacks. Messages:
//   {kind:'hello'}                                 a tab joined; the leader answers with a snapshot
//   {kind:'snapshot', state, lastEventId, open, error}
//   {kind:'state', state} {kind:'open', info} {kind:'event', event} {kind:'close', info} {kind:'error', error}
function connectShared(options, cfg, locks, BC) {
  const name = shareName({ baseUrl: cfg.baseUrl, topics: cfg.topics, eventTypes: cfg.eventTypes, shareKey: options.shareKey });
  const seen = createDeduper();
  const channel = new BC(name);
  const lockAbort = cfg.AC ? new cfg.AC() : null;
  let role = 'follower';
  let state = 'connecting';
  let lastEventId = cfg.lastEventId;
  let openInfo = null;
  let fatalError = null;
  let loop = null;
  let releaseLock = null;
  let finished = false; // closed, or stopped for good

  const setState = (s) => {
    if (state === s) return;
    state = s;
    safeCall(options.onStateChange, s);
  };
  const post = (msg) => { try { channel.postMessage(msg); } catch { /* channel closed */ } };
  const deliver = (ev) => {
    if (EVENT_ID.test(ev.id)) lastEventId = ev.id;
    if (seen.check(ev.id)) safeCall(options.onEvent, ev);
  };
  const stopFollowing = (err) => {
    if (finished) return;
    finished = true;
    fatalError = err;
    lockAbort?.abort();
    setState('stopped');
    safeCall(options.onError, err);
    channel.close();
  };

  channel.onmessage = ({ data: msg }) => {
    if (finished && role !== 'leader') return;
    if (!msg || typeof msg !== 'object') return;
    if (role === 'leader') {
      if (msg.kind === 'hello') post({ kind: 'snapshot', state, lastEventId, open: openInfo, error: fatalError });
      return;
    }
    switch (msg.kind) {
      case 'event': deliver(msg.event); break;
      case 'open': openInfo = msg.info; setState('open'); safeCall(options.onOpen, msg.info); break;
      case 'close': safeCall(options.onClose, msg.info); break;
      case 'error': if (msg.error?.fatal) stopFollowing(msg.error); else safeCall(options.onError, msg.error); break;
      case 'state': if (msg.state !== 'stopped') setState(msg.state); break;
      case 'snapshot':
        if (!lastEventId && msg.lastEventId) lastEventId = msg.lastEventId;
        if (msg.state === 'stopped' && msg.error) stopFollowing(msg.error);
        else if (msg.state === 'open' && state !== 'open') {
          openInfo = msg.open;
          setState('open');
          safeCall(options.onOpen, msg.open);
        } else if (msg.state !== 'stopped') setState(msg.state);
        break;
      default: break;
    }
  };

  const leaderSink = {
    state: (s) => {
      setState(s);
      if (s !== 'closed') post({ kind: 'state', state: s }); // 'closed' is this tab's business only
    },
    open: (info) => { openInfo = info; post({ kind: 'open', info }); safeCall(options.onOpen, info); },
    event: (ev) => { post({ kind: 'event', event: ev }); deliver(ev); },
    close: (info) => { post({ kind: 'close', info }); safeCall(options.onClose, info); },
    error: (err) => {
      if (err.fatal) { fatalError = err; finished = true; }
      post({ kind: 'error', error: err });
      safeCall(options.onError, err);
    },
  };

  const lead = () => {
    role = 'leader';
    const initialState = state === 'connecting' ? 'connecting' : 'reconnecting';
    loop = createLoop({ ...cfg, lastEventId, initialState }, leaderSink);
    setState(initialState);
    post({ kind: 'state', state: initialState });
    loop.start();
  };

  const lockOptions = { mode: 'exclusive', ...(lockAbort ? { signal: lockAbort.signal } : {}) };
  let request;
  try {
    request = locks.request(name, lockOptions, () => {
      if (finished) return undefined;
      lead();
      // Held until close() (or until the tab goes away, which frees it too).
      return new Promise((resolve) => { releaseLock = resolve; });
    });
  } catch (err) {
    request = Promise.reject(err);
  }
  Promise.resolve(request).catch((err) => {
    if (finished || err?.name === 'AbortError') return;
    // Locks unusable (e.g. an opaque origin): run a stream of our own.
    if (role !== 'leader') lead();
  });
  post({ kind: 'hello' });

  return {
    close() {
      if (role === 'leader' && loop && loop.state !== 'stopped') post({ kind: 'state', state: 'reconnecting' });
      finished = true;
      lockAbort?.abort();
      loop?.stop('closed');
      releaseLock?.();
      releaseLock = null;
      setState('closed');
      try { channel.close(); } catch { /* already closed */ }
    },
    get lastEventId() { return lastEventId; },
    get state() { return state; },
    get isLeader() { return role === 'leader'; },
  };
}
