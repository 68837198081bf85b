import { useEffect, useState } from 'preact/hooks';
import { get, qs, type Page } from '../api';
import type { Tenant } from '../types';
import { session, canWrite } from '../session';
import { useStore } from '../store';
import { navigate, useRoute, setQuery } from '../router';
import { Dialog, Empty, ErrorBox, Link, Loading, Pager, Panel, ReadOnlyHint, useAsync, usePager, val, Badge } from '../components/ui';
import { TenantForm } from '../components/TenantForm';
import { useNames } from '../hooks';
import { fmtInt, fmtMoney, fmtAgo } from '../format';

export function Tenants() {
  const s = useStore(session);
  const write = canWrite(s);
  const { query } = useRoute();
  const search = query.get('search') ?? '';
  const [text, setText] = useState(search);
  const pager = usePager();
  const [creating, setCreating] = useState(false);
  const names = useNames();
  const list = useAsync(
    () => get<Page<Tenant>>(`/api/v1/tenants${qs({ search, limit: 50, cursor: pager.cursor })}`),
    [search, pager.cursor],
  );
  // Debounced search box -> ?search= in the URL.
  useEffect(() => {
    if (text === search) return;
    const id = setTimeout(() => {
      pager.reset();
      setQuery({ search: text.trim() || null });
    }, 300);
    return () => clearTimeout(id);
  }, [text]);

  const rows = list.data?.data ?? [];
  return (
    <div class="page">
      <div class="page-head">
        <h1>Tenants</h1>
        <div class="spacer" />
        <ReadOnlyHint show={!write} />
        <button type="button" class="btn primary" disabled={!write} onClick={() => setCreating(true)}>
          New tenant
        </button>
      </div>
      <Panel
        actions={
          <input
            type="search"
            aria-label="Search tenants"
            placeholder="Search by name"
            value={text}
            onInput={(e) => setText(val(e))}
          />
        }
        title={search ? `Tenants matching "${search}"` : 'All tenants'}
      >
        <ErrorBox error={list.error} onRetry={list.reload} />
        {list.loading && !list.data ? (
          <Loading />
        ) : rows.length === 0 ? (
          <Empty>{search ? `No tenant name contains "${search}".` : 'No tenants yet. Create one to issue API keys.'}</Empty>
        ) : (
          <div class="table-wrap">
            <table class="data" aria-label="Tenants">
              <thead>
                <tr>
                  <th>Name</th>
                  <th>Group</th>
                  <th class="num">Weight</th>
                  <th class="num">TPM</th>
                  <th class="num">RPM</th>
                  <th class="num">Max in flight</th>
                  <th class="num">Monthly budget</th>
                  <th>Models</th>
                  <th>Flags</th>
                  <th>Updated</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((t) => (
                  <tr key={t.id} data-tenant={t.name}>
                    <td>
                      <Link to={`/tenants/${encodeURIComponent(t.name)}`}>{t.name}</Link>
                    </td>
                    <td>{t.group ?? <span class="muted">default</span>}</td>
                    <td class="num">{fmtInt(t.weight)}</td>
                    <td class="num">{fmtInt(t.quota?.tpm)}</td>
                    <td class="num">{fmtInt(t.quota?.rpm)}</td>
                    <td class="num">{fmtInt(t.quota?.max_in_flight)}</td>
                    <td class="num">{t.quota?.monthly_budget != null ? fmtMoney(t.quota.monthly_budget) : '—'}</td>
                    <td>{t.allowed_models.length ? t.allowed_models.join(', ') : <span class="muted">all</span>}</td>
                    <td>
                      {t.disabled && <Badge tone="bad">disabled</Badge>}
                      {t.never_degrade && <Badge tone="info">never degrade</Badge>}
                    </td>
                    <td title={String(t.updated_at)}>{fmtAgo(t.updated_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <Pager
          page={pager.page}
          hasNext={!!list.data?.next_cursor}
          onPrev={pager.prev}
          onNext={() => list.data?.next_cursor && pager.next(list.data.next_cursor)}
        />
      </Panel>
      {creating && (
        <Dialog title="New tenant" onClose={() => setCreating(false)} wide>
          <TenantForm
            groups={names.data?.groups ?? []}
            models={names.data?.models ?? []}
            onCancel={() => setCreating(false)}
            onDone={(t) => {
              setCreating(false);
              navigate(`/tenants/${encodeURIComponent(t.name)}`);
            }}
          />
        </Dialog>
      )}
    </div>
  );
}
