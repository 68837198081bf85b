//! How budget decisions reach the client: refusals in the OpenAI error shape and the
//! `x-ratelimit-*` headers OpenAI's clients already read. The budget step makes the
//! headers; errors and answers carry them as headers, knowing nothing of budgets.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use obleth_budget::{Denial, LimitKind, RateStatus, Refusal, calendar, from_nanos};

use crate::error::{ApiError, ErrorCode};

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the windows the tenant has.
pub fn headers(status: &RateStatus) -> HeaderMap {
    let mut h = HeaderMap::new();
    write_headers(&mut h, status);
    h
}

fn write_headers(h: &mut HeaderMap, status: &RateStatus) {
    for (suffix, window) in [("requests", status.requests), ("tokens", status.tokens)] {
        let Some(w) = window else { continue };
        for (name, value) in [
            (HEADERS[0], w.limit.to_string()),
            (HEADERS[1], w.remaining.to_string()),
            (HEADERS[2], format_reset(w.reset_ms)),
        ] {
            let name = format!("{name}-{suffix}");
            if let (Ok(n), Ok(v)) = (http::HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                h.insert(n, v);
            }
        }
    }
}

const HEADERS: [&str; 3] = ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"];

/// A reset delay the way OpenAI writes it: `20ms`, `1.5s`, `6m0s`.
pub fn format_reset(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let minutes = ms / 60_000;
    let rest = ms % 60_000;
    let secs = if rest.is_multiple_of(1000) { format!("{}", rest / 1000) } else { format!("{}", rest as f64 / 1000.0) };
    if minutes == 0 { format!("{secs}s") } else { format!("{minutes}m{secs}s") }
}

/// The client's answer to a budget refusal.
pub fn refusal(refusal: Refusal, tokens: u64) -> ApiError {
    match refusal {
        Refusal::Denied(d) => denial(d, tokens),
        Refusal::Unavailable(_) => ApiError::new(
            ErrorCode::BudgetUnavailable,
            "The gateway cannot check this tenant's budget right now; retry shortly.",
        )
        .with_retry_after(Duration::from_secs(1)),
    }
}

fn denial(d: Denial, tokens: u64) -> ApiError {
    let retry = d.retry_after_ms.map(Duration::from_millis);
    let mut e = match d.limit {
        LimitKind::MonthlyBudget | LimitKind::LifetimeBudget => {
            let (which, period, spent, code) = if d.limit == LimitKind::MonthlyBudget {
                ("monthly", "month", d.status.monthly_spent, ErrorCode::MonthlyBudgetExceeded)
            } else {
                ("lifetime", "lifetime", d.status.lifetime_spent, ErrorCode::LifetimeBudgetExceeded)
            };
            let when = match d.resets_at {
                Some(at) => format!("it resets at {}", calendar::iso8601(at)),
                None => "it does not reset; ask an operator to raise it".to_owned(),
            };
            let what = if d.too_large {
                format!("This request's estimated cost exceeds the tenant's whole {which} budget")
            } else {
                format!("This tenant's {which} budget is exhausted (spent {:.6} this {period})", from_nanos(spent))
            };
            ApiError::new(code, format!("{what}; {when}."))
        }
        LimitKind::Tpm if d.too_large => ApiError::new(
            ErrorCode::RequestExceedsTpm,
            format!(
                "This request may use up to {tokens} tokens (prompt plus max_tokens), more than the tenant's \
                 limit of {} tokens per minute; lower max_tokens or the prompt.",
                d.status.tokens.map(|w| w.limit).unwrap_or(0)
            ),
        ),
        LimitKind::Tpm => ApiError::new(
            ErrorCode::TokensPerMinuteExceeded,
            format!(
                "Rate limit reached for tokens per minute: limit {}, remaining {}, requested {tokens}. {}",
                d.status.tokens.map(|w| w.limit).unwrap_or(0),
                d.status.tokens.map(|w| w.remaining).unwrap_or(0),
                retry_text(retry),
            ),
        ),
        LimitKind::Rpm => ApiError::new(
            ErrorCode::RequestsPerMinuteExceeded,
            format!(
                "Rate limit reached for requests per minute: limit {}. {}",
                d.status.requests.map(|w| w.limit).unwrap_or(0),
                retry_text(retry),
            ),
        ),
        LimitKind::InFlight => ApiError::new(
            ErrorCode::InFlightLimitExceeded,
            "This tenant already has its maximum number of requests in flight; retry when one finishes.",
        ),
    };
    e.retry_after = retry;
    e.with_headers(headers(&d.status))
}

fn retry_text(retry: Option<Duration>) -> String {
    match retry {
        Some(d) => format!("Please try again in {}.", format_reset(d.as_millis() as u64)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_format() {
        assert_eq!(format_reset(20), "20ms");
        assert_eq!(format_reset(1_000), "1s");
        assert_eq!(format_reset(1_500), "1.5s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(61_250), "1m1.25s");
    }

    #[test]
    fn headers() {
        let mut h = HeaderMap::new();
        let status = RateStatus {
            tokens: Some(obleth_budget::Window { limit: 1000, remaining: 600, reset_ms: 24_000 }),
            ..RateStatus::default()
        };
        write_headers(&mut h, &status);
        assert_eq!(h["x-ratelimit-limit-tokens"], "1000");
        assert_eq!(h["x-ratelimit-remaining-tokens"], "600");
        assert_eq!(h["x-ratelimit-reset-tokens"], "24s");
        assert!(h.get("x-ratelimit-limit-requests").is_none(), "no request limit, no header");
    }
}
