//! Hourly rollups: how a usage query over a long range is answered from per-hour sums
//! instead of every row.
//!
//! Both backends keep, beside the rows, one sum per (hour, tenant, model), updated as
//! rows are inserted. A query's range is cut into whole hours, answered from the sums,
//! and the partial hours at either end (and, for ClickHouse, the hours before its rollup
//! existed), answered from the rows; [`merge_series`] and [`merge_totals`] add the parts
//! up. Minute buckets never use the sums: they are for short ranges, where the rows are
//! few. The cut is pure, so it is tested here once for both backends.

use std::collections::BTreeMap;

use crate::{Bucket, Filter, SeriesPoint, Totals};

const HOUR_MS: u64 = 3_600_000;

/// The sums' columns added up, named as the rows' aggregates (the same SQL in SQLite and
/// ClickHouse).
pub(crate) const SUMS: &str = "sum(requests) AS requests, sum(errors) AS errors, sum(rejected) AS rejected, \
    sum(brownout) AS brownout, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, \
    sum(cached_tokens) AS cached_tokens, sum(cost) AS cost, sum(queue_wait_ms) AS queue_wait_ms";

/// Which part of a query is read from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Ranges read from the rows (at most two: before and after the whole hours).
    pub raw: Vec<Filter>,
    /// Whole hours read from the sums (hour-aligned bounds).
    pub hours: Option<Filter>,
}

/// Cuts `filter` into rows and whole hours, using the sums only from `since_ms` on (the
/// first hour they are complete for; `u64::MAX` when there are none).
pub(crate) fn plan(filter: &Filter, bucket: Option<Bucket>, since_ms: u64) -> Plan {
    let whole = Plan { raw: vec![filter.clone()], hours: None };
    if bucket == Some(Bucket::Minute) {
        return whole;
    }
    let first = filter
        .from_ms
        .div_ceil(HOUR_MS)
        .saturating_mul(HOUR_MS)
        .max(since_ms.div_ceil(HOUR_MS).saturating_mul(HOUR_MS));
    let last = filter.to_ms / HOUR_MS * HOUR_MS;
    if first >= last {
        return whole;
    }
    let mut raw = Vec::with_capacity(2);
    if filter.from_ms < first {
        raw.push(Filter { to_ms: first, ..filter.clone() });
    }
    if last < filter.to_ms {
        raw.push(Filter { from_ms: last, ..filter.clone() });
    }
    Plan { raw, hours: Some(Filter { from_ms: first, to_ms: last, ..filter.clone() }) }
}

impl Plan {
    /// Each part's filter, with whether it reads the sums.
    pub(crate) fn parts(&self) -> impl Iterator<Item = (&Filter, bool)> {
        self.raw.iter().map(|f| (f, false)).chain(self.hours.iter().map(|f| (f, true)))
    }
}

/// Adds up points of the same bucket and key; ordered by bucket, then key.
pub(crate) fn merge_series(parts: impl IntoIterator<Item = SeriesPoint>) -> Vec<SeriesPoint> {
    let mut by: BTreeMap<(u64, String), Totals> = BTreeMap::new();
    for p in parts {
        let slot = by.entry((p.bucket_start, p.totals.key.clone())).or_default();
        slot.key = p.totals.key.clone();
        slot.add(&p.totals);
    }
    by.into_iter()
        .filter(|(_, t)| t.requests > 0)
        .map(|((bucket_start, _), totals)| SeriesPoint { bucket_start, totals })
        .collect()
}

/// Adds up totals of the same key; ordered by cost (highest first), then key.
pub(crate) fn merge_totals(parts: impl IntoIterator<Item = Totals>) -> Vec<Totals> {
    let mut by: BTreeMap<String, Totals> = BTreeMap::new();
    for t in parts {
        let slot = by.entry(t.key.clone()).or_default();
        slot.key = t.key.clone();
        slot.add(&t);
    }
    let mut out: Vec<Totals> = by.into_values().filter(|t| t.requests > 0).collect();
    out.sort_by(|a, b| b.cost.total_cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from_ms: u64, to_ms: u64) -> Filter {
        Filter { from_ms, to_ms, ..Filter::default() }
    }

    #[test]
    fn whole_hours_come_from_the_sums_and_the_ends_from_the_rows() {
        let h = HOUR_MS;
        // 10:20 to 13:40: rows for 10:20-11:00 and 13:00-13:40, sums for 11:00-13:00.
        let p = plan(&range(10 * h + h / 3, 13 * h + 2 * h / 3), Some(Bucket::Hour), 0);
        assert_eq!(p.raw, vec![range(10 * h + h / 3, 11 * h), range(13 * h, 13 * h + 2 * h / 3)]);
        assert_eq!(p.hours, Some(range(11 * h, 13 * h)));
        // Aligned: sums only.
        let p = plan(&range(2 * h, 5 * h), Some(Bucket::Day), 0);
        assert_eq!((p.raw, p.hours), (vec![], Some(range(2 * h, 5 * h))));
        // No whole hour inside: rows only.
        let p = plan(&range(10 * h + 1, 11 * h + 5), None, 0);
        assert_eq!((p.raw, p.hours), (vec![range(10 * h + 1, 11 * h + 5)], None));
        // Minute buckets: rows only.
        assert_eq!(plan(&range(0, 100 * h), Some(Bucket::Minute), 0).hours, None);
    }

    #[test]
    fn hours_before_the_sums_existed_come_from_the_rows() {
        let h = HOUR_MS;
        // Sums complete from 05:00 (the rollup was created at 04:10).
        let p = plan(&range(h, 9 * h), None, 4 * h + h / 6);
        assert_eq!(p.raw, vec![range(h, 5 * h)]);
        assert_eq!(p.hours, Some(range(5 * h, 9 * h)));
        // No sums at all.
        assert_eq!(plan(&range(h, 9 * h), None, u64::MAX).raw, vec![range(h, 9 * h)]);
        // A filter's tenant and model carry over to every part.
        let f = Filter { tenant_id: Some("t".into()), model: Some("m".into()), ..range(h / 2, 3 * h + 1) };
        let p = plan(&f, None, 0);
        let parts = p.raw.iter().chain(&p.hours);
        assert!(
            parts.clone().count() == 3
                && parts.clone().all(|r| r.tenant_id.as_deref() == Some("t") && r.model.as_deref() == Some("m"))
        );
    }

    #[test]
    fn parts_add_up_by_bucket_and_key() {
        let t = |key: &str, requests: u64, cost: f64| Totals { key: key.into(), requests, cost, ..Totals::default() };
        let p = |bucket_start, totals| SeriesPoint { bucket_start, totals };
        let merged = merge_series([
            p(3600, t("b", 1, 1.0)),
            p(0, t("a", 2, 2.0)),
            p(3600, t("b", 3, 0.5)),
            p(0, t("z", 0, 0.0)),
        ]);
        assert_eq!(merged, vec![p(0, t("a", 2, 2.0)), p(3600, t("b", 4, 1.5))]);
        let totals = merge_totals([t("a", 1, 1.0), t("b", 1, 3.0), t("a", 1, 1.5)]);
        assert_eq!(totals, vec![t("b", 1, 3.0), t("a", 2, 2.5)]);
    }
}
