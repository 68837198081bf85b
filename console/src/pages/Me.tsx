import { get } from '../api';
import type { Tenant, TenantUsage, LensTenant } from '../types';
import { Badge, ErrorBox, Loading, Panel, ShareBar, Stat, useAsync, useInterval } from '../components/ui';
import { UsageMeters } from '../components/UsageMeters';
import { UsageView } from '../components/UsageView';
import { fmtInt, fmtMoney, fmtNum, fmtPct, fmtTime } from '../format';

interface MeBody {
  tenant: Tenant;
  key: { id: string; prefix: string; name: string | null; expires_at: number | null };
}

interface MeScheduler {
  slots_total: number;
  slots_used: number;
  queued: number;
  tenant: LensTenant | null;
}

export function Me() {
  const me = useAsync(() => get<MeBody>('/api/v1/me'), []);
  const usage = useAsync(() => get<TenantUsage>('/api/v1/me/usage'), []);
  const sched = useAsync(() => get<MeScheduler>('/api/v1/me/scheduler'), []);
  useInterval(() => usage.reload(), 3000);
  useInterval(() => sched.reload(), 2000);
  if (me.error && !me.data) return <ErrorBox error={me.error} onRetry={me.reload} />;
  if (!me.data) return <Loading label="Loading your tenant…" />;
  const t = me.data.tenant;
  const st = sched.data?.tenant;
  return (
    <div class="page">
      <div class="page-head">
        <h1>
          My tenant: <span data-testid="me-tenant">{t.name}</span>
        </h1>
        {t.disabled && <Badge tone="bad">disabled</Badge>}
        <span class="muted">
          signed in with key <code>{me.data.key.prefix}</code>
          {me.data.key.name ? ` (${me.data.key.name})` : ''}
          {me.data.key.expires_at ? ` · expires ${fmtTime(me.data.key.expires_at)}` : ''}
        </span>
      </div>
      <div class="stats-row">
        <Stat label="Weight" value={fmtInt(t.weight)} sub={`group ${t.group ?? 'default'}`} />
        <Stat label="In flight" value={st ? fmtInt(st.in_flight) : '0'} sub={t.quota.max_in_flight ? `limit ${t.quota.max_in_flight}` : 'no limit'} />
        <Stat label="Queued now" value={st ? fmtInt(st.queued) : '0'} sub={sched.data ? `gateway queue ${fmtInt(sched.data.queued)}` : ''} />
        <Stat
          label="Share of slots"
          value={st ? fmtPct(st.actual_share) : '—'}
          sub={st ? <ShareBar value={st.actual_share} target={st.target_share} label={`target ${fmtPct(st.target_share)}`} /> : 'idle'}
        />
        <Stat label="Gateway pool" value={sched.data?.slots_total != null ? `${sched.data.slots_used} / ${sched.data.slots_total}` : '—'} sub="slots in use" />
      </div>
      <div class="grid-2">
        <Panel title="Limits">
          <table class="kv">
            <tbody>
              <tr>
                <th scope="row">Tokens per minute</th>
                <td>{fmtInt(t.quota.tpm)}</td>
              </tr>
              <tr>
                <th scope="row">Requests per minute</th>
                <td>{fmtInt(t.quota.rpm)}</td>
              </tr>
              <tr>
                <th scope="row">Max in flight</th>
                <td>{fmtInt(t.quota.max_in_flight)}</td>
              </tr>
              <tr>
                <th scope="row">Monthly budget</th>
                <td>{t.quota.monthly_budget != null ? fmtMoney(t.quota.monthly_budget) : '—'}</td>
              </tr>
              <tr>
                <th scope="row">Lifetime budget</th>
                <td>{t.quota.lifetime_budget != null ? fmtMoney(t.quota.lifetime_budget) : '—'}</td>
              </tr>
              <tr>
                <th scope="row">Models</th>
                <td>{t.allowed_models.length ? t.allowed_models.join(', ') : 'all'}</td>
              </tr>
              <tr>
                <th scope="row">Share score</th>
                <td>{st ? fmtNum(st.share_score, 3) : '—'}</td>
              </tr>
            </tbody>
          </table>
        </Panel>
        <Panel title="Live usage vs limits">
          {usage.error && !usage.data ? <ErrorBox error={usage.error} /> : !usage.data ? <Loading /> : <UsageMeters u={usage.data} />}
        </Panel>
      </div>
      <h2 class="section">Usage</h2>
      <UsageView base="/api/v1/me/usage" tenantFilter={false} />
    </div>
  );
}
