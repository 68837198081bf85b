import { useState } from 'preact/hooks';
import { get, del, enc, qs, type Page } from '../api';
import type { ApiKey, Tenant, TenantUsage, UsageRow } from '../types';
import { session, canWrite } from '../session';
import { useStore } from '../store';
import { navigate } from '../router';
import { lens } from '../lens';
import { Badge, ConfirmDialog, Dialog, Empty, ErrorBox, Link, Loading, Panel, ReadOnlyHint, SecretDialog, ShareBar, useAsync, useInterval, checked } from '../components/ui';
import { TenantForm } from '../components/TenantForm';
import { KeyTable, CreateKeyDialog, type NewSecret } from '../components/KeyTable';
import { UsageMeters } from '../components/UsageMeters';
import { RecentRows } from '../components/RecentRows';
import { useNames } from '../hooks';
import { fmtInt, fmtMoney, fmtPct, fmtTime, fmtNum } from '../format';

export function TenantDetail(props: { name: string }) {
  const s = useStore(session);
  const write = canWrite(s);
  const L = useStore(lens);
  const [editing, setEditing] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [newKey, setNewKey] = useState(false);
  const [secret, setSecret] = useState<NewSecret | null>(null);
  const [showRevoked, setShowRevoked] = useState(false);
  const names = useNames();
  const t = useAsync(() => get<Tenant>(`/api/v1/tenants/${enc(props.name)}`), [props.name]);
  const keys = useAsync(() => get<Page<ApiKey>>(`/api/v1/keys${qs({ tenant: props.name, include_revoked: showRevoked ? 'true' : null, limit: 200 })}`), [props.name, showRevoked]);
  const usage = useAsync(() => get<TenantUsage>(`/api/v1/tenants/${enc(props.name)}/usage`), [props.name]);
  const recent = useAsync(() => get<{ data: UsageRow[] }>(`/api/v1/usage/recent${qs({ tenant: props.name, from: '24h', limit: 20 })}`), [props.name]);
  useInterval(() => usage.reload(), 3000, [props.name]);
  useInterval(() => recent.reload(), 10000, [props.name]);

  if (t.error && !t.data) {
    return (
      <div class="page">
        <div class="crumbs">
          <Link to="/tenants">Tenants</Link> / {props.name}
        </div>
        <ErrorBox error={t.error} onRetry={t.reload} />
      </div>
    );
  }
  if (!t.data) return <Loading label="Loading the tenant…" />;
  const tn = t.data;
  const live = L.frame?.tenants.find((x) => x.name === tn.name);
  return (
    <div class="page">
      <div class="crumbs">
        <Link to="/tenants">Tenants</Link> / <span>{tn.name}</span>
      </div>
      <div class="page-head">
        <h1>{tn.name}</h1>
        {tn.disabled && <Badge tone="bad">disabled</Badge>}
        {tn.never_degrade && <Badge tone="info">never degrade</Badge>}
        <div class="spacer" />
        <ReadOnlyHint show={!write} />
        <button type="button" class="btn" disabled={!write} onClick={() => setEditing(true)}>
          Edit tenant
        </button>
        <button type="button" class="btn danger-outline" disabled={!write} onClick={() => setDeleting(true)}>
          Delete tenant
        </button>
      </div>
      <div class="grid-2">
        <Panel title="Settings">
          <table class="kv">
            <tbody>
              <tr>
                <th scope="row">ID</th>
                <td>
                  <code>{tn.id}</code>
                </td>
              </tr>
              <tr>
                <th scope="row">Weight</th>
                <td class="num-left" data-testid="tenant-weight">{fmtInt(tn.weight)}</td>
              </tr>
              <tr>
                <th scope="row">Group</th>
                <td>{tn.group ?? 'default'}</td>
              </tr>
              <tr>
                <th scope="row">Allowed models</th>
                <td>{tn.allowed_models.length ? tn.allowed_models.join(', ') : 'all'}</td>
              </tr>
              <tr>
                <th scope="row">Quota</th>
                <td>
                  TPM {fmtInt(tn.quota.tpm)} · RPM {fmtInt(tn.quota.rpm)} · in flight {fmtInt(tn.quota.max_in_flight)} · monthly{' '}
                  {tn.quota.monthly_budget != null ? fmtMoney(tn.quota.monthly_budget) : '—'} · lifetime{' '}
                  {tn.quota.lifetime_budget != null ? fmtMoney(tn.quota.lifetime_budget) : '—'}
                  {tn.quota.fail_closed ? ' · fail closed' : ''}
                </td>
              </tr>
              <tr>
                <th scope="row">Created</th>
                <td>{fmtTime(tn.created_at)}</td>
              </tr>
              <tr>
                <th scope="row">Updated</th>
                <td>{fmtTime(tn.updated_at)}</td>
              </tr>
              <tr>
                <th scope="row">Scheduler now</th>
                <td>
                  {live ? (
                    <div class="share-cell">
                      <ShareBar value={live.actual_share} target={live.target_share} />
                      <span class="small">
                        {fmtInt(live.in_flight)} in flight · {fmtInt(live.queued)} queued · actual share {fmtPct(live.actual_share)} · target{' '}
                        {fmtPct(live.target_share)} · score {fmtNum(live.share_score, 3)}
                      </span>
                    </div>
                  ) : (
                    <span class="muted">idle (not among the active tenants)</span>
                  )}
                </td>
              </tr>
            </tbody>
          </table>
        </Panel>
        <Panel title="Live budget usage">
          {usage.error && !usage.data ? <ErrorBox error={usage.error} /> : !usage.data ? <Loading /> : <UsageMeters u={usage.data} />}
        </Panel>
      </div>
      <Panel
        title="API keys"
        actions={
          <>
            <label class="inline">
              <input type="checkbox" checked={showRevoked} onChange={(e) => setShowRevoked(checked(e))} /> Show revoked
            </label>
            <button type="button" class="btn primary small" disabled={!write} onClick={() => setNewKey(true)}>
              New key
            </button>
          </>
        }
      >
        <ErrorBox error={keys.error} onRetry={keys.reload} />
        {keys.loading && !keys.data ? (
          <Loading />
        ) : (keys.data?.data ?? []).length === 0 ? (
          <Empty>No keys. Create one so the tenant can call the gateway.</Empty>
        ) : (
          <KeyTable keys={keys.data!.data} write={write} onChanged={keys.reload} />
        )}
      </Panel>
      <Panel title="Recent requests (24 h)" actions={<Link to={`/usage?tenant=${encodeURIComponent(tn.name)}`}>Usage →</Link>}>
        <ErrorBox error={recent.error} />
        {recent.data ? <RecentRows rows={recent.data.data} empty="No requests in the last 24 hours." /> : <Loading />}
      </Panel>
      {editing && (
        <Dialog title={`Edit tenant ${tn.name}`} onClose={() => setEditing(false)} wide>
          <TenantForm
            tenant={tn}
            groups={names.data?.groups ?? []}
            models={names.data?.models ?? []}
            onCancel={() => setEditing(false)}
            onDone={(nt) => {
              setEditing(false);
              t.setData(nt);
            }}
          />
        </Dialog>
      )}
      {deleting && (
        <ConfirmDialog
          title={`Delete tenant ${tn.name}`}
          body={<p>This deletes the tenant and all its keys. Its requests are refused at once. Usage rows in the ledger stay.</p>}
          typeToConfirm={tn.name}
          confirmLabel="Delete tenant"
          danger
          onConfirm={async () => {
            await del(`/api/v1/tenants/${enc(tn.name)}`);
            navigate('/tenants');
          }}
          onClose={() => setDeleting(false)}
        />
      )}
      {newKey && (
        <CreateKeyDialog
          tenant={tn.name}
          onClose={() => setNewKey(false)}
          onCreated={(sec) => {
            setNewKey(false);
            setSecret(sec);
            keys.reload();
          }}
        />
      )}
      {secret && <SecretDialog secret={secret.secret} prefix={secret.prefix} onClose={() => setSecret(null)} />}
    </div>
  );
}
