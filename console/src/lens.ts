// The scheduler lens: ONE EventSource for the whole console (lens, overview, models,
// groups read from it). Opened while an admin or viewer is signed in, closed on sign-out.
import type { LensFrame, StatsPoint } from './types';
import { Store } from './store';

export type LensStatus = 'connecting' | 'live' | 'reconnecting' | 'unavailable' | 'off';

export interface LensState {
  frame: LensFrame | null;
  /** The last frames, oldest first (at most HISTORY). */
  history: LensFrame[];
  /** Stats points gathered from frames' `last`, oldest first. */
  points: StatsPoint[];
  status: LensStatus;
}

export const HISTORY = 300;

export const lens = new Store<LensState>({ frame: null, history: [], points: [], status: 'off' });

let es: EventSource | null = null;
let retry: ReturnType<typeof setTimeout> | null = null;
let onClosed: (() => void) | null = null;

export function startLens(top = 50, closed?: () => void) {
  stopLens();
  onClosed = closed ?? null;
  lens.set({ ...lens.get(), status: 'connecting' });
  open(top);
}

function open(top: number) {
  const src = new EventSource(`/api/v1/scheduler/stream?top=${top}`);
  es = src;
  src.addEventListener('lens', (ev) => {
    let f: LensFrame;
    try {
      f = normalize(JSON.parse((ev as MessageEvent).data));
    } catch {
      return;
    }
    const s = lens.get();
    const history = s.history.length >= HISTORY ? s.history.slice(1) : s.history.slice();
    history.push(f);
    let points = s.points;
    if (f.last && (!points.length || f.last.t > points[points.length - 1].t)) {
      points = points.length >= HISTORY ? points.slice(1) : points.slice();
      points.push(f.last);
    }
    lens.set({ frame: f, history, points, status: 'live' });
  });
  src.onerror = () => {
    if (es !== src) return;
    if (src.readyState === EventSource.CLOSED) {
      // A refused stream (401, 404 …) is not retried by the browser: check the session
      // and try again later.
      lens.set({ ...lens.get(), status: 'unavailable' });
      onClosed?.();
      retry = setTimeout(() => {
        if (es === src) open(top);
      }, 5000);
    } else {
      lens.set({ ...lens.get(), status: 'reconnecting' });
    }
  };
}

/** A frame without a scheduler (`"scheduler": null`) still renders: empty lists, zero slots. */
function normalize(raw: Partial<LensFrame>): LensFrame {
  return {
    at: raw.at ?? Date.now(),
    mode: raw.mode ?? 'off',
    slots_total: raw.slots_total ?? 0,
    slots_used: raw.slots_used ?? 0,
    queued: raw.queued ?? 0,
    next: raw.next ?? null,
    groups: raw.groups ?? [],
    tenants: raw.tenants ?? [],
    others: raw.others ?? null,
    tenant_count: raw.tenant_count ?? raw.tenants?.length ?? 0,
    models: raw.models ?? [],
    admissions: raw.admissions,
    last: raw.last ?? null,
  };
}

export function stopLens() {
  if (retry) clearTimeout(retry);
  retry = null;
  if (es) es.close();
  es = null;
  lens.set({ frame: null, history: [], points: [], status: 'off' });
}
