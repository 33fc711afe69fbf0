// Test doubles of the browser client's unit tests: fake fetch, EventSource,
// timers, Web Locks and BroadcastChannel, and connect() wired to them.
import { connect } from '../../sse-ticket.js';

// ---------------------------------------------------------------- test doubles

/** Lets pending promise chains (fetch → json → EventSource) run to completion. */
export async function settle() {
  for (let i = 0; i < 10; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

export const uuid = (n) => `0193a000-0000-7000-8000-${String(n).padStart(12, '0')}`;

/** A fake EventSource class; every instance is recorded in `instances` (per class). */
export function fakeEventSourceClass() {
  return class FakeEventSource {
    static instances = [];
    constructor(url) {
      this.url = url;
      this.closed = false;
      this.listeners = new Map();
      FakeEventSource.instances.push(this);
    }
    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, []);
      this.listeners.get(type).push(fn);
    }
    close() { this.closed = true; }
    /** Dispatches a frame: `data` is serialized unless already a string. */
    emit(type, data, id = '') {
      const event = { type, data: typeof data === 'string' ? data : JSON.stringify(data), lastEventId: id };
      for (const fn of this.listeners.get(type) ?? []) fn(event);
    }
    ready(sub = 'alice', topics = ['orders/*']) { this.emit('ready', { sub, topics }); }
    /** A native `error` Event: no data. */
    fail() { for (const fn of this.listeners.get('error') ?? []) fn({ type: 'error' }); }
  };
}

/** Manual timers: nothing runs until the test says so. */
export function fakeTimers() {
  let next = 1;
  const pending = new Map();
  return {
    pending,
    setTimeout: (fn, ms) => { const id = next++; pending.set(id, { fn, ms }); return id; },
    clearTimeout: (id) => { pending.delete(id); },
    /** The delays of the scheduled timers. */
    delays: () => [...pending.values()].map((t) => t.ms),
    /** Runs every scheduled timer (once). */
    async runAll() {
      const due = [...pending.entries()];
      pending.clear();
      for (const [, t] of due) t.fn();
      await settle();
    },
  };
}

export const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });

export const ticketResponse = (n = 1, topics = ['orders/*']) => json(200, {
  ticket: `ticket-${n}`,
  expires_in: 60,
  expires_at: '2030-01-01T00:00:00Z',
  stream_url: `/stream?token=ticket-${n}`,
  topics,
});

/**
 * A fake fetch answering from `script` (functions or Responses, in order); when
 * the script runs out, it issues ticket after ticket. Records every call.
 */
export function fakeFetch(script = []) {
  const calls = [];
  let issued = 0;
  const fetch = async (url, init) => {
    calls.push({ url, init, body: init?.body ? JSON.parse(init.body) : undefined });
    const step = script.shift();
    if (typeof step === 'function') return step(url, init);
    if (step) return step;
    issued += 1;
    return ticketResponse(issued);
  };
  return { fetch, calls };
}

/** An in-process Web Locks manager: exclusive locks only, with abortable waiting. */
export function fakeLocks() {
  const held = new Set();
  const waiting = new Map(); // name -> [{grant, reject}]
  function tryGrant(name) {
    if (held.has(name)) return;
    const queue = waiting.get(name) ?? [];
    const first = queue.shift();
    if (first) first.grant();
  }
  return {
    held,
    request(name, options, callback) {
      return new Promise((resolve, reject) => {
        const entry = {
          grant: () => {
            held.add(name);
            options.signal?.removeEventListener('abort', onAbort);
            Promise.resolve()
              .then(() => callback({ name, mode: 'exclusive' }))
              .then(resolve, reject)
              .finally(() => { held.delete(name); tryGrant(name); });
          },
          reject,
        };
        const onAbort = () => {
          const queue = waiting.get(name) ?? [];
          const i = queue.indexOf(entry);
          if (i >= 0) queue.splice(i, 1);
          reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
        };
        if (options.signal?.aborted) return onAbort();
        options.signal?.addEventListener('abort', onAbort);
        if (!waiting.has(name)) waiting.set(name, []);
        waiting.get(name).push(entry);
        tryGrant(name);
      });
    },
  };
}

/** In-process BroadcastChannel: delivers a structured clone to every other open instance. */
export function fakeBroadcastChannelClass() {
  const open = new Set();
  return class FakeBroadcastChannel {
    static open = open;
    constructor(name) { this.name = name; this.onmessage = null; open.add(this); }
    postMessage(data) {
      if (!open.has(this)) throw new Error('InvalidStateError: channel closed');
      const copy = structuredClone(data);
      for (const other of open) {
        if (other !== this && other.name === this.name) {
          setImmediate(() => { if (open.has(other)) other.onmessage?.({ data: copy }); });
        }
      }
    }
    close() { open.delete(this); }
  };
}

/** The callbacks of connect(), each recording what it is given into `log`, in order. */
const recordingInto = (log) => ({
  onEvent: (e) => log.push(['event', e]),
  onOpen: (info) => log.push(['open', info]),
  onClose: (info) => log.push(['close', info]),
  onError: (err) => log.push(['error', err]),
  onStateChange: (s) => log.push(['state', s]),
});

/** A connect() wired to fresh fakes; `log` records every callback in order. */
export function setup(overrides = {}, script = []) {
  const ES = fakeEventSourceClass();
  const timers = fakeTimers();
  const net = fakeFetch(script);
  const log = [];
  let tokenCalls = 0;
  const handle = connect({
    baseUrl: 'https://events.example.com',
    getToken: async () => { tokenCalls += 1; return `jwt-${tokenCalls}`; },
    topics: ['orders/*'],
    eventTypes: ['order.updated'],
    ...recordingInto(log),
    fetch: net.fetch,
    EventSource: ES,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    random: () => 0.5,
    ...overrides,
  });
  return { handle, ES, timers, net, log, tokenCalls: () => tokenCalls };
}

export const of = (log, kind) => log.filter(([k]) => k === kind).map(([, v]) => v);

/** Tabs of one browser: shared locks and channels, one fake network per browser. */
export function browser(script = []) {
  const locks = fakeLocks();
  const BC = fakeBroadcastChannelClass();
  const ES = fakeEventSourceClass();
  const timers = fakeTimers();
  const net = fakeFetch(script);
  const tab = (extra = {}) => {
    const log = [];
    const handle = connect({
      getToken: () => 'jwt',
      topics: ['orders/*'],
      eventTypes: ['order.updated'],
      shareAcrossTabs: true,
      shareKey: 'alice',
      ...recordingInto(log),
      fetch: net.fetch,
      EventSource: ES,
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout,
      random: () => 0.5,
      locks,
      BroadcastChannel: BC,
      ...extra,
    });
    return { handle, log, ids: () => of(log, 'event').map((e) => e.id) };
  };
  return { locks, BC, ES, timers, net, tab };
}
