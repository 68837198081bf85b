import type { UsageRow } from '../types';
import { Badge, Empty } from './ui';
import { fmtInt, fmtMoney, fmtMs, fmtTime } from '../format';

/** Unix ms of a row's arrival (the ledger has seconds and ms columns). */
export function rowTime(r: UsageRow): number {
  if (typeof r.received_at_ms === 'number') return r.received_at_ms;
  return r.received_at < 1e12 ? r.received_at * 1000 : r.received_at;
}

function rowDuration(r: UsageRow): number | null {
  if (typeof r.duration_ms === 'number') return r.duration_ms;
  const end = r.finished_at_ms ?? r.finished_at;
  return typeof end === 'number' ? end - rowTime(r) : null;
}

export function RecentRows(props: { rows: UsageRow[]; showTenant?: boolean; tenantNames?: Record<string, string>; empty?: string }) {
  if (!props.rows.length) return <Empty>{props.empty ?? 'No requests in this range.'}</Empty>;
  return (
    <div class="table-wrap">
      <table class="data" aria-label="Recent requests">
        <thead>
          <tr>
            <th>Received</th>
            {props.showTenant && <th>Tenant</th>}
            <th>Key</th>
            <th>Model</th>
            <th>Route</th>
            <th>Status</th>
            <th>Class</th>
            <th class="num">In tokens</th>
            <th class="num">Out tokens</th>
            <th class="num">Cost</th>
            <th class="num">Queue wait</th>
            <th class="num">TTFT</th>
            <th class="num">Duration</th>
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => (
            <tr key={r.request_id} title={`request ${r.request_id}`}>
              <td class="nowrap">{fmtTime(rowTime(r))}</td>
              {props.showTenant && <td>{r.tenant ?? (r.tenant_id ? props.tenantNames?.[r.tenant_id] ?? r.tenant_id : '—')}</td>}
              <td>
                <code>{r.key_prefix || '—'}</code>
              </td>
              <td>{r.model || r.requested_model || '—'}</td>
              <td>{r.route}</td>
              <td class="nowrap">
                <Badge tone={r.status < 400 ? 'ok' : r.status === 429 ? 'warn' : 'bad'}>{r.status}</Badge>
                {r.error_type ? <span class="muted small">{r.error_type}</span> : null}
              </td>
              <td>{r.admission_class}</td>
              <td class="num">{fmtInt(r.input_tokens ?? r.usage?.input_tokens ?? 0)}</td>
              <td class="num">{fmtInt(r.output_tokens ?? r.usage?.output_tokens ?? 0)}</td>
              <td class="num">{fmtMoney(r.cost)}</td>
              <td class="num">{fmtMs(r.queue_wait_ms)}</td>
              <td class="num">{fmtMs(r.ttft_ms ?? null)}</td>
              <td class="num">{fmtMs(rowDuration(r))}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
