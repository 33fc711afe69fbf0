// Types of sse-ticket.js, the sse-ticket browser client.

/** Connection state of a handle. */
export type ConnectionState =
  /** First attempt, before the first `ready` frame. */
  | 'connecting'
  /** The stream is live (`ready` received). */
  | 'open'
  /** The stream ended or an attempt failed; waiting for, or making, the next attempt. */
  | 'reconnecting'
  /** `POST /sse-token` refused the token or topics (401, 403, other 4xx but 408/429): no more requests. */
  | 'stopped'
  /** `close()` was called. */
  | 'closed';

/** Why the server ended a stream (the `close` frame's data). */
export type CloseReason = 'token_expired' | 'revoked' | 'lagging' | 'shutdown' | (string & {});

/** An event delivered to `onEvent`. */
export interface SseTicketEvent<T = unknown> {
  /**
   * The frame's `event:` type: `message`, one of `eventTypes`, or `reset`
   * (the history no longer covers the resume point: events may be missing,
   * reload the state derived from them).
   */
  type: string;
  /** The frame's data, parsed as JSON (the raw text if it is not JSON). */
  data: T;
  /** The frame's `id:` (a UUID v7); `''` for `reset`. */
  id: string;
  /** The frame's data as received. */
  raw: string;
}

/** The `ready` frame's data, given to `onOpen`. */
export interface ReadyInfo {
  sub: string;
  topics: string[];
}

/** Given to `onClose` when the server ends the stream with a `close` frame. */
export interface CloseInfo {
  reason: CloseReason;
}

/** Given to `onError`. */
export interface SseTicketError {
  /** HTTP status of `POST /sse-token`; 0 for network, token and stream failures. */
  status: number;
  /**
   * The server's error code (`token_expired`, `forbidden_topic`,
   * `too_many_tickets`, `unavailable`, …), or the client's own:
   * `network_error` (fetch failed), `token_unavailable` (getToken threw),
   * `stream_error` (the EventSource failed or was refused),
   * `invalid_response`, `http_<status>` (a non-JSON error body).
   */
  error: string;
  /** One human sentence. */
  message: string;
  /** True when the helper has stopped for good (state `'stopped'`); false when it will retry. */
  fatal: boolean;
}

interface CommonOptions {
  /** Base URL of sse-ticket, e.g. `'https://events.example.com'`; `''` (default) for the page's origin. */
  baseUrl?: string;
  /** Topics or patterns to subscribe to; `[]` (default) means the subject's own topic `user/<sub>`. */
  topics?: string[];
  /** Custom event types to receive besides `message` (`ready`, `reset`, `close`, `error`, `open` are ignored here). */
  eventTypes?: string[];
  /** Resume the first stream after this event id (e.g. saved before a page reload). */
  lastEventId?: string;
  onEvent?: (event: SseTicketEvent) => void;
  /** Every time a stream becomes live (after each reconnect too). */
  onOpen?: (info: ReadyInfo) => void;
  /** The server ended the stream; the helper reconnects on its own. */
  onClose?: (info: CloseInfo) => void;
  /** Every failure; `fatal: true` once it stops (401/403 from `/sse-token`). */
  onError?: (error: SseTicketError) => void;
  /** Every state change (not called for the initial `'connecting'`). */
  onStateChange?: (state: ConnectionState) => void;
  /**
   * One stream per browser instead of one per tab: the tabs elect a leader
   * with the Web Locks API and relay over a BroadcastChannel. Falls back to a
   * stream per tab when either API is missing.
   */
  shareAcrossTabs?: boolean;
  /**
   * Separates the users of one browser in the lock/channel name (together
   * with the base URL, the topics and the event types). Pass the user id when
   * several users may be signed in to one browser profile at once.
   */
  shareKey?: string;
  /** Backoff base in ms (default 3000, the server's `retry:`). */
  retryBase?: number;
  /** Backoff cap in ms (default 30000). */
  maxDelay?: number;
  /** Injectables, for tests and other runtimes. */
  fetch?: typeof globalThis.fetch;
  EventSource?: EventSourceConstructor;
  random?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
  AbortController?: typeof globalThis.AbortController;
  locks?: LockManagerLike | null;
  BroadcastChannel?: BroadcastChannelConstructor | null;
}

/** A bearer-token app: `getToken` is the credential. */
export interface BearerOptions extends CommonOptions {
  /** The app's current bearer token; called before every ticket request. Throwing (or rejecting) means "retry later". */
  getToken: () => string | Promise<string>;
  /** The `fetch` credentials mode of the ticket request (default: the browser's, `'same-origin'`). */
  credentials?: 'omit' | 'same-origin' | 'include';
}

/**
 * A cookie-session app (sse-ticket's auth webhook with
 * `SSE_TICKET_AUTH_WEBHOOK_FORWARD_COOKIES=true`): the ticket request carries
 * the page's cookies, also to another origin that the server's CORS allows.
 */
export interface CookieSessionOptions extends CommonOptions {
  /** Send the page's cookies with the ticket request. */
  credentials: 'include';
  /**
   * Optional here: when given, its token also goes as `Authorization: Bearer`
   * (a `null`/`''` token: none); when absent, the cookies alone authenticate.
   */
  getToken?: () => string | null | Promise<string | null>;
}

export type ConnectOptions = BearerOptions | CookieSessionOptions;

/** What `connect` returns. */
export interface Handle {
  /** Stops timers, closes the stream (and releases the tab lock); no more requests. */
  close(): void;
  /** Id of the last event received (`''` before any). */
  readonly lastEventId: string;
  readonly state: ConnectionState;
  /** Whether this tab runs the stream (always true without `shareAcrossTabs`). */
  readonly isLeader: boolean;
}

export interface EventSourceLike {
  addEventListener(type: string, listener: (event: { type: string; data?: unknown; lastEventId?: string }) => void): void;
  close(): void;
}
export type EventSourceConstructor = new (url: string) => EventSourceLike;

export interface LockManagerLike {
  request(name: string, options: { mode: 'exclusive'; signal?: AbortSignal }, callback: (lock: unknown) => unknown): Promise<unknown>;
}
export interface BroadcastChannelLike {
  postMessage(message: unknown): void;
  close(): void;
  onmessage: ((event: { data: any }) => void) | null;
}
export type BroadcastChannelConstructor = new (name: string) => BroadcastChannelLike;

/** Opens a ticketed event stream that reconnects with a fresh ticket and resumes. */
export function connect(options: ConnectOptions): Handle;

export const DEFAULT_RETRY_BASE: number;
export const DEFAULT_MAX_DELAY: number;

/**
 * Reconnect delay in ms: `min(maxDelay, base * 2^failures) * (0.5 + random() / 2)`
 * ("equal jitter"). `failures` counts attempts since the last `ready`.
 */
export function nextDelay(failures: number, options?: { base?: number; maxDelay?: number; random?: () => number }): number;

/** `Retry-After` (seconds or HTTP date) in ms; `undefined` if absent or unparsable. */
export function parseRetryAfter(value: string | null | undefined, now?: number): number | undefined;

/** What a non-2xx status of `POST /sse-token` means for the loop. */
export function classifyTicketStatus(status: number): 'stop' | 'retry-after' | 'backoff';

/** `message` plus the given types, without reserved ones, de-duplicated. */
export function listenedTypes(eventTypes?: string[]): string[];

/** `baseUrl + streamPath`, plus `&lastEventId=…` when there is one. */
export function streamUrl(baseUrl: string, streamPath: string, lastEventId?: string): string;

/** The Web Locks / BroadcastChannel name of a shared stream. */
export function shareName(options?: { baseUrl?: string; topics?: string[]; eventTypes?: string[]; shareKey?: string }): string;

/** Remembers the last `capacity` (default 1024) ids; `check(id)` is true the first time, false for a repeat, always true for `''`. */
export function createDeduper(capacity?: number): {
  check(id: string): boolean;
  has(id: string): boolean;
  readonly size: number;
};
