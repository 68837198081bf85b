// Pure formatting and diffing helpers (unit-tested in tests/unit.test.mjs).

export function fmtInt(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return Math.round(n).toLocaleString('en-US');
}

/** 1234 -> "1.23k", 1234567 -> "1.23M". */
export function fmtCompact(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(2) + 'G';
  if (a >= 1e6) return (n / 1e6).toFixed(2) + 'M';
  if (a >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  if (a >= 1e3) return (n / 1e3).toFixed(2) + 'k';
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(a < 10 ? 2 : 1);
}

export function fmtNum(n: number | null | undefined, digits = 2): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** Spend in the registry's currency unit. */
export function fmtMoney(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  if (n !== 0 && Math.abs(n) < 0.01) return n.toPrecision(2);
  return n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export function fmtPct(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  return (x * 100).toFixed(digits) + '%';
}

export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms === 0) return '0 ms';
  if (ms < 1) return ms.toFixed(2) + ' ms';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60_000) return (ms / 1000).toFixed(ms < 10_000 ? 2 : 1) + ' s';
  return fmtDuration(ms / 1000);
}

/** Seconds -> "1h 5m", "3d 2h", "45s". */
export function fmtDuration(secs: number): string {
  if (!Number.isFinite(secs)) return '—';
  const s = Math.max(0, Math.round(secs));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (d) return h ? `${d}d ${h}h` : `${d}d`;
  if (h) return m ? `${h}h ${m}m` : `${h}h`;
  if (m) return r ? `${m}m ${r}s` : `${m}m`;
  return `${r}s`;
}

function pad(n: number): string {
  return n < 10 ? '0' + n : String(n);
}

/** Unix ms -> "2026-01-31 14:05:09" in local time. */
export function fmtTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Unix ms -> "3m ago" / "in 2h". */
export function fmtAgo(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const diff = (now - ms) / 1000;
  if (Math.abs(diff) < 5) return 'just now';
  return diff > 0 ? `${fmtDuration(diff)} ago` : `in ${fmtDuration(-diff)}`;
}

/** Flattens nested objects into dotted paths; arrays and scalars are leaves. */
export function flatten(obj: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (obj !== null && typeof obj === 'object' && !Array.isArray(obj)) {
    const entries = Object.entries(obj as Record<string, unknown>);
    if (entries.length === 0 && prefix) out[prefix] = {};
    for (const [k, v] of entries) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = obj;
  }
  return out;
}

export interface DiffRow {
  field: string;
  before: unknown;
  after: unknown;
  changed: boolean;
}

/** A field-by-field before/after comparison of two audit snapshots (either may be null). */
export function diff(before: unknown, after: unknown): DiffRow[] {
  const a = before == null ? {} : flatten(before);
  const b = after == null ? {} : flatten(after);
  const keys = Array.from(new Set([...Object.keys(a), ...Object.keys(b)])).sort();
  return keys.map((field) => {
    const x = field in a ? a[field] : undefined;
    const y = field in b ? b[field] : undefined;
    return { field, before: x, after: y, changed: JSON.stringify(x) !== JSON.stringify(y) };
  });
}

/** A value as a short string for a table cell. */
export function show(v: unknown): string {
  if (v === undefined) return '';
  if (v === null) return 'null';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

export type Bucket = 'minute' | 'hour' | 'day';
const BUCKET_SECS: Record<Bucket, number> = { minute: 60, hour: 3600, day: 86400 };

/** The finest bucket that keeps a range at or under `maxPoints` points. */
export function pickBucket(rangeMs: number, maxPoints = 500): Bucket {
  for (const b of ['minute', 'hour', 'day'] as Bucket[]) {
    if (rangeMs / 1000 / BUCKET_SECS[b] <= maxPoints) return b;
  }
  return 'day';
}

export function bucketSecs(b: Bucket): number {
  return BUCKET_SECS[b];
}

/** Client-side check mirroring the server's tenant/group name rule (the server decides). */
export function nameProblem(name: string): string | null {
  if (!name) return 'Required.';
  if (name.length > 64) return 'Must be 1 to 64 characters.';
  return null;
}

/** Parses an optional integer field: '' -> null; returns an error string when invalid. */
export function parseOptInt(s: string, min = 0): number | null | string {
  const t = s.trim();
  if (t === '') return null;
  if (!/^-?\d+$/.test(t)) return 'Must be a whole number.';
  const n = Number(t);
  if (n < min) return `Must be ≥ ${min}.`;
  return n;
}

export function parseOptFloat(s: string, min = 0): number | null | string {
  const t = s.trim();
  if (t === '') return null;
  const n = Number(t);
  if (!Number.isFinite(n)) return 'Must be a number.';
  if (n < min) return `Must be ≥ ${min}.`;
  return n;
}
