import type { Session } from './api';
import { Store } from './store';

/** undefined: still loading; null: signed out. */
export const session = new Store<Session | null | undefined>(undefined);

export function canWrite(s: Session | null | undefined): boolean {
  return !!s && s.role === 'admin';
}
