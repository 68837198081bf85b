import type { TenantUsage } from '../types';
import { Meter } from './ui';
import { fmtInt, fmtMoney, fmtTime } from '../format';

/** A tenant's live use of its limits (rate windows, in flight, spend). */
export function UsageMeters(props: { u: TenantUsage }) {
  const u = props.u.usage;
  const win = (w: { limit: number; remaining: number } | null) => (w ? { used: Math.max(0, w.limit - w.remaining), limit: w.limit } : null);
  const tpm = win(u.tokens_per_minute);
  const rpm = win(u.requests_per_minute);
  return (
    <div class="meters" data-testid="usage-meters">
      {tpm ? <Meter label="Tokens this minute" used={tpm.used} limit={tpm.limit} fmt={fmtInt} /> : <Meter label="Tokens per minute" used={0} limit={null} fmt={() => '—'} />}
      {rpm ? <Meter label="Requests this minute" used={rpm.used} limit={rpm.limit} fmt={fmtInt} /> : <Meter label="Requests per minute" used={0} limit={null} fmt={() => '—'} />}
      <Meter label="In flight" used={u.in_flight} limit={u.max_in_flight} fmt={fmtInt} />
      <Meter label={`Spend in ${u.month}`} used={u.monthly_spend} limit={u.monthly_budget} fmt={fmtMoney} />
      <Meter label="Lifetime spend" used={u.lifetime_spend} limit={u.lifetime_budget} fmt={fmtMoney} />
      <p class="muted small">
        Monthly budget resets {fmtTime(u.monthly_resets_at)} · budget store {props.u.store ?? '—'}
        {u.expired_reservations ? ` · ${u.expired_reservations} expired reservations` : ''}
      </p>
    </div>
  );
}
