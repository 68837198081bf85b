import { get, type Page } from './api';
import type { Group, Model } from './types';
import { useAsync } from './components/ui';

/** Group and model names for form suggestions (best effort). */
export function useNames() {
  return useAsync(async () => {
    const [g, m] = await Promise.all([
      get<{ data: Group[] }>('/api/v1/groups').catch(() => ({ data: [] as Group[] })),
      get<Page<Model>>('/api/v1/models?limit=200').catch(() => ({ data: [] as Model[] })),
    ]);
    return { groups: g.data.map((x) => x.name), models: m.data.map((x) => x.model_name) };
  }, []);
}
