export interface Quota {
  tpm?: number | null;
  rpm?: number | null;
  max_in_flight?: number | null;
  monthly_budget?: number | null;
  lifetime_budget?: number | null;
  fail_closed?: boolean;
  tool_calls_per_minute?: number | null;
  tool_calls_in_flight?: number | null;
}

export interface Tenant {
  id: string;
  name: string;
  weight: number;
  group: string | null;
  allowed_models: string[];
  disabled: boolean;
  never_degrade: boolean;
  quota: Quota;
  created_at: number;
  updated_at: number;
}

export interface ApiKey {
  id: string;
  tenant_id: string;
  name: string | null;
  prefix: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  secret?: string;
}

export interface Group {
  name: string;
  weight: number;
  reserved_slots: number | null;
  max_slots: number | null;
  created_at: number;
  updated_at: number;
}

export interface Model {
  model_name: string;
  upstream_model: string | null;
  api_base: string | null;
  has_api_key: boolean;
  input_cost_per_token: number;
  output_cost_per_token: number;
  context_window: number | null;
  enabled: boolean;
  admission_weight: number;
  max_in_flight: number | null;
  tags: string[];
  created_at: number;
  updated_at: number;
}

export interface Window {
  limit: number;
  remaining: number;
  reset_ms: number;
}

export interface TenantUsage {
  tenant_id?: string;
  tenant?: string;
  store?: string;
  quota: Quota;
  usage: {
    tokens_per_minute: Window | null;
    requests_per_minute: Window | null;
    in_flight: number;
    max_in_flight: number | null;
    month: string;
    monthly_spend: number;
    monthly_budget: number | null;
    monthly_resets_at: number;
    lifetime_spend: number;
    lifetime_budget: number | null;
    expired_reservations: number;
  };
}

export interface StatsPoint {
  t: number;
  requests: number;
  input_tokens: number;
  output_tokens: number;
  fast: number;
  queued: number;
  brownout: number;
  errors: Record<string, number>;
  latency_ms: { mean: number; p50: number; p95: number } | null;
}

export interface Stats {
  interval_ms: number;
  points: StatsPoint[];
}

export interface LensGroup {
  name: string;
  weight: number;
  reserved_slots: number | null;
  max_slots: number | null;
  pool_reserved_slots?: number | null;
  pool_max_slots?: number | null;
  cap?: number | null;
  in_flight: number;
  queued: number;
  share_score: number;
  target_share: number;
  actual_share: number;
}

export interface LensTenant {
  name: string;
  group: string | null;
  weight: number;
  queued: number;
  in_flight: number;
  share_score: number;
  served_tokens: number;
  target_share: number;
  actual_share: number;
}

export interface LensFrame {
  at: number;
  mode: string;
  slots_total: number;
  slots_used: number;
  queued: number;
  next: { tenant: string; group: string | null; rule?: string; reason: string } | null;
  groups: LensGroup[];
  tenants: LensTenant[];
  others?: { tenants: number; queued: number; in_flight: number; target_share: number; actual_share: number } | null;
  tenant_count?: number;
  models?: { name: string; in_flight: number; queued: number; cap: number | null }[];
  admissions?: { fast: number; queued: number; brownout: number; refused_queue_full: number; cancelled: number };
  last?: StatsPoint | null;
}

export interface UsageTotals {
  key: string;
  tenant?: string | null;
  requests: number;
  errors: number;
  rejected: number;
  brownout: number;
  input_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  cost: number;
  queue_wait_ms: number;
}

export interface SeriesRow extends UsageTotals {
  bucket_start: number;
  /** The keys beyond the series' `top`, summed (the server's "other" rows). */
  other?: boolean;
}

/** A ledger row as /usage/recent returns it (flat columns; older shapes tolerated). */
export interface UsageRow {
  request_id: string;
  received_at: number;
  received_at_ms?: number;
  admitted_at_ms?: number | null;
  first_token_at_ms?: number | null;
  finished_at_ms?: number;
  finished_at?: number;
  duration_ms?: number;
  ttft_ms?: number | null;
  tenant_id: string | null;
  tenant?: string | null;
  key_prefix: string | null;
  group_name?: string | null;
  group?: string | null;
  route: string;
  model: string | null;
  requested_model?: string | null;
  input_tokens?: number;
  output_tokens?: number;
  cached_tokens?: number;
  usage?: { input_tokens?: number; output_tokens?: number; cached_tokens?: number } | null;
  cost: number;
  queue_wait_ms: number;
  admission_class: string;
  status: number;
  error_type: string | null;
  streamed: boolean | number;
}

export interface AuditEntry {
  id: string | number;
  at: number;
  actor: string;
  action: string;
  resource_kind: string;
  resource_id: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

export interface Readyz {
  status: string;
  store?: string;
  budget?: string;
  ledger?: string;
  [k: string]: unknown;
}

export interface Cluster {
  enabled: boolean;
  pod?: string;
  cluster_slots?: number;
  slots?: number;
  connected?: boolean;
  pods?: { pod: string; slots: number }[];
}
