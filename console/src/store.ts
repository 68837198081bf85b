// A tiny observable value with a Preact hook.
import { useEffect, useState } from 'preact/hooks';

export class Store<T> {
  private v: T;
  private subs = new Set<(v: T) => void>();
  constructor(v: T) {
    this.v = v;
  }
  get(): T {
    return this.v;
  }
  set(v: T) {
    this.v = v;
    for (const s of Array.from(this.subs)) s(v);
  }
  subscribe(fn: (v: T) => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }
}

export function useStore<T>(s: Store<T>): T {
  const [v, setV] = useState(s.get());
  useEffect(() => {
    setV(s.get());
    return s.subscribe(setV);
  }, [s]);
  return v;
}
