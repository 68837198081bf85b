import { useRoute } from '../router';
import { UsageView } from '../components/UsageView';

export function Usage() {
  const { query } = useRoute();
  return (
    <div class="page">
      <div class="page-head">
        <h1>Usage</h1>
        <span class="muted">From the usage ledger: every finished request, its tokens, cost and queue wait.</span>
      </div>
      <UsageView base="/api/v1/usage" tenantFilter initialTenant={query.get('tenant') ?? ''} />
    </div>
  );
}
