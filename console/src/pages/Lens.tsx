import { useMemo, useState } from 'preact/hooks';
import { getReadyz } from '../api';
import { lens } from '../lens';
import { useStore } from '../store';
import type { LensFrame, Readyz } from '../types';
import { Badge, Empty, Loading, Panel, ShareBar, Sparkline, Stat, useAsync, Link, val } from '../components/ui';
import { fmtCompact, fmtInt, fmtNum, fmtPct } from '../format';
import { AdmissionsPanel, healthTone } from './Overview';

const SPARK = 60;

function Share(props: { target: number; actual: number; testid: string }) {
  return (
    <div class="share-cell">
      <ShareBar value={props.actual} target={props.target} label={`actual ${fmtPct(props.actual)}, target ${fmtPct(props.target)}`} />
      <span class="num small share-nums">
        <span data-testid={`${props.testid}-actual`} data-value={props.actual}>
          {fmtPct(props.actual)}
        </span>
        <span class="muted"> / </span>
        <span data-testid={`${props.testid}-target`} data-value={props.target}>
          {fmtPct(props.target)}
        </span>
      </span>
    </div>
  );
}

function sparkFor(history: LensFrame[], name: string): number[] {
  const h = history.slice(-SPARK);
  return h.map((f) => f.tenants.find((t) => t.name === name)?.actual_share ?? 0);
}

export function Lens() {
  const L = useStore(lens);
  const [filter, setFilter] = useState('');
  const ready = useAsync(() => getReadyz<Readyz>(), []);
  const f = L.frame;
  const tenants = useMemo(() => {
    if (!f) return [];
    const q = filter.trim().toLowerCase();
    return q ? f.tenants.filter((t) => t.name.includes(q) || (t.group ?? '').includes(q)) : f.tenants;
  }, [f, filter]);

  if (!f) {
    return (
      <div class="page">
        <h1>Scheduler lens</h1>
        {L.status === 'unavailable' ? (
          <Empty>The lens stream is not available (retrying every 5 s).</Empty>
        ) : (
          <Loading label="Connecting to the lens stream…" />
        )}
      </div>
    );
  }
  const util = f.slots_total ? f.slots_used / f.slots_total : 0;
  const ledger = ready.data?.ledger;
  return (
    <div class="page">
      <div class="page-head">
        <h1>Scheduler lens</h1>
        <span class={`badge ${L.status === 'live' ? 'ok' : 'warn'}`} data-testid="lens-status">
          {L.status}
        </span>
        <span class="muted">mode {f.mode} · one frame per second · top {f.tenants.length} of {fmtInt(f.tenant_count ?? f.tenants.length)} tenants</span>
      </div>
      <div class="lens-strip" aria-label="Admission summary" data-testid="lens-strip">
        <span>
          queue <b class="num" data-testid="lens-queued">{fmtInt(f.queued)}</b> waiting
        </span>
        <span class="sep">·</span>
        <span>
          pick <b data-testid="lens-next">{f.next ? f.next.tenant : '—'}</b>
        </span>
        <span class="sep">·</span>
        <span>
          pool{' '}
          <b class="num" data-testid="lens-pool">
            {f.slots_used}/{f.slots_total}
          </b>
        </span>
        <span class="sep">·</span>
        <span>
          ledger <Badge tone={healthTone(ledger)}>{ledger ?? '…'}</Badge>
        </span>
      </div>
      <div class="stats-row">
        <Stat label="Pool utilization" value={fmtPct(util, 0)} sub={<ShareBar value={util} />} />
        <Stat label="Slots" value={`${f.slots_used} / ${f.slots_total}`} />
        <Stat label="Queued" value={fmtInt(f.queued)} />
        <Stat
          label="Next slot goes to"
          value={f.next ? f.next.tenant : 'nobody waiting'}
          sub={f.next ? (f.next.group ? `group ${f.next.group}` : '') : ''}
        />
      </div>
      {f.next && (
        <p class="why" data-testid="lens-reason">
          <b>Why{f.next.rule ? ` (${f.next.rule})` : ''}:</b> {f.next.reason}
        </p>
      )}

      <Panel title="Groups">
        {f.groups.length === 0 ? (
          <Empty>No group is active yet.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="data" aria-label="Groups in the lens">
              <thead>
                <tr>
                  <th>Group</th>
                  <th class="num">Weight</th>
                  <th class="num">Reserved</th>
                  <th class="num">Max</th>
                  <th class="num">Cap</th>
                  <th class="num">Queued</th>
                  <th class="num">In flight</th>
                  <th class="num">Share score</th>
                  <th>Actual / target share</th>
                </tr>
              </thead>
              <tbody>
                {f.groups.map((g) => (
                  <tr key={g.name} data-group={g.name}>
                    <td>{g.name}</td>
                    <td class="num">{fmtNum(g.weight, 2)}</td>
                    <td class="num">{g.pool_reserved_slots ?? g.reserved_slots ?? '—'}</td>
                    <td class="num">{g.pool_max_slots ?? g.max_slots ?? '—'}</td>
                    <td class="num">{g.cap ?? '—'}</td>
                    <td class="num">{fmtInt(g.queued)}</td>
                    <td class="num">{fmtInt(g.in_flight)}</td>
                    <td class="num">{fmtNum(g.share_score, 3)}</td>
                    <td class="wide-cell">
                      <Share actual={g.actual_share} target={g.target_share} testid={`group-${g.name}`} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Panel>

      <Panel
        title="Tenants"
        actions={
          <input
            type="search"
            placeholder="Filter shown tenants"
            aria-label="Filter tenants"
            value={filter}
            onInput={(e) => setFilter(val(e))}
          />
        }
      >
        {f.tenants.length === 0 && !f.others?.tenants ? (
          <Empty>No tenant has sent a request since the gateway started.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="data" aria-label="Tenants in the lens">
              <thead>
                <tr>
                  <th>Tenant</th>
                  <th>Group</th>
                  <th class="num">Weight</th>
                  <th class="num">Queued</th>
                  <th class="num">In flight</th>
                  <th class="num">Share score</th>
                  <th class="num">Served tokens</th>
                  <th>Actual / target share</th>
                  <th>Actual share, last {SPARK} s</th>
                </tr>
              </thead>
              <tbody>
                {tenants.map((t) => (
                  <tr key={t.name} data-tenant={t.name} class={f.next?.tenant === t.name ? 'next-row' : ''}>
                    <td>
                      <Link to={`/tenants/${encodeURIComponent(t.name)}`}>{t.name}</Link>
                      {f.next?.tenant === t.name && <span class="badge info small-badge">next</span>}
                    </td>
                    <td>{t.group ?? '—'}</td>
                    <td class="num" data-testid={`tenant-${t.name}-weight`}>{fmtNum(t.weight, 2)}</td>
                    <td class="num" data-testid={`tenant-${t.name}-queued`}>{fmtInt(t.queued)}</td>
                    <td class="num" data-testid={`tenant-${t.name}-in-flight`}>{fmtInt(t.in_flight)}</td>
                    <td class="num">{fmtNum(t.share_score, 3)}</td>
                    <td class="num">{fmtCompact(t.served_tokens)}</td>
                    <td class="wide-cell">
                      <Share actual={t.actual_share} target={t.target_share} testid={`tenant-${t.name}`} />
                    </td>
                    <td>
                      <Sparkline values={sparkFor(L.history, t.name)} max={1} label={`${t.name} actual share trend`} />
                    </td>
                  </tr>
                ))}
                {f.others && f.others.tenants > 0 && (
                  <tr class="others-row" data-testid="lens-others">
                    <td colSpan={3}>others ({fmtInt(f.others.tenants)} tenants)</td>
                    <td class="num">{fmtInt(f.others.queued)}</td>
                    <td class="num">{fmtInt(f.others.in_flight)}</td>
                    <td class="num">—</td>
                    <td class="num">—</td>
                    <td class="wide-cell">
                      <Share actual={f.others.actual_share} target={f.others.target_share} testid="others" />
                    </td>
                    <td />
                  </tr>
                )}
                {tenants.length === 0 && f.tenants.length > 0 && (
                  <tr>
                    <td colSpan={9} class="empty">
                      No shown tenant matches "{filter}".
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
        )}
      </Panel>

      {f.models && f.models.length > 0 && (
        <Panel title="Models">
          <table class="data" aria-label="Models in the lens">
            <thead>
              <tr>
                <th>Model</th>
                <th class="num">In flight</th>
                <th class="num">Queued</th>
                <th class="num">Cap</th>
              </tr>
            </thead>
            <tbody>
              {f.models.map((m) => (
                <tr key={m.name}>
                  <td>{m.name}</td>
                  <td class="num">{fmtInt(m.in_flight)}</td>
                  <td class="num">{fmtInt(m.queued)}</td>
                  <td class="num">{m.cap ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Panel>
      )}

      <AdmissionsPanel frame={f} />
    </div>
  );
}
