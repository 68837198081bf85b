//! The behaviour every [`LedgerBackend`] must have, as one suite run against each
//! backend's real database (SQLite in a temp file, a real ClickHouse server).
//!
//! `tag` keeps the rows of one run apart from others sharing the database.

use std::collections::HashSet;

use crate::{Bucket, Filter, GroupBy, LedgerBackend, LedgerError, LedgerRow, SeriesQuery};

/// 2023-11-14T01:00:00Z; each section writes on a day of its own after it, so that
/// queries over all tenants see only their section's rows.
const BASE_MS: u64 = 1_699_923_600_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

fn base(tag: &str) -> u64 {
    let day = match &tag[tag.len().saturating_sub(2)..] {
        "rt" => 0,
        "rp" => 1,
        "st" => 2,
        "fi" => 3,
        "ex" => 5,
        "tc" => 6,
        "ow" => 7,
        _ => 4,
    };
    BASE_MS + day * DAY_MS
}

/// A row `minutes` after the section's base hour.
pub fn row(tag: &str, n: u32, tenant: &str, model: &str, minutes: u64) -> LedgerRow {
    let received = base(tag) + minutes * 60_000 + u64::from(n);
    LedgerRow {
        request_id: format!("{tag}-{n:05}"),
        received_at: received / 1000,
        received_at_ms: received,
        admitted_at_ms: Some(received + 5),
        first_token_at_ms: if n.is_multiple_of(3) { None } else { Some(received + 40) },
        finished_at_ms: received + 900,
        tenant_id: format!("{tag}-{tenant}"),
        key_prefix: "obl-abcd".into(),
        group_name: "default".into(),
        route: "chat".into(),
        requested_model: if n.is_multiple_of(2) { "auto".into() } else { model.into() },
        model: model.into(),
        upstream_model: format!("{model}-upstream"),
        input_tokens: 100 + n,
        output_tokens: 10 * (n % 7),
        cached_tokens: (n % 2) * 50,
        tokens_estimated: n.is_multiple_of(5),
        cost: 0.000_001_5 * f64::from(n + 1),
        queue_wait_ms: u64::from(n % 4) * 10,
        ttft_ms: if n.is_multiple_of(3) { None } else { Some(40) },
        duration_ms: 900,
        admission_class: match n % 4 {
            0 => "fast",
            1 => "queued",
            2 => "brownout",
            _ => "rejected",
        }
        .into(),
        status: if n % 4 == 3 { 429 } else { 200 },
        error_type: if n % 4 == 3 { "rate_limit_exceeded".into() } else { String::new() },
        streamed: n % 2 == 1,
        client_disconnected: n == 7,
        mcp_server: String::new(),
        args_sha256: String::new(),
        result_bytes: 0,
        upstream_error: String::new(),
        capture: String::new(),
    }
}

/// An MCP tool call's row, as `obleth-mcp` writes one: no tokens, the tool-call columns
/// filled; every third one failed upstream (no result, an error).
pub fn tool_row(tag: &str, n: u32, tenant: &str, minutes: u64) -> LedgerRow {
    let mut r = row(tag, n, tenant, "files__read", minutes);
    let failed = n.is_multiple_of(3);
    r.route = "mcp_tools_call".into();
    r.requested_model = "files__read".into();
    r.upstream_model = "read".into();
    (r.input_tokens, r.output_tokens, r.cached_tokens, r.cost) = (0, 0, 0, 0.0);
    (r.first_token_at_ms, r.ttft_ms, r.streamed) = (None, None, false);
    r.status = if failed { 502 } else { 200 };
    r.error_type = if failed { "upstream_error".into() } else { String::new() };
    r.mcp_server = "files".into();
    r.args_sha256 = format!("sha256:{:064x}", u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // Past 32 bits, so that no backend may keep it narrower.
    r.result_bytes = if failed { 0 } else { 5_000_000_000 + u64::from(n) };
    r.upstream_error = if failed {
        format!("upstream MCP server 'files' failed: it's \"down\" \\ at [address]\n\tcall {n} — é 😀")
    } else {
        String::new()
    };
    let result = if failed {
        serde_json::Value::Null
    } else {
        serde_json::json!({"content": [{"type": "text", "text": format!("line \"{n}\"\n\u{1}é😀\\")}]})
    };
    r.capture =
        serde_json::json!({"arguments": {"path": format!("/tmp/{n}"), "token": "[redacted]"}, "result": result})
            .to_string();
    r
}

fn filter(tag: &str, tenant: Option<&str>) -> Filter {
    Filter {
        from_ms: base(tag),
        to_ms: base(tag) + 3 * HOUR_MS,
        tenant_id: tenant.map(|t| format!("{tag}-{t}")),
        model: None,
    }
}

/// Runs every section.
pub async fn run(backend: &dyn LedgerBackend, tag: &str) {
    backend.prepare().await.expect("prepare");
    backend.prepare().await.expect("prepare is idempotent");
    round_trip(backend, &format!("{tag}rt")).await;
    replays_do_not_double_count(backend, &format!("{tag}rp")).await;
    series_and_totals(backend, &format!("{tag}st")).await;
    filters(backend, &format!("{tag}fi")).await;
    awkward_strings(backend, &format!("{tag}aw")).await;
    extremes(backend, &format!("{tag}ex")).await;
    long_ranges(backend, &format!("{tag}lr")).await;
    tool_calls(backend, &format!("{tag}tc")).await;
    old_log_lines(backend, &format!("{tag}ow")).await;
}

/// Tool-call rows keep their five columns, whole (a capture at its bound, with quotes,
/// backslashes, control characters and non-ASCII); the requests in the same batches
/// keep them empty; all of them count in the totals.
async fn tool_calls(backend: &dyn LedgerBackend, tag: &str) {
    let mut rows = Vec::new();
    for n in 0..12u32 {
        rows.push(if n % 2 == 0 { tool_row(tag, n, "a", u64::from(n)) } else { row(tag, n, "a", "m1", u64::from(n)) });
    }
    // The largest capture a row may have, most of it escaped in JSON.
    let mut big = tool_row(tag, 12, "a", 12);
    let unit = "\"\\\u{7}é";
    big.capture = unit.repeat(obleth_core::MAX_CAPTURE_BYTES / unit.len());
    big.upstream_error = "€".repeat(obleth_core::MAX_UPSTREAM_ERROR_BYTES / 3);
    rows.push(big);
    backend.insert(&rows[..6]).await.expect("insert");
    backend.insert(&rows[6..]).await.expect("insert");

    let mut got = backend.recent(&filter(tag, Some("a")), 100).await.expect("recent");
    got.reverse();
    assert_eq!(got.len(), rows.len());
    for (g, w) in got.iter().zip(&rows) {
        assert!((g.cost - w.cost).abs() < 1e-15, "cost {} vs {}", g.cost, w.cost);
        assert_eq!(LedgerRow { cost: 0.0, ..g.clone() }, LedgerRow { cost: 0.0, ..w.clone() }, "{}", w.request_id);
    }
    let tools: Vec<&LedgerRow> = got.iter().filter(|r| r.route == "mcp_tools_call").collect();
    assert_eq!(tools.len(), 7);
    assert!(tools.iter().all(|r| r.mcp_server == "files" && r.args_sha256.len() == 71));
    for llm in got.iter().filter(|r| r.route != "mcp_tools_call") {
        let tool = (&llm.mcp_server, &llm.args_sha256, llm.result_bytes, &llm.upstream_error, &llm.capture);
        assert_eq!(tool, (&String::new(), &String::new(), 0, &String::new(), &String::new()), "{}", llm.request_id);
    }
    let big = got.last().expect("the big row");
    assert_eq!(big.capture.len(), rows[12].capture.len());

    let by_model = backend.totals(&filter(tag, Some("a")), GroupBy::Model).await.expect("totals");
    let calls = by_model.iter().find(|t| t.key == "files__read").expect("the tool's totals");
    assert_eq!((calls.requests, calls.errors, calls.input_tokens), (7, 3, 0), "{calls:?}");
    assert_eq!(by_model.iter().map(|t| t.requests).sum::<u64>(), 13);
}

/// A line of the write-ahead log written before the tool-call columns, byte for byte as
/// that version wrote it (request `n` of `tag`'s tenant `a`, received at `at` ms), and
/// the row it must read as: the tool-call columns empty.
pub fn old_log_line(tag: &str, n: u32, at: u64) -> (String, LedgerRow) {
    let line = format!(
        r#"{{"request_id":"{tag}-{n:05}","received_at":{s},"received_at_ms":{at},"admitted_at_ms":{admitted},"first_token_at_ms":null,"finished_at_ms":{finished},"tenant_id":"{tag}-a","key_prefix":"obl-abcd","group_name":"default","route":"chat","requested_model":"auto","model":"m1","upstream_model":"m1-upstream","input_tokens":120,"output_tokens":30,"cached_tokens":0,"tokens_estimated":0,"cost":0.0005,"queue_wait_ms":10,"ttft_ms":null,"duration_ms":900,"admission_class":"queued","status":200,"error_type":"","streamed":1,"client_disconnected":0}}"#,
        s = at / 1000,
        admitted = at + 5,
        finished = at + 900,
    );
    let row = LedgerRow {
        request_id: format!("{tag}-{n:05}"),
        received_at: at / 1000,
        received_at_ms: at,
        admitted_at_ms: Some(at + 5),
        first_token_at_ms: None,
        finished_at_ms: at + 900,
        tenant_id: format!("{tag}-a"),
        key_prefix: "obl-abcd".into(),
        group_name: "default".into(),
        route: "chat".into(),
        requested_model: "auto".into(),
        model: "m1".into(),
        upstream_model: "m1-upstream".into(),
        input_tokens: 120,
        output_tokens: 30,
        cached_tokens: 0,
        tokens_estimated: false,
        cost: 0.0005,
        queue_wait_ms: 10,
        ttft_ms: None,
        duration_ms: 900,
        admission_class: "queued".into(),
        status: 200,
        error_type: String::new(),
        streamed: true,
        client_disconnected: false,
        mcp_server: String::new(),
        args_sha256: String::new(),
        result_bytes: 0,
        upstream_error: String::new(),
        capture: String::new(),
    };
    (line, row)
}

/// An old line of the log (see [`old_log_line`]) still parses and ships, in one batch
/// with a line of today's.
async fn old_log_lines(backend: &dyn LedgerBackend, tag: &str) {
    let (line, old) = old_log_line(tag, 1, base(tag) + 60_000);
    let mut payload = format!("{line}\n").into_bytes();
    let new = tool_row(tag, 2, "a", 2);
    new.write_json_line(&mut payload);
    let (parsed, bad) = LedgerRow::parse_json_lines(&payload);
    assert_eq!((parsed.len(), bad), (2, 0), "{}", String::from_utf8_lossy(&payload));
    assert_eq!(parsed, [old.clone(), new.clone()]);
    backend.insert(&parsed).await.expect("insert");
    let mut got = backend.recent(&filter(tag, Some("a")), 10).await.expect("recent");
    got.reverse();
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip([old, new]) {
        assert!((g.cost - w.cost).abs() < 1e-15);
        assert_eq!(LedgerRow { cost: 0.0, ..g.clone() }, LedgerRow { cost: 0.0, ..w });
    }
}

/// What a series query should answer, computed from the rows themselves.
fn reference(rows: &[LedgerRow], q: &SeriesQuery) -> Vec<crate::SeriesPoint> {
    let mut by: std::collections::BTreeMap<(u64, String), crate::Totals> = std::collections::BTreeMap::new();
    let f = &q.filter;
    for r in rows.iter().filter(|r| {
        r.received_at_ms >= f.from_ms
            && r.received_at_ms < f.to_ms
            && f.tenant_id.as_ref().is_none_or(|t| *t == r.tenant_id)
            && f.model.as_ref().is_none_or(|m| *m == r.model)
    }) {
        let key = match q.group_by {
            GroupBy::None => String::new(),
            GroupBy::Tenant => r.tenant_id.clone(),
            GroupBy::Model => r.model.clone(),
        };
        let secs = q.bucket.seconds();
        let t = by.entry((r.received_at / secs * secs, key.clone())).or_default();
        t.key = key;
        t.requests += 1;
        t.errors += u64::from(r.status >= 400);
        t.rejected += u64::from(r.admission_class == "rejected");
        t.brownout += u64::from(r.admission_class == "brownout");
        t.input_tokens += u64::from(r.input_tokens);
        t.output_tokens += u64::from(r.output_tokens);
        t.cached_tokens += u64::from(r.cached_tokens);
        t.cost += r.cost;
        t.queue_wait_ms += r.queue_wait_ms;
    }
    by.into_iter().map(|((bucket_start, _), totals)| crate::SeriesPoint { bucket_start, totals }).collect()
}

/// Long ranges (answered in part from hourly sums where a backend keeps them) agree with
/// the rows exactly, whatever the alignment of the range, its bucket, group and filters.
/// The rows lie in the hours ahead of now: a backend whose sums start when they were
/// created (ClickHouse) uses them for these.
async fn long_ranges(backend: &dyn LedgerBackend, tag: &str) {
    let now = obleth_core::now_millis().max(0) as u64;
    let start = (now / HOUR_MS + 3) * HOUR_MS;
    let rows: Vec<LedgerRow> = (0..300u32)
        .map(|n| {
            let mut r = row(tag, n, if n % 3 == 0 { "b" } else { "a" }, if n % 2 == 0 { "m1" } else { "m2" }, 0);
            r.received_at_ms = start + u64::from(n) * 5 * 60_000 + u64::from(n % 7) * 1_000;
            r.received_at = r.received_at_ms / 1000;
            r
        })
        .collect();
    backend.insert(&rows).await.expect("insert");
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    let ranges = [
        (start, start + 25 * HOUR_MS),                                 // aligned, all of it
        (start + 17 * 60_000, start + 20 * HOUR_MS + 43 * 60_000 + 1), // ragged ends
        (start + 5 * 60_000, start + 50 * 60_000),                     // no whole hour
        (start + HOUR_MS, start + 2 * HOUR_MS),                        // exactly one hour
    ];
    for (from_ms, to_ms) in ranges {
        for (tenant, model) in [(Some(&a), None), (Some(&b), Some("m2")), (Some(&a), Some("m1"))] {
            let filter = Filter { from_ms, to_ms, tenant_id: tenant.cloned(), model: model.map(str::to_owned) };
            for bucket in [Bucket::Minute, Bucket::Hour, Bucket::Day] {
                for group_by in [GroupBy::None, GroupBy::Model] {
                    let q = SeriesQuery { filter: filter.clone(), bucket, group_by };
                    let got = backend.series(&q).await.expect("series");
                    same_points(&got, &reference(&rows, &q), &format!("{q:?}"));
                }
            }
            let got = backend.totals(&filter, GroupBy::Model).await.expect("totals");
            let want: Vec<crate::Totals> = reference(
                &rows,
                &SeriesQuery { filter: filter.clone(), bucket: Bucket::Day, group_by: GroupBy::Model },
            )
            .into_iter()
            .fold(std::collections::BTreeMap::<String, crate::Totals>::new(), |mut by, p| {
                let t = by
                    .entry(p.totals.key.clone())
                    .or_insert_with(|| crate::Totals { key: p.totals.key.clone(), ..Default::default() });
                t.requests += p.totals.requests;
                t.input_tokens += p.totals.input_tokens;
                t.cost += p.totals.cost;
                by
            })
            .into_values()
            .collect();
            // By key: costs that tie up to rounding may come in either order.
            let summary = |v: &[crate::Totals]| {
                let mut s: Vec<_> = v.iter().map(|t| (t.key.clone(), t.requests, t.input_tokens)).collect();
                s.sort();
                s
            };
            assert_eq!(summary(&got), summary(&want), "totals {filter:?}");
            assert!(got.windows(2).all(|w| w[0].cost >= w[1].cost), "highest cost first: {got:?}");
        }
        // Grouped by tenant over both: each tenant's series.
        let q = SeriesQuery {
            filter: Filter { from_ms, to_ms, tenant_id: None, model: None },
            bucket: Bucket::Hour,
            group_by: GroupBy::Tenant,
        };
        let got: Vec<_> =
            backend.series(&q).await.expect("series").into_iter().filter(|p| p.totals.key.starts_with(tag)).collect();
        same_points(&got, &reference(&rows, &q), "by tenant");
    }
}

fn same_points(got: &[crate::SeriesPoint], want: &[crate::SeriesPoint], what: &str) {
    let strip = |v: &[crate::SeriesPoint]| {
        v.iter()
            .map(|p| {
                let mut p = p.clone();
                p.totals.cost = 0.0;
                p
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(got), strip(want), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g.totals.cost - w.totals.cost).abs() < 1e-9, "{what}: cost {} vs {}", g.totals.cost, w.totals.cost);
    }
}

/// Token counts at the ends of their type come back whole (nothing wraps negative) and
/// add up without overflowing; the largest cost a request may have comes back too.
async fn extremes(backend: &dyn LedgerBackend, tag: &str) {
    let mut max = row(tag, 0, "a", "m1", 0);
    (max.input_tokens, max.output_tokens, max.cached_tokens) = (u32::MAX, u32::MAX, u32::MAX);
    max.cost = obleth_core::MAX_REQUEST_COST;
    let mut zero = row(tag, 1, "a", "m1", 1);
    (zero.input_tokens, zero.output_tokens, zero.cached_tokens) = (0, 0, 0);
    zero.cost = 0.0;
    let mut again = row(tag, 2, "a", "m1", 2);
    (again.input_tokens, again.output_tokens, again.cached_tokens) = (u32::MAX, 0, 0);
    let rows = [max, zero, again];
    backend.insert(&rows).await.expect("insert");
    let mut got = backend.recent(&filter(tag, Some("a")), 10).await.expect("recent");
    got.reverse();
    assert_eq!(got, rows, "every count and cost as written");
    let totals = backend.totals(&filter(tag, Some("a")), GroupBy::None).await.expect("totals");
    let t = &totals[0];
    assert_eq!(t.input_tokens, 2 * u64::from(u32::MAX), "{t:?}");
    assert_eq!((t.output_tokens, t.cached_tokens), (u64::from(u32::MAX), u64::from(u32::MAX)), "{t:?}");
    assert!((t.cost - obleth_core::MAX_REQUEST_COST - rows[2].cost).abs() < 1e-3, "{t:?}");
}

/// Every field comes back as written; newest first.
async fn round_trip(backend: &dyn LedgerBackend, tag: &str) {
    let rows: Vec<LedgerRow> = (0..12).map(|n| row(tag, n, "a", "m1", u64::from(n))).collect();
    backend.insert(&rows).await.expect("insert");
    let got = backend.recent(&filter(tag, Some("a")), 100).await.expect("recent");
    let mut want = rows.clone();
    want.reverse();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.request_id, w.request_id);
        assert!((g.cost - w.cost).abs() < 1e-15, "cost {} vs {}", g.cost, w.cost);
        assert_eq!(LedgerRow { cost: 0.0, ..g.clone() }, LedgerRow { cost: 0.0, ..w.clone() });
    }
    let limited = backend.recent(&filter(tag, Some("a")), 3).await.expect("recent");
    assert_eq!(limited.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), {
        want[..3].iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>()
    });
}

/// A batch inserted twice (a replay) is reported present and counted once. 150 rows and a
/// first insert of 70: statements of a fixed number of rows (SQLite's 64) and a last,
/// shorter one, on both sides of a chunk's end.
async fn replays_do_not_double_count(backend: &dyn LedgerBackend, tag: &str) {
    let rows: Vec<LedgerRow> = (0..150).map(|n| row(tag, n, "a", "m1", u64::from(n))).collect();
    assert!(backend.existing(&rows).await.expect("existing").is_empty());
    backend.insert(&rows[..70]).await.expect("insert");
    let present = backend.existing(&rows).await.expect("existing");
    let want: HashSet<String> = rows[..70].iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(present, want);
    // The whole batch again, duplicates included, as an unchecked replay would send it.
    backend.insert(&rows).await.expect("insert again");
    backend.insert(&rows).await.expect("and again");
    let totals = backend.totals(&filter(tag, Some("a")), GroupBy::None).await.expect("totals");
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].requests, 150, "each request counted once: {totals:?}");
    assert_eq!(totals[0].input_tokens, rows.iter().map(|r| u64::from(r.input_tokens)).sum::<u64>());
    assert_eq!(backend.recent(&filter(tag, Some("a")), 1000).await.expect("recent").len(), 150);
    // The newest rows, each once, though every one of them is stored three times.
    let newest: Vec<String> =
        backend.recent(&filter(tag, Some("a")), 10).await.expect("recent").into_iter().map(|r| r.request_id).collect();
    let want: Vec<String> = rows.iter().rev().take(10).map(|r| r.request_id.clone()).collect();
    assert_eq!(newest, want);
}

/// Buckets and groups add up to the rows.
async fn series_and_totals(backend: &dyn LedgerBackend, tag: &str) {
    // Tenant a: 30 rows over three hours on m1 and m2; tenant b: 10 rows in the first hour.
    let mut rows = Vec::new();
    for n in 0..30u32 {
        rows.push(row(tag, n, "a", if n.is_multiple_of(2) { "m1" } else { "m2" }, u64::from(n) * 6));
    }
    for n in 30..40u32 {
        rows.push(row(tag, n, "b", "m1", u64::from(n - 30)));
    }
    backend.insert(&rows).await.expect("insert");
    let all = filter(tag, None);
    let sum = |pred: &dyn Fn(&LedgerRow) -> bool| -> (u64, u64, u64, f64) {
        let sel: Vec<&LedgerRow> = rows.iter().filter(|r| pred(r)).collect();
        (
            sel.len() as u64,
            sel.iter().map(|r| u64::from(r.input_tokens)).sum(),
            sel.iter().map(|r| u64::from(r.output_tokens)).sum(),
            sel.iter().map(|r| r.cost).sum(),
        )
    };

    let by_tenant = backend.totals(&all, GroupBy::Tenant).await.expect("totals");
    assert_eq!(by_tenant.len(), 2, "{by_tenant:?}");
    for t in &by_tenant {
        let (n, input, output, cost) = sum(&|r: &LedgerRow| r.tenant_id == t.key);
        assert_eq!((t.requests, t.input_tokens, t.output_tokens), (n, input, output), "{t:?}");
        assert!((t.cost - cost).abs() < 1e-9);
        let (errors, rejected, brownout) = rows.iter().filter(|r| r.tenant_id == t.key).fold((0, 0, 0), |acc, r| {
            (
                acc.0 + u64::from(r.status >= 400),
                acc.1 + u64::from(r.admission_class == "rejected"),
                acc.2 + u64::from(r.admission_class == "brownout"),
            )
        });
        assert_eq!((t.errors, t.rejected, t.brownout), (errors, rejected, brownout));
        assert_eq!(t.queue_wait_ms, rows.iter().filter(|r| r.tenant_id == t.key).map(|r| r.queue_wait_ms).sum::<u64>());
    }
    assert!(by_tenant[0].cost >= by_tenant[1].cost, "ordered by cost");

    let by_model = backend.totals(&filter(tag, Some("a")), GroupBy::Model).await.expect("totals");
    assert_eq!(by_model.iter().map(|t| t.key.as_str()).collect::<HashSet<_>>(), HashSet::from(["m1", "m2"]));
    assert_eq!(by_model.iter().map(|t| t.requests).sum::<u64>(), 30);

    let hourly = backend
        .series(&SeriesQuery { filter: filter(tag, Some("a")), bucket: Bucket::Hour, group_by: GroupBy::None })
        .await
        .expect("series");
    let starts: Vec<u64> = hourly.iter().map(|p| p.bucket_start).collect();
    assert_eq!(starts, vec![base(tag) / 1000, base(tag) / 1000 + 3600, base(tag) / 1000 + 7200]);
    assert_eq!(hourly.iter().map(|p| p.totals.requests).collect::<Vec<_>>(), vec![10, 10, 10]);
    for p in &hourly {
        let start = p.bucket_start * 1000;
        let (n, input, _, _) = sum(&|r: &LedgerRow| {
            r.tenant_id.ends_with("-a") && r.received_at_ms >= start && r.received_at_ms < start + HOUR_MS
        });
        assert_eq!((p.totals.requests, p.totals.input_tokens), (n, input));
    }

    let by_tenant_minute = backend
        .series(&SeriesQuery { filter: all.clone(), bucket: Bucket::Minute, group_by: GroupBy::Tenant })
        .await
        .expect("series");
    assert_eq!(by_tenant_minute.iter().map(|p| p.totals.requests).sum::<u64>(), 40);
    assert!(
        by_tenant_minute
            .windows(2)
            .all(|w| (w[0].bucket_start, &w[0].totals.key) <= (w[1].bucket_start, &w[1].totals.key))
    );

    let daily = backend
        .series(&SeriesQuery { filter: all, bucket: Bucket::Day, group_by: GroupBy::None })
        .await
        .expect("series");
    assert_eq!(daily.len(), 1);
    assert_eq!(daily[0].bucket_start % 86_400, 0);
    assert_eq!(daily[0].totals.requests, 40);
}

/// Time ranges are [from, to); tenant and model filters are exact; empty ranges are errors.
async fn filters(backend: &dyn LedgerBackend, tag: &str) {
    let rows: Vec<LedgerRow> = (0..10).map(|n| row(tag, n, "a", if n < 5 { "x" } else { "y" }, 10)).collect();
    backend.insert(&rows).await.expect("insert");
    let at = rows[3].received_at_ms;
    let f = Filter { from_ms: at, to_ms: at + 2, ..filter(tag, Some("a")) };
    let got: Vec<String> = backend.recent(&f, 100).await.expect("recent").into_iter().map(|r| r.request_id).collect();
    assert_eq!(got, vec![rows[4].request_id.clone(), rows[3].request_id.clone()]);

    let f = Filter { model: Some("y".into()), ..filter(tag, Some("a")) };
    let totals = backend.totals(&f, GroupBy::None).await.expect("totals");
    assert_eq!(totals[0].requests, 5);

    let other = filter(tag, Some("nobody"));
    assert!(backend.totals(&other, GroupBy::Tenant).await.expect("totals").is_empty());
    assert!(backend.recent(&other, 10).await.expect("recent").is_empty());

    let empty = Filter { from_ms: 10, to_ms: 10, ..Filter::default() };
    assert!(matches!(backend.recent(&empty, 10).await, Err(LedgerError::Invalid(_))));
}

/// Quotes, backslashes and non-ASCII in values are data, never syntax.
async fn awkward_strings(backend: &dyn LedgerBackend, tag: &str) {
    let tenant = "o'brien\\\"; DROP TABLE usage; --é";
    let mut r = row(tag, 1, tenant, "m'1", 0);
    r.error_type = "it's \n broken".into();
    backend.insert(std::slice::from_ref(&r)).await.expect("insert");
    assert_eq!(backend.existing(std::slice::from_ref(&r)).await.expect("existing").len(), 1);
    let f = Filter { model: Some("m'1".into()), ..filter(tag, Some(tenant)) };
    let got = backend.recent(&f, 10).await.expect("recent");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tenant_id, r.tenant_id);
    assert_eq!(got[0].error_type, r.error_type);
}
