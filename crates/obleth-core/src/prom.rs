//! Metric families rendered by hand in the Prometheus text format, with a bounded number
//! of series.
//!
//! The `metrics` registry keeps every series it was ever given, so per-tenant gauges
//! set through it outlive their tenant and grow with the number of tenants. Families
//! keyed by tenant or group are therefore rendered at scrape time from live state: only
//! the `limit` most active entries get series of their own ([`split`]), the rest are
//! summed into one series labelled [`OTHER`], and whatever is gone is simply not there.

use std::cmp::Ordering;
use std::fmt::Write;

/// The `tenant` (or `group`) label of the series that sums those without series of their
/// own. A tenant or group that is really called `other` is always counted in it, so that
/// no two series carry the same labels.
pub const OTHER: &str = "other";

/// Entries with series of their own (by name, so that scrapes list them in a stable
/// order) and the rest.
pub struct Split<'a, T> {
    pub own: Vec<&'a T>,
    pub rest: Vec<&'a T>,
}

impl<T> Split<'_, T> {
    pub fn sum(&self, value: impl Fn(&T) -> f64) -> f64 {
        // From +0: `Sum` starts at -0, which an empty `other` would show.
        self.rest.iter().fold(0.0, |sum, x| sum + value(x))
    }
}

/// The `limit` most active of `items` (by `activity`: work, then recent share; ties by
/// name), and the rest. Linear in the number of items plus `limit log limit`.
pub fn split<'a, T>(
    items: &'a [T],
    limit: usize,
    name: impl Fn(&T) -> &str,
    activity: impl Fn(&T) -> (u64, f64),
) -> Split<'a, T> {
    let (mut own, mut rest): (Vec<&T>, Vec<&T>) = items.iter().partition(|x| name(x) != OTHER);
    if own.len() > limit {
        let most_active_first = |a: &&T, b: &&T| -> Ordering {
            let ((wa, sa), (wb, sb)) = (activity(a), activity(b));
            wb.cmp(&wa).then(sb.total_cmp(&sa)).then_with(|| name(a).cmp(name(b)))
        };
        if limit > 0 {
            own.select_nth_unstable_by(limit - 1, most_active_first);
        }
        rest.extend(own.drain(limit..));
    }
    own.sort_unstable_by(|a, b| name(a).cmp(name(b)));
    Split { own, rest }
}

/// Starts a gauge family: its `HELP` and `TYPE` lines.
pub fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// One sample of a family.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label(v, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    push_value(value, out);
    out.push('\n');
}

/// Label values escape backslash, double quote and line feed (the text format's rule).
pub fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Values as the text format spells them (Rust prints infinities as `inf`).
pub fn push_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}
