import { useEffect, useState } from 'preact/hooks';
import { get, qs, type Page } from '../api';
import type { ApiKey, Tenant } from '../types';
import { session, canWrite } from '../session';
import { useStore } from '../store';
import { Empty, ErrorBox, Loading, Pager, Panel, ReadOnlyHint, useAsync, usePager, val, checked } from '../components/ui';
import { KeyTable } from '../components/KeyTable';

export function Keys() {
  const s = useStore(session);
  const write = canWrite(s);
  const [prefix, setPrefix] = useState('');
  const [tenant, setTenant] = useState('');
  const [applied, setApplied] = useState({ prefix: '', tenant: '' });
  const [revoked, setRevoked] = useState(false);
  const pager = usePager();
  useEffect(() => {
    const id = setTimeout(() => {
      if (applied.prefix !== prefix.trim() || applied.tenant !== tenant.trim()) {
        pager.reset();
        setApplied({ prefix: prefix.trim(), tenant: tenant.trim() });
      }
    }, 300);
    return () => clearTimeout(id);
  }, [prefix, tenant]);
  const list = useAsync(
    () =>
      get<Page<ApiKey>>(
        `/api/v1/keys${qs({ prefix: applied.prefix, tenant: applied.tenant, include_revoked: revoked ? 'true' : null, limit: 50, cursor: pager.cursor })}`,
      ),
    [applied, revoked, pager.cursor],
  );
  // Tenant names for the ids (best effort: the first 200).
  const tenants = useAsync(
    () =>
      get<Page<Tenant>>('/api/v1/tenants?limit=200').then((p) => Object.fromEntries(p.data.map((t) => [t.id, t.name])) as Record<string, string>),
    [],
  );
  const rows = list.data?.data ?? [];
  return (
    <div class="page">
      <div class="page-head">
        <h1>API keys</h1>
        <div class="spacer" />
        <ReadOnlyHint show={!write} />
        <span class="muted small">New keys are created on a tenant's page.</span>
      </div>
      <Panel
        title="All keys"
        actions={
          <div class="filters">
            <input type="search" aria-label="Filter by prefix" placeholder="Key prefix" value={prefix} onInput={(e) => setPrefix(val(e))} />
            <input type="search" aria-label="Filter by tenant" placeholder="Tenant name or id" value={tenant} onInput={(e) => setTenant(val(e))} />
            <label class="inline">
              <input
                type="checkbox"
                checked={revoked}
                onChange={(e) => {
                  pager.reset();
                  setRevoked(checked(e));
                }}
              />{' '}
              Include revoked
            </label>
          </div>
        }
      >
        <ErrorBox error={list.error} onRetry={list.reload} />
        {list.loading && !list.data ? (
          <Loading />
        ) : rows.length === 0 ? (
          <Empty>{applied.prefix || applied.tenant ? 'No key matches these filters.' : 'No API keys yet.'}</Empty>
        ) : (
          <KeyTable keys={rows} write={write} showTenant tenantNames={tenants.data} onChanged={list.reload} />
        )}
        <Pager page={pager.page} hasNext={!!list.data?.next_cursor} onPrev={pager.prev} onNext={() => list.data?.next_cursor && pager.next(list.data.next_cursor)} />
      </Panel>
    </div>
  );
}
