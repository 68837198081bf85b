import { Store, useStore } from './store';

export const BASE = '/ui';

function current(): string {
  let p = location.pathname;
  if (p.startsWith(BASE)) p = p.slice(BASE.length);
  if (p === '' || p === '/') p = '/';
  return p + location.search;
}

export const route = new Store<string>(current());

window.addEventListener('popstate', () => route.set(current()));

/** Goes to a console path such as "/tenants?search=a" (relative to /ui). */
export function navigate(to: string, replace = false) {
  const url = BASE + to;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route.set(current());
  window.scrollTo(0, 0);
}

export function useRoute(): { path: string; query: URLSearchParams } {
  const r = useStore(route);
  const i = r.indexOf('?');
  return { path: i < 0 ? r : r.slice(0, i), query: new URLSearchParams(i < 0 ? '' : r.slice(i)) };
}

/** Replaces the query of the current path (keeps history clean for filters). */
export function setQuery(params: Record<string, string | null | undefined>) {
  const { path } = parse();
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) u.set(k, v);
  const s = u.toString();
  navigateQuiet(path + (s ? '?' + s : ''));
}

function parse() {
  const r = route.get();
  const i = r.indexOf('?');
  return { path: i < 0 ? r : r.slice(0, i) };
}

function navigateQuiet(to: string) {
  history.replaceState(null, '', BASE + to);
  route.set(current());
}
