//! The ledger's queries over the admin API: totals, time series and recent rows, served
//! from whichever ledger is configured, and the ledger's own status.
//!
//! Times are milliseconds since the epoch, RFC 3339 (`2026-11-21T00:00:00Z`), or a
//! duration back from now (`24h`, `7d`). Tenants are named by name or id; rows carry the
//! id, and answers grouped by tenant add the name.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use obleth_core::ledger::{Bucket, Filter, GroupBy, QueryError, SeriesPoint, SeriesQuery, UsageLedger};
use serde_json::{Value, json};

use crate::extract::Params;
use crate::{AdminState, ApiError, ErrorCode, csv};

/// The most rows `recent` returns, the most buckets a series may have, and the longest
/// range any query may span: every query the console can make is bounded, so no page can
/// make the ledger's database scan without end.
const MAX_RECENT: u32 = 1000;
const MAX_BUCKETS: u64 = 10_000;
const MAX_RANGE_MS: u64 = 366 * 86_400_000;
/// The most keys a series keeps of its own with `top` (a chart shows a handful).
const MAX_TOP: u32 = 100;

/// The parameters of a usage query. Each route takes only its own (see `openapi.rs`);
/// any other, a repeated one or a malformed value is a 400 naming it.
#[derive(Debug, Default)]
pub(crate) struct UsageParams {
    from: Option<String>,
    to: Option<String>,
    tenant: Option<String>,
    model: Option<String>,
    group_by: Option<String>,
    bucket: Option<String>,
    limit: Option<u32>,
    /// Series: keep the `top` keys with the most tokens, sum the others.
    top: Option<u32>,
    /// `json` (default) or `csv`.
    csv: bool,
}

impl UsageParams {
    /// Takes the range and filters, plus the route's `extra` parameters. A tenant's own
    /// view (`scope`) names its tenant itself: a `tenant` parameter is refused.
    fn take(mut params: Params, extra: &[&str], scope: Option<&str>) -> Result<UsageParams, ApiError> {
        let tenant = params.take("tenant");
        if scope.is_some() && tenant.is_some() {
            return Err(ApiError::invalid("tenant", "is set by your session: this view shows only your tenant"));
        }
        let mut p = UsageParams {
            from: params.take("from"),
            to: params.take("to"),
            tenant: scope.map(str::to_owned).or(tenant),
            model: params.take("model"),
            ..UsageParams::default()
        };
        if extra.contains(&"format") {
            p.csv = match params.take("format").as_deref() {
                None | Some("json") => false,
                Some("csv") => true,
                Some(_) => return Err(ApiError::invalid("format", "must be json or csv")),
            };
        }
        if extra.contains(&"group_by") {
            p.group_by = params.take("group_by");
        }
        if extra.contains(&"bucket") {
            p.bucket = params.take("bucket");
        }
        if extra.contains(&"limit") {
            p.limit = params.u32_in("limit", 1, MAX_RECENT)?;
        }
        if extra.contains(&"top") {
            p.top = params.u32_in("top", 1, MAX_TOP)?;
        }
        params.finish()?;
        Ok(p)
    }
}

pub(crate) async fn totals(State(s): State<AdminState>, params: Params) -> Result<Response, ApiError> {
    totals_for(&s, params, None).await
}

pub(crate) async fn series(State(s): State<AdminState>, params: Params) -> Result<Json<Value>, ApiError> {
    series_for(&s, params, None).await
}

pub(crate) async fn recent(State(s): State<AdminState>, params: Params) -> Result<Response, ApiError> {
    recent_for(&s, params, None).await
}

/// Totals, of one tenant only when `scope` names it.
pub(crate) async fn totals_for(s: &AdminState, params: Params, scope: Option<&str>) -> Result<Response, ApiError> {
    let p = UsageParams::take(params, &["group_by", "format"], scope)?;
    let ledger = ledger(s)?;
    let filter = filter(s, &p).await?;
    let group_by = group_by(&p)?;
    let mut data = ledger.totals(&filter, group_by).await.map_err(ledger_error)?;
    let names = tenant_names(s, group_by).await?;
    let data: Vec<Value> = data
        .drain(..)
        .map(|t| {
            let mut v = json!(t);
            if let Some(name) = names.get(&t.key) {
                v["tenant"] = json!(name);
            }
            v
        })
        .collect();
    if p.csv {
        return Ok(csv::attachment("usage-totals.csv", &data));
    }
    Ok(Json(json!({
        "from": filter.from_ms, "to": filter.to_ms, "group_by": group_by, "backend": ledger.kind(), "data": data,
    }))
    .into_response())
}

/// A time series, of one tenant only when `scope` names it.
pub(crate) async fn series_for(s: &AdminState, params: Params, scope: Option<&str>) -> Result<Json<Value>, ApiError> {
    let p = UsageParams::take(params, &["group_by", "bucket", "top"], scope)?;
    let ledger = ledger(s)?;
    let filter = filter(s, &p).await?;
    let group_by = group_by(&p)?;
    let bucket = match p.bucket.as_deref() {
        None => Bucket::Hour,
        Some(b) => Bucket::parse(b).ok_or_else(|| ApiError::invalid("bucket", "must be minute, hour or day"))?,
    };
    let buckets = (filter.to_ms - filter.from_ms) / 1000 / bucket.seconds();
    if buckets > MAX_BUCKETS {
        return Err(ApiError::invalid(
            "bucket",
            &format!("the range spans {buckets} buckets; at most {MAX_BUCKETS}: use a wider bucket or a shorter range"),
        ));
    }
    let query = SeriesQuery { filter: filter.clone(), bucket, group_by };
    let points = ledger.series(&query).await.map_err(ledger_error)?;
    let (points, others) = match p.top {
        Some(n) if group_by != GroupBy::None => keep_top(points, n as usize),
        _ => (points, Vec::new()),
    };
    let names = tenant_names(s, group_by).await?;
    let mut data: Vec<Value> = points
        .into_iter()
        .map(|pt| {
            let mut v = json!(pt);
            if let Some(name) = names.get(&pt.totals.key) {
                v["tenant"] = json!(name);
            }
            v
        })
        .collect();
    data.extend(others.into_iter().map(|pt| {
        let mut v = json!(pt);
        v["other"] = json!(true);
        v
    }));
    Ok(Json(json!({
        "from": filter.from_ms, "to": filter.to_ms, "bucket": bucket, "group_by": group_by, "data": data,
    })))
}

/// Keeps the points of the `n` keys with the most tokens (input and output) over the
/// series, and sums the others' per bucket (key ""): a chart of the top keys and "others"
/// gets what it draws instead of every tenant's every bucket (7.7 MB of JSON for 7 days of
/// 200 tenants by hour). Spend and counts still add up to the whole.
fn keep_top(points: Vec<SeriesPoint>, n: usize) -> (Vec<SeriesPoint>, Vec<SeriesPoint>) {
    let mut tokens: HashMap<&str, u64> = HashMap::new();
    for p in &points {
        *tokens.entry(p.totals.key.as_str()).or_default() += p.totals.input_tokens + p.totals.output_tokens;
    }
    let mut ranked: Vec<(&str, u64)> = tokens.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let kept: std::collections::HashSet<String> = ranked.iter().take(n).map(|(k, _)| (*k).to_owned()).collect();
    let mut others: std::collections::BTreeMap<u64, SeriesPoint> = std::collections::BTreeMap::new();
    let mut own = Vec::with_capacity(points.len().min(n * 1024));
    for p in points {
        if kept.contains(&p.totals.key) {
            own.push(p);
        } else {
            let bucket = p.bucket_start;
            others
                .entry(bucket)
                .or_insert_with(|| SeriesPoint { bucket_start: bucket, ..SeriesPoint::default() })
                .totals
                .add(&p.totals);
        }
    }
    (own, others.into_values().collect())
}

/// The newest rows, of one tenant only when `scope` names it.
pub(crate) async fn recent_for(s: &AdminState, params: Params, scope: Option<&str>) -> Result<Response, ApiError> {
    let p = UsageParams::take(params, &["limit", "format"], scope)?;
    let ledger = ledger(s)?;
    let limit = p.limit.unwrap_or(50);
    let filter = filter(s, &p).await?;
    let rows = ledger.recent(&filter, limit).await.map_err(ledger_error)?;
    if p.csv {
        let rows: Vec<Value> = rows.iter().map(|r| json!(r)).collect();
        return Ok(csv::attachment("usage-recent.csv", &rows));
    }
    Ok(Json(json!({ "data": rows })).into_response())
}

pub(crate) async fn status(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(ledger(&s)?.status())))
}

fn ledger(s: &AdminState) -> Result<&dyn UsageLedger, ApiError> {
    s.ledger
        .as_deref()
        .ok_or_else(|| ApiError::new(ErrorCode::LedgerUnavailable, "This process keeps no usage ledger."))
}

fn ledger_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Invalid(m) => ApiError::new(ErrorCode::InvalidValue, m),
        QueryError::Unavailable(m) => {
            ApiError::new(ErrorCode::LedgerUnavailable, format!("The usage ledger cannot answer: {m}"))
        }
    }
}

fn group_by(p: &UsageParams) -> Result<GroupBy, ApiError> {
    GroupBy::parse(p.group_by.as_deref().unwrap_or("none"))
        .ok_or_else(|| ApiError::invalid("group_by", "must be none, tenant or model"))
}

async fn filter(s: &AdminState, p: &UsageParams) -> Result<Filter, ApiError> {
    let now = now_ms();
    let to = match &p.to {
        Some(t) => parse_time("to", t, now)?,
        None => now + 1,
    };
    let from = match &p.from {
        Some(f) => parse_time("from", f, now)?,
        None => to.saturating_sub(24 * 3_600_000),
    };
    if from >= to {
        return Err(ApiError::invalid("from", "must be before to"));
    }
    if to - from > MAX_RANGE_MS {
        return Err(ApiError::invalid("from", "the range may span at most 366 days"));
    }
    let tenant_id = match &p.tenant {
        Some(t) => Some(s.store.get_tenant(t).await?.id),
        None => None,
    };
    Ok(Filter { from_ms: from, to_ms: to, tenant_id, model: p.model.clone() })
}

/// Tenant ids to names, when the answer is grouped by tenant.
async fn tenant_names(s: &AdminState, group_by: GroupBy) -> Result<HashMap<String, String>, ApiError> {
    if group_by != GroupBy::Tenant {
        return Ok(HashMap::new());
    }
    Ok(s.store.list_tenants().await?.into_iter().map(|t| (t.id, t.name)).collect())
}

pub(crate) fn parse_time(field: &str, v: &str, now: u64) -> Result<u64, ApiError> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(ms);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(v) {
        return Ok(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64));
    }
    if let Ok(d) = humantime::parse_duration(v) {
        return Ok(now.saturating_sub(d.as_millis() as u64));
    }
    Err(ApiError::invalid(
        field,
        &format!("'{v}' is not milliseconds since the epoch, an RFC 3339 time or a duration back from now (e.g. 24h)"),
    ))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64
}
