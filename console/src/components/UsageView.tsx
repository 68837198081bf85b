import { useMemo, useState } from 'preact/hooks';
import { get, qs, type Page } from '../api';
import type { SeriesRow, Tenant, UsageRow, UsageTotals } from '../types';
import { Chart, PALETTE } from './Chart';
import { Empty, ErrorBox, Loading, Panel, useAsync, val } from './ui';
import { RecentRows } from './RecentRows';
import { bucketSecs, fmtCompact, fmtInt, fmtMoney, fmtMs, pickBucket } from '../format';

/** Keys the usage chart draws on their own; the rest are summed as "other". */
const CHART_KEYS = 6;

const PRESETS: [string, string, number][] = [
  ['1h', 'Last hour', 3600e3],
  ['24h', 'Last 24 hours', 86400e3],
  ['7d', 'Last 7 days', 7 * 86400e3],
  ['30d', 'Last 30 days', 30 * 86400e3],
];

function toLocalInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

export interface UsageFilters {
  range: string;
  from: string;
  to: string;
  groupBy: string;
  tenant: string;
  model: string;
}

/** The usage explorer: range, grouping, chart, totals, recent rows, CSV links. */
export function UsageView(props: { base: string; tenantFilter: boolean; initialTenant?: string }) {
  const now0 = useMemo(() => Date.now(), []);
  const [f, setF] = useState<UsageFilters>({
    range: '24h',
    from: toLocalInput(now0 - 86400e3),
    to: toLocalInput(now0),
    groupBy: props.tenantFilter ? 'tenant' : 'model',
    tenant: props.initialTenant ?? '',
    model: '',
  });
  const [applied, setApplied] = useState<UsageFilters>(f);
  const [tick, setTick] = useState(0);
  const [rangeErr, setRangeErr] = useState<string | null>(null);

  // The resolved range in ms (presets end now, at the moment of loading).
  const range = useMemo(() => {
    const p = PRESETS.find((x) => x[0] === applied.range);
    if (p) {
      const to = Date.now();
      return { from: to - p[2], to };
    }
    return { from: new Date(applied.from).getTime(), to: new Date(applied.to).getTime() };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [applied, tick]);
  const bucket = pickBucket(range.to - range.from, 500);
  const common = { from: range.from, to: range.to, tenant: props.tenantFilter ? applied.tenant.trim() : '', model: applied.model.trim() };

  const totals = useAsync(() => get<{ data: UsageTotals[] }>(`${props.base}/totals${qs({ ...common, group_by: applied.groupBy })}`), [range, props.base]);
  // The chart draws the top 6 keys and "other": the server sums the rest (`top`).
  const topKeys = applied.groupBy === 'none' ? undefined : CHART_KEYS;
  const series = useAsync(() => get<{ data: SeriesRow[] }>(`${props.base}/series${qs({ ...common, group_by: applied.groupBy, bucket, top: topKeys })}`), [range, props.base]);
  const recent = useAsync(() => get<{ data: UsageRow[] }>(`${props.base}/recent${qs({ ...common, limit: 100 })}`), [range, props.base]);

  // Tenant names for the rows' tenant ids (admin view; best effort, the first 200).
  const names = useAsync(
    () =>
      props.tenantFilter
        ? get<Page<Tenant>>('/api/v1/tenants?limit=200').then((p) => Object.fromEntries(p.data.map((t) => [t.id, t.name])) as Record<string, string>)
        : Promise.resolve({} as Record<string, string>),
    [props.tenantFilter],
  );

  const apply = (e?: Event) => {
    e?.preventDefault();
    if (f.range === 'custom') {
      const a = new Date(f.from).getTime();
      const b = new Date(f.to).getTime();
      if (!Number.isFinite(a) || !Number.isFinite(b)) return setRangeErr('Enter both ends of the range.');
      if (a >= b) return setRangeErr('"From" must be before "to".');
    }
    setRangeErr(null);
    setApplied({ ...f });
    setTick(tick + 1);
  };

  const chart = useMemo(() => {
    const rows = series.data?.data ?? [];
    const step = bucketSecs(bucket);
    const start = Math.floor(range.from / 1000 / step) * step;
    const end = Math.floor(range.to / 1000 / step) * step;
    const xs: number[] = [];
    for (let t = start; t <= end && xs.length < 2000; t += step) xs.push(t);
    const index = new Map(xs.map((x, i) => [x, i]));
    const label = (r: SeriesRow) => r.tenant ?? (r.key || (applied.groupBy === 'none' ? 'all' : '(none)'));
    const byKey = new Map<string, number>();
    for (const r of rows) if (!r.other) byKey.set(label(r), (byKey.get(label(r)) ?? 0) + r.input_tokens + r.output_tokens);
    const keys = Array.from(byKey.entries())
      .sort((a, b) => b[1] - a[1])
      .map((x) => x[0]);
    const top = keys.slice(0, CHART_KEYS);
    const hasOther = keys.length > top.length || rows.some((r) => r.other);
    const tokenSeries = top.map(() => xs.map(() => 0));
    const other = xs.map(() => 0);
    const spend = xs.map(() => 0);
    for (const r of rows) {
      const i = index.get(Math.floor(r.bucket_start / step) * step);
      if (i === undefined) continue;
      const k = r.other ? -1 : top.indexOf(label(r));
      const tok = r.input_tokens + r.output_tokens;
      if (k >= 0) tokenSeries[k][i] += tok;
      else other[i] += tok;
      spend[i] += r.cost;
    }
    const specs = [
      ...top.map((k, i) => ({ label: applied.groupBy === 'none' ? 'tokens' : `${k} tokens`, color: PALETTE[i % PALETTE.length], fmt: fmtCompact, points: true, fill: true })),
      ...(hasOther ? [{ label: 'other tokens', color: '#94a3b8', fmt: fmtCompact, points: true }] : []),
      { label: 'spend', color: '#0f172a', scale: 'y2' as const, dash: true, fmt: fmtMoney },
    ];
    const data = rows.length ? [xs, ...tokenSeries, ...(hasOther ? [other] : []), spend] : [[]];
    return { specs, data };
  }, [series.data, bucket, range, applied.groupBy]);

  const totalRows = totals.data?.data ?? [];
  const sum = totalRows.reduce(
    (a, r) => ({
      requests: a.requests + r.requests,
      input: a.input + r.input_tokens,
      output: a.output + r.output_tokens,
      cost: a.cost + r.cost,
      wait: a.wait + r.queue_wait_ms,
      errors: a.errors + r.errors,
    }),
    { requests: 0, input: 0, output: 0, cost: 0, wait: 0, errors: 0 },
  );
  const busy = totals.loading || series.loading || recent.loading;
  return (
    <>
      <form class="toolbar" onSubmit={apply} aria-label="Usage filters">
        <label>
          Range{' '}
          <select value={f.range} onChange={(e) => setF({ ...f, range: val(e) })} aria-label="Range">
            {PRESETS.map(([v, l]) => (
              <option key={v} value={v}>
                {l}
              </option>
            ))}
            <option value="custom">Custom…</option>
          </select>
        </label>
        {f.range === 'custom' && (
          <>
            <label>
              From <input type="datetime-local" value={f.from} onInput={(e) => setF({ ...f, from: val(e) })} />
            </label>
            <label>
              To <input type="datetime-local" value={f.to} onInput={(e) => setF({ ...f, to: val(e) })} />
            </label>
          </>
        )}
        <label>
          Group by{' '}
          <select value={f.groupBy} onChange={(e) => setF({ ...f, groupBy: val(e) })} aria-label="Group by">
            <option value="none">nothing</option>
            {props.tenantFilter && <option value="tenant">tenant</option>}
            <option value="model">model</option>
          </select>
        </label>
        {props.tenantFilter && (
          <label>
            Tenant <input value={f.tenant} placeholder="any" size={14} onInput={(e) => setF({ ...f, tenant: val(e) })} />
          </label>
        )}
        <label>
          Model <input value={f.model} placeholder="any" size={14} onInput={(e) => setF({ ...f, model: val(e) })} />
        </label>
        <button type="submit" class="btn primary small">
          Apply
        </button>
        {busy && <span class="spinner" aria-label="Loading" />}
        <span class="muted small">
          {bucket} buckets · {new Date(range.from).toLocaleString()} – {new Date(range.to).toLocaleString()}
        </span>
      </form>
      {rangeErr && (
        <div class="error-box" role="alert">
          {rangeErr}
        </div>
      )}
      <ErrorBox error={series.error ?? totals.error ?? recent.error} />
      <div class="stats-row">
        <div class="stat">
          <div class="stat-label">Requests</div>
          <div class="stat-value num" data-testid="usage-requests">{fmtInt(sum.requests)}</div>
          <div class="stat-sub">{fmtInt(sum.errors)} errors</div>
        </div>
        <div class="stat">
          <div class="stat-label">Tokens</div>
          <div class="stat-value num">{fmtCompact(sum.input + sum.output)}</div>
          <div class="stat-sub">
            {fmtCompact(sum.input)} in · {fmtCompact(sum.output)} out
          </div>
        </div>
        <div class="stat">
          <div class="stat-label">Spend</div>
          <div class="stat-value num">{fmtMoney(sum.cost)}</div>
        </div>
        <div class="stat">
          <div class="stat-label">Avg queue wait</div>
          <div class="stat-value num">{sum.requests ? fmtMs(sum.wait / sum.requests) : '—'}</div>
        </div>
      </div>
      <Panel title="Tokens and spend over time">
        {series.loading && !series.data ? (
          <Loading />
        ) : (
          <Chart
            title={`Tokens per ${bucket} (left) and spend (right, dashed)`}
            series={chart.specs}
            data={chart.data}
            yFmt={fmtCompact}
            y2Fmt={fmtMoney}
            height={220}
            empty="No requests in this range"
          />
        )}
      </Panel>
      <Panel
        title="Totals"
        actions={
          <a class="btn small" href={`${props.base}/totals${qs({ ...common, group_by: applied.groupBy, format: 'csv' })}`} download="usage-totals.csv">
            Download totals CSV
          </a>
        }
      >
        {totals.loading && !totals.data ? (
          <Loading />
        ) : totalRows.length === 0 ? (
          <Empty>No requests in this range.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="data" aria-label="Usage totals">
              <thead>
                <tr>
                  <th>{applied.groupBy === 'none' ? 'Scope' : applied.groupBy === 'tenant' ? 'Tenant' : 'Model'}</th>
                  <th class="num">Requests</th>
                  <th class="num">Errors</th>
                  <th class="num">Rejected</th>
                  <th class="num">Brownout</th>
                  <th class="num">Input tokens</th>
                  <th class="num">Output tokens</th>
                  <th class="num">Cached tokens</th>
                  <th class="num">Spend</th>
                  <th class="num">Avg queue wait</th>
                </tr>
              </thead>
              <tbody>
                {totalRows.map((r) => (
                  <tr key={r.key} data-key={r.tenant ?? r.key}>
                    <td>{r.tenant ?? (r.key || <span class="muted">{applied.groupBy === 'tenant' ? '(no tenant: refused before auth)' : '(none)'}</span>)}</td>
                    <td class="num">{fmtInt(r.requests)}</td>
                    <td class="num">{fmtInt(r.errors)}</td>
                    <td class="num">{fmtInt(r.rejected)}</td>
                    <td class="num">{fmtInt(r.brownout)}</td>
                    <td class="num">{fmtInt(r.input_tokens)}</td>
                    <td class="num">{fmtInt(r.output_tokens)}</td>
                    <td class="num">{fmtInt(r.cached_tokens)}</td>
                    <td class="num">{fmtMoney(r.cost)}</td>
                    <td class="num">{r.requests ? fmtMs(r.queue_wait_ms / r.requests) : '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Panel>
      <Panel
        title="Recent requests (latest 100)"
        actions={
          <a class="btn small" href={`${props.base}/recent${qs({ ...common, limit: 1000, format: 'csv' })}`} download="usage-recent.csv">
            Download recent CSV
          </a>
        }
      >
        {recent.loading && !recent.data ? <Loading /> : <RecentRows rows={recent.data?.data ?? []} showTenant={props.tenantFilter} tenantNames={names.data} />}
      </Panel>
    </>
  );
}
