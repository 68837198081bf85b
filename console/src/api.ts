// The one place that talks to the admin API.
//
// Security: the session lives in an HttpOnly cookie set by the server. The CSRF value
// from the session response is kept only in this module's variable (never in storage,
// a cookie, the URL or a global) and sent as X-CSRF-Token on every mutation.

export interface ApiErrorBody {
  message?: string;
  type?: string;
  param?: string | null;
  code?: string;
}

export class ApiError extends Error {
  status: number;
  type: string;
  code: string;
  param: string | null;
  constructor(status: number, message: string, body: ApiErrorBody = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = body.type ?? '';
    this.code = body.code ?? '';
    this.param = body.param ?? null;
  }
}

export type Role = 'admin' | 'viewer' | 'tenant';

export interface Session {
  role: Role;
  actor: string;
  tenant: { id: string; name: string } | null;
  expires_at: number;
}

let csrf: string | null = null;
let onUnauthorized: (() => void) | null = null;

/** Called when any request answers 401 session_required (the app goes to sign-in). */
export function setUnauthorizedHandler(fn: () => void) {
  onUnauthorized = fn;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function shorten(s: string, n = 300): string {
  return s.length > n ? s.slice(0, n) + '…' : s;
}

export async function request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (MUTATING.has(method) && csrf) headers['X-CSRF-Token'] = csrf;
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'Network error: the gateway did not answer.', { code: 'network' });
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const err = (json as { error?: ApiErrorBody } | undefined)?.error;
    if (err && typeof err.message === 'string') {
      const e = new ApiError(res.status, shorten(err.message), err);
      if (res.status === 401 && e.code === 'session_required' && path !== '/api/v1/session') {
        csrf = null;
        onUnauthorized?.();
      }
      throw e;
    }
    // Never show raw HTML or a stack trace: a short message only.
    const msg =
      res.status >= 500
        ? `The server failed (HTTP ${res.status}). Try again.`
        : `The request failed (HTTP ${res.status}).`;
    throw new ApiError(res.status, msg, { code: `http_${res.status}` });
  }
  if (json === undefined && text) {
    throw new ApiError(res.status, 'The server sent an unreadable answer.', { code: 'bad_response' });
  }
  return json as T;
}

export const get = <T = unknown>(path: string) => request<T>('GET', path);
export const post = <T = unknown>(path: string, body?: unknown) => request<T>('POST', path, body ?? {});
export const put = <T = unknown>(path: string, body?: unknown) => request<T>('PUT', path, body ?? {});
export const patch = <T = unknown>(path: string, body?: unknown) => request<T>('PATCH', path, body ?? {});
export const del = <T = unknown>(path: string) => request<T>('DELETE', path);

interface SessionBody extends Session {
  csrf: string;
}

function keep(s: SessionBody): Session {
  csrf = s.csrf;
  return { role: s.role, actor: s.actor, tenant: s.tenant, expires_at: s.expires_at };
}

/** The current session, or null when signed out. */
export async function loadSession(): Promise<Session | null> {
  try {
    return keep(await get<SessionBody>('/api/v1/session'));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      csrf = null;
      return null;
    }
    throw e;
  }
}

export async function signIn(token: string, name: string): Promise<Session> {
  const body: { token: string; name?: string } = { token };
  if (name.trim()) body.name = name.trim();
  return keep(await request<SessionBody>('POST', '/api/v1/session', body));
}

export async function signOut(): Promise<void> {
  try {
    await request('DELETE', '/api/v1/session');
  } finally {
    csrf = null;
  }
}

/** Builds a query string from the set values only. */
export function qs(params: Record<string, string | number | boolean | null | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;

export interface Page<T> {
  data: T[];
  next_cursor?: string | null;
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  return 'Something went wrong.';
}

/** /readyz answers 503 with the same body when not ready: read it either way. */
export async function getReadyz<T>(): Promise<T> {
  let res: Response;
  try {
    res = await fetch('/readyz', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
  } catch {
    throw new ApiError(0, 'Network error: the gateway did not answer.', { code: 'network' });
  }
  try {
    return (await res.json()) as T;
  } catch {
    throw new ApiError(res.status, `Readiness check failed (HTTP ${res.status}).`);
  }
}
