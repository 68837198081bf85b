import { useMemo } from 'preact/hooks';
import { get, getReadyz } from '../api';
import { lens } from '../lens';
import { useStore } from '../store';
import type { Cluster, LensFrame, Readyz, Stats, StatsPoint } from '../types';
import { Chart } from '../components/Chart';
import { Badge, ErrorBox, Loading, Panel, ShareBar, Stat, useAsync, useInterval, Link } from '../components/ui';
import { fmtCompact, fmtInt, fmtMs, fmtPct, fmtNum } from '../format';

function mergePoints(base: StatsPoint[], extra: StatsPoint[], max = 300): StatsPoint[] {
  if (!extra.length) return base;
  const last = base.length ? base[base.length - 1].t : 0;
  const add = extra.filter((p) => p.t > last);
  if (!add.length) return base;
  const all = base.concat(add);
  return all.length > max ? all.slice(all.length - max) : all;
}

const busy = (p: StatsPoint) => p.requests > 0 || p.fast + p.queued + p.brownout > 0 || Object.keys(p.errors ?? {}).length > 0;

/** Drops the idle head of the window (a fresh gateway), keeping at least a minute. */
export function trimIdle(points: StatsPoint[], keep = 60): StatsPoint[] {
  const first = points.findIndex(busy);
  if (first < 0) return points.slice(-keep);
  const from = Math.max(0, Math.min(first - 5, points.length - keep));
  return from > 0 ? points.slice(from) : points;
}

function avg(points: StatsPoint[], n: number, f: (p: StatsPoint) => number): number {
  const s = points.slice(-n);
  if (!s.length) return 0;
  return s.reduce((a, p) => a + f(p), 0) / s.length;
}

export function healthTone(v: string | undefined): 'ok' | 'warn' | 'bad' | 'muted' {
  if (!v) return 'muted';
  if (v === 'up' || v === 'ready' || v === 'none') return v === 'none' ? 'muted' : 'ok';
  if (v === 'degraded' || v === 'full') return 'warn';
  return 'bad';
}

export function Overview() {
  const L = useStore(lens);
  const stats = useAsync(() => get<Stats>('/api/v1/stats?window=300'), []);
  const ready = useAsync(() => getReadyz<Readyz>(), []);
  const cluster = useAsync(() => get<Cluster>('/api/v1/cluster'), []);
  useInterval(() => ready.reload(), 10_000);
  useInterval(() => cluster.reload(), 15_000);
  // Fed by the lens stream's `last`; poll only while the stream is down.
  useInterval(() => {
    if (L.status !== 'live') stats.reload();
  }, 5_000, [L.status]);

  const points = useMemo(() => trimIdle(mergePoints(stats.data?.points ?? [], L.points)), [stats.data, L.points]);
  const f = L.frame;

  const xs = points.map((p) => p.t / 1000);
  const admissions = useMemo(
    () => [xs, points.map((p) => p.fast), points.map((p) => p.queued), points.map((p) => p.brownout)],
    [points],
  );
  const errCodes = useMemo(() => {
    const s = new Set<string>();
    for (const p of points) for (const k of Object.keys(p.errors ?? {})) s.add(k);
    return Array.from(s).sort();
  }, [points]);
  const errors = useMemo(() => [xs, ...errCodes.map((c) => points.map((p) => p.errors?.[c] ?? 0))], [points, errCodes]);
  const throughput = useMemo(
    () => [xs, points.map((p) => p.requests), points.map((p) => p.input_tokens + p.output_tokens)],
    [points],
  );
  const latency = useMemo(
    () => [xs, points.map((p) => p.latency_ms?.p50 ?? null), points.map((p) => p.latency_ms?.p95 ?? null)],
    [points],
  );
  const slots = useMemo(() => {
    const h = L.history;
    return [h.map((x) => x.at / 1000), h.map((x) => x.slots_used), h.map((x) => x.slots_total), h.map((x) => x.queued)];
  }, [L.history]);

  const rps = avg(points, 10, (p) => p.requests);
  const tps = avg(points, 10, (p) => p.input_tokens + p.output_tokens);
  const lat = [...points].reverse().find((p) => p.latency_ms)?.latency_ms ?? null;
  const errs10 = points.slice(-10).reduce((a, p) => a + Object.values(p.errors ?? {}).reduce((x, y) => x + y, 0), 0);
  const util = f && f.slots_total ? f.slots_used / f.slots_total : 0;
  const rd = ready.data;
  const cl = cluster.data;

  return (
    <div class="page">
      <div class="page-head">
        <h1>Overview</h1>
        <span class="muted">Last 5 minutes, one point per second</span>
      </div>
      <div class="stats-row">
        <Stat
          label="Slots in use"
          value={f ? `${f.slots_used} / ${f.slots_total}` : '—'}
          sub={f ? <ShareBar value={util} label={`utilization ${fmtPct(util)}`} /> : 'waiting for the lens'}
        />
        <Stat label="Queue depth" value={f ? fmtInt(f.queued) : '—'} sub={f?.next ? `next: ${f.next.tenant}` : 'nothing waiting'} />
        <Stat label="Requests/s" value={fmtNum(rps, 1)} sub="avg of last 10 s" />
        <Stat label="Tokens/s" value={fmtCompact(tps)} sub="input + output" />
        <Stat label="Upstream latency" value={lat ? fmtMs(lat.p50) : '—'} sub={lat ? `p95 ${fmtMs(lat.p95)}` : 'no requests'} />
        <Stat label="Errors (10 s)" value={fmtInt(errs10)} tone={errs10 ? 'warn' : ''} sub={errCodes.length ? errCodes.join(', ') : 'none'} />
        <Stat label="Active tenants" value={f?.tenant_count != null ? fmtInt(f.tenant_count) : '—'} sub={f ? `${f.mode} mode` : ''} />
      </div>
      <ErrorBox error={stats.error} onRetry={stats.reload} />
      {stats.loading && !stats.data ? (
        <Loading label="Loading stats…" />
      ) : (
        <div class="grid-2">
          <Panel>
            <Chart
              title="Admissions per second by class"
              series={[
                { label: 'fast', color: '#16a34a' },
                { label: 'queued', color: '#2563eb' },
                { label: 'brownout', color: '#d97706' },
              ]}
              data={admissions}
              empty="No admissions in the last 5 minutes"
            />
          </Panel>
          <Panel>
            <Chart
              title="Errors and refusals per second by code"
              series={errCodes.map((c, i) => ({ label: c, color: ['#dc2626', '#ea580c', '#7c3aed', '#db2777', '#475569'][i % 5] }))}
              data={errCodes.length ? errors : [[]]}
              empty="No errors in the last 5 minutes"
            />
          </Panel>
          <Panel>
            <Chart
              title="Slots in use and queue depth (since this page opened)"
              series={[
                { label: 'slots used', color: '#2563eb', fill: true },
                { label: 'slots total', color: '#94a3b8', dash: true },
                { label: 'queued', color: '#d97706' },
              ]}
              data={slots}
              empty="Waiting for the lens stream"
            />
          </Panel>
          <Panel>
            <Chart
              title="Throughput"
              series={[
                { label: 'requests/s', color: '#2563eb' },
                { label: 'tokens/s', color: '#16a34a', scale: 'y2', fmt: fmtCompact },
              ]}
              y2Fmt={fmtCompact}
              data={throughput}
              empty="No requests in the last 5 minutes"
            />
          </Panel>
          <Panel>
            <Chart
              title="Upstream latency (admission to first token)"
              series={[
                { label: 'p50', color: '#0891b2', fmt: (v) => fmtMs(v), spanGaps: true },
                { label: 'p95', color: '#7c3aed', fmt: (v) => fmtMs(v), spanGaps: true },
              ]}
              yFmt={(v) => `${fmtCompact(v)} ms`}
              data={latency}
              empty="No requests in the last 5 minutes"
            />
          </Panel>
          <div class="stack">
            <Panel title="Dependency health" actions={<Link to="/usage">Ledger usage →</Link>}>
              {ready.error && !rd ? (
                <ErrorBox error={ready.error} />
              ) : !rd ? (
                <Loading />
              ) : (
                <table class="kv">
                  <tbody>
                    {(['status', 'store', 'budget', 'ledger'] as const).map((k) => (
                      <tr key={k}>
                        <th scope="row">{k === 'status' ? 'gateway' : k}</th>
                        <td>
                          <Badge tone={healthTone(rd[k] as string | undefined)}>{String(rd[k] ?? '—')}</Badge>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </Panel>
            <Panel title="Cluster">
              {cluster.error && !cl ? (
                <ErrorBox error={cluster.error} />
              ) : !cl ? (
                <Loading />
              ) : !cl.enabled ? (
                <p class="empty small">Single gateway: cluster mode is off. This pod owns all {f ? f.slots_total : ''} slots.</p>
              ) : (
                <>
                  <p class="muted small">
                    This pod <code>{cl.pod}</code> holds {fmtInt(cl.slots)} of {fmtInt(cl.cluster_slots)} cluster slots ·{' '}
                    {cl.connected ? <Badge tone="ok">connected</Badge> : <Badge tone="bad">disconnected</Badge>}
                  </p>
                  <table class="data">
                    <thead>
                      <tr>
                        <th>Pod</th>
                        <th class="num">Slots</th>
                        <th>Share</th>
                      </tr>
                    </thead>
                    <tbody>
                      {(cl.pods ?? []).map((p) => {
                        const share = cl.cluster_slots ? p.slots / cl.cluster_slots : 0;
                        return (
                          <tr key={p.pod}>
                            <td>{p.pod}</td>
                            <td class="num">{fmtInt(p.slots)}</td>
                            <td class="barcell">
                              <ShareBar value={share} />
                              <span class="num small">{fmtPct(share)}</span>
                            </td>
                          </tr>
                        );
                      })}
                    </tbody>
                  </table>
                </>
              )}
            </Panel>
          </div>
        </div>
      )}
      <AdmissionsPanel frame={f} />
    </div>
  );
}

/** The scheduler's admission counts since start, from a lens frame (Overview and Lens). */
export function AdmissionsPanel(props: { frame: LensFrame | null | undefined }) {
  const a = props.frame?.admissions;
  if (!a) return null;
  return (
    <Panel title="Admissions since start">
      <div class="stats-row compact">
        <Stat label="fast" value={fmtInt(a.fast)} />
        <Stat label="queued" value={fmtInt(a.queued)} />
        <Stat label="brownout" value={fmtInt(a.brownout)} />
        <Stat label="refused (queue full)" value={fmtInt(a.refused_queue_full)} />
        <Stat label="cancelled" value={fmtInt(a.cancelled)} />
      </div>
    </Panel>
  );
}
