//! The last minutes of traffic, second by second, for the console's overview.
//!
//! Every finished request passes through [`PulseSink`] on its way to the ledger, which
//! folds it into the second it finished in: requests, tokens, admissions by class, errors
//! by code and a histogram of upstream latency. Ten minutes of seconds are kept (about
//! 150 KiB); older ones are overwritten. Reading never touches the ledger's database, so
//! an open console costs the ledger nothing.
//!
//! Time is injected (`now_ms`), so the ring is tested without clocks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::{AdmissionClass, UsageRecord, UsageSink};

/// Seconds kept.
pub const MAX_WINDOW_SECS: u64 = 600;

/// Upper bounds of the latency histogram's buckets, in milliseconds (the last is open).
const LATENCY_BOUNDS_MS: [u64; 24] =
    [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 5000, 10_000, 30_000];

/// One second of traffic.
#[derive(Debug, Clone, Default)]
struct Second {
    /// Seconds since the epoch.
    at: u64,
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    fast: u64,
    queued: u64,
    brownout: u64,
    /// Error codes (the ledger's `error_type`) and how often each was answered.
    errors: Vec<(Box<str>, u64)>,
    latency: [u32; LATENCY_BOUNDS_MS.len() + 1],
    latency_count: u64,
    latency_sum_ms: u64,
}

/// One second as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PulsePoint {
    /// Start of the second, milliseconds since the epoch.
    pub t: u64,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub fast: u64,
    pub queued: u64,
    pub brownout: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Time from admission to the first token (streams) or the response (others).
    pub latency_ms: Option<LatencySummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub mean: f64,
    /// Upper bound of the histogram bucket holding the median (and the 95th percentile).
    pub p50: f64,
    pub p95: f64,
}

/// The ring of recent seconds.
#[derive(Debug, Default)]
pub struct Pulse {
    ring: Mutex<VecDeque<Second>>,
}

impl Pulse {
    pub fn new() -> Pulse {
        Pulse::default()
    }

    /// Folds a finished request into the second `now_ms` falls in.
    pub fn observe(&self, record: &UsageRecord, now_ms: u64) {
        let at = now_ms / 1000;
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let second = match ring.back_mut() {
            Some(s) if s.at == at => s,
            // A clock that stepped back: count it in the newest second rather than
            // reordering the ring.
            Some(s) if s.at > at => s,
            _ => {
                if ring.len() as u64 >= MAX_WINDOW_SECS {
                    ring.pop_front();
                }
                ring.push_back(Second { at, ..Second::default() });
                ring.back_mut().unwrap_or_else(|| unreachable!("just pushed"))
            }
        };
        fold(second, record);
    }

    /// The last `window` seconds before the one `now_ms` falls in, oldest first, one point
    /// per second (zeros where nothing finished).
    pub fn window(&self, window: u64, now_ms: u64) -> Vec<PulsePoint> {
        let window = window.clamp(1, MAX_WINDOW_SECS);
        let end = now_ms / 1000;
        let start = end.saturating_sub(window);
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut seconds = ring.iter().filter(|s| s.at >= start && s.at < end).peekable();
        (start..end)
            .map(|at| match seconds.next_if(|s| s.at == at) {
                Some(s) => point(s),
                None => point(&Second { at, ..Second::default() }),
            })
            .collect()
    }

    /// The last full second.
    pub fn last(&self, now_ms: u64) -> Option<PulsePoint> {
        self.window(1, now_ms).pop()
    }
}

fn fold(s: &mut Second, r: &UsageRecord) {
    s.requests += 1;
    if let Some(u) = &r.usage {
        s.input_tokens += u.input_tokens;
        s.output_tokens += u.output_tokens;
    }
    match r.admission_class {
        AdmissionClass::Fast => s.fast += 1,
        AdmissionClass::Queued => s.queued += 1,
        AdmissionClass::Brownout => s.brownout += 1,
        AdmissionClass::CacheHit | AdmissionClass::Rejected => {}
    }
    if let Some(code) = &r.error_type {
        match s.errors.iter_mut().find(|(c, _)| **c == **code) {
            Some((_, n)) => *n += 1,
            None => s.errors.push((code.as_str().into(), 1)),
        }
    }
    if let Some(admitted) = r.admitted_at {
        let answered = r.first_token_at.unwrap_or(r.finished_at);
        let ms = answered.saturating_sub(admitted).max(0) as u64;
        let bucket = LATENCY_BOUNDS_MS.iter().position(|&b| ms <= b).unwrap_or(LATENCY_BOUNDS_MS.len());
        s.latency[bucket] += 1;
        s.latency_count += 1;
        s.latency_sum_ms += ms;
    }
}

fn point(s: &Second) -> PulsePoint {
    PulsePoint {
        t: s.at * 1000,
        requests: s.requests,
        input_tokens: s.input_tokens,
        output_tokens: s.output_tokens,
        fast: s.fast,
        queued: s.queued,
        brownout: s.brownout,
        errors: s.errors.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        latency_ms: (s.latency_count > 0).then(|| LatencySummary {
            mean: s.latency_sum_ms as f64 / s.latency_count as f64,
            p50: quantile(&s.latency, s.latency_count, 0.5),
            p95: quantile(&s.latency, s.latency_count, 0.95),
        }),
    }
}

/// The upper bound of the bucket holding quantile `q` (the open bucket reports the last
/// bound: "above 30 s").
fn quantile(hist: &[u32], count: u64, q: f64) -> f64 {
    let rank = ((count as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (i, &n) in hist.iter().enumerate() {
        seen += u64::from(n);
        if seen >= rank {
            return LATENCY_BOUNDS_MS[i.min(LATENCY_BOUNDS_MS.len() - 1)] as f64;
        }
    }
    LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1] as f64
}

/// A [`UsageSink`] that counts each record in a [`Pulse`] and hands it on.
pub struct PulseSink {
    pub pulse: Arc<Pulse>,
    pub inner: Arc<dyn UsageSink>,
}

impl UsageSink for PulseSink {
    fn record(&self, record: UsageRecord) {
        self.pulse.observe(&record, crate::now_millis().max(0) as u64);
        self.inner.record(record);
    }

    fn accepting(&self) -> bool {
        self.inner.accepting()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;

    fn record(class: AdmissionClass, admitted: i64, first: Option<i64>, error: Option<&str>) -> UsageRecord {
        UsageRecord {
            admitted_at: Some(admitted),
            first_token_at: first,
            finished_at: admitted + 500,
            admission_class: class,
            usage: Some(Usage { input_tokens: 10, output_tokens: 5, cached_tokens: 0 }),
            error_type: error.map(str::to_owned),
            ..UsageRecord::default()
        }
    }

    #[test]
    fn seconds_are_counted_apart_and_gaps_are_zero() {
        let p = Pulse::new();
        p.observe(&record(AdmissionClass::Fast, 10_000, Some(10_020), None), 10_100);
        p.observe(&record(AdmissionClass::Queued, 10_000, Some(10_040), None), 10_900);
        p.observe(&record(AdmissionClass::Brownout, 12_000, None, Some("upstream_timeout")), 12_500);
        let w = p.window(4, 13_200);
        assert_eq!(w.iter().map(|x| x.t).collect::<Vec<_>>(), vec![9_000, 10_000, 11_000, 12_000]);
        assert_eq!(w.iter().map(|x| x.requests).collect::<Vec<_>>(), vec![0, 2, 0, 1]);
        assert_eq!((w[1].fast, w[1].queued, w[1].brownout), (1, 1, 0));
        assert_eq!((w[1].input_tokens, w[1].output_tokens), (20, 10));
        assert_eq!(w[3].errors.get("upstream_timeout"), Some(&1));
        let lat = w[1].latency_ms.expect("two admitted requests");
        assert_eq!(lat.mean, 30.0);
        assert_eq!((lat.p50, lat.p95), (20.0, 50.0));
        // Without a first token, latency runs to the end of the response.
        assert_eq!(w[3].latency_ms.map(|l| l.mean), Some(500.0));
        assert!(w[0].latency_ms.is_none());
        // The second in progress is not shown.
        assert_eq!(p.last(12_999).map(|x| x.requests), Some(0));
        assert_eq!(p.last(13_000).map(|x| x.requests), Some(1));
    }

    #[test]
    fn the_ring_keeps_ten_minutes() {
        let p = Pulse::new();
        for s in 0..(MAX_WINDOW_SECS + 50) {
            p.observe(&record(AdmissionClass::Fast, 0, Some(1), None), s * 1000);
        }
        assert_eq!(p.ring.lock().map(|r| r.len()).unwrap_or(0) as u64, MAX_WINDOW_SECS);
        let w = p.window(10_000, (MAX_WINDOW_SECS + 50) * 1000);
        assert_eq!(w.len() as u64, MAX_WINDOW_SECS);
        assert!(w.iter().all(|x| x.requests == 1));
    }

    #[test]
    fn refused_requests_count_but_have_no_latency() {
        let p = Pulse::new();
        let refused = UsageRecord {
            error_type: Some("rate_limited".into()),
            status: 429,
            finished_at: 5_000,
            ..UsageRecord::default()
        };
        p.observe(&refused, 5_000);
        p.observe(&refused, 5_001);
        let w = p.window(1, 6_000);
        assert_eq!(w[0].requests, 2);
        assert_eq!(w[0].errors.get("rate_limited"), Some(&2));
        assert!(w[0].latency_ms.is_none());
        assert_eq!((w[0].fast, w[0].queued), (0, 0));
    }
}
