//! Tests of the rendered scheduler families: bounded, summed into `other`, valid text.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::*;
use crate::core::{Config, Counts, Mode, Request, Scheduler, TenantSpec, Tokens};
use obleth_core::prom::push_value;

fn tenant(name: &str, queued: usize, in_flight: u32, score: f64, target: f64, actual: f64) -> TenantView {
    TenantView {
        name: name.into(),
        group: "g".into(),
        weight: 1.0,
        queued,
        in_flight,
        share_score: score,
        served_tokens: 0.0,
        target_share: target,
        actual_share: actual,
    }
}

fn group(name: &str, queued: usize, in_flight: u32) -> GroupView {
    GroupView {
        name: name.into(),
        weight: 1.0,
        reserved_slots: None,
        max_slots: None,
        pool_reserved_slots: None,
        pool_max_slots: None,
        cap: in_flight,
        in_flight,
        queued,
        share_score: 0.0,
        target_share: 0.0,
        actual_share: 0.0,
    }
}

fn snapshot(groups: Vec<GroupView>, tenants: Vec<TenantView>) -> Snapshot {
    Snapshot {
        mode: Mode::Hierarchical,
        slots_total: 8,
        slots_used: 0,
        queued: 0,
        groups,
        tenants,
        admissions: Counts::default(),
        next: None,
        models: vec![],
    }
}

fn rendered(s: &Snapshot, tenants: usize, groups: usize) -> String {
    let mut out = String::new();
    render(s, SeriesLimits { tenants, groups }, &mut out);
    check_exposition(&out);
    out
}

/// The value of the series `name{labels}` (labels as rendered).
fn value(text: &str, series: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '));
    let line = line.unwrap_or_else(|| panic!("no series {series} in\n{text}"));
    line[series.len() + 1..].parse().expect("value")
}

/// Series of a family (sample lines whose name is exactly `family`).
fn series_of<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.split('{').next() == Some(family)).collect()
}

/// The text format's structure: each family announced once by HELP and TYPE before its
/// samples, its samples contiguous, and no series twice.
fn check_exposition(text: &str) {
    let mut announced = HashSet::new();
    let mut closed = HashSet::new();
    let mut current: Option<&str> = None;
    let mut seen = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name");
            assert!(announced.insert(name), "family {name} announced twice");
            if let Some(c) = current.replace(name) {
                closed.insert(c);
            }
            continue;
        }
        if line.starts_with("# TYPE ") {
            assert_eq!(line.split(' ').nth(2), current, "TYPE of another family: {line}");
            continue;
        }
        let name = line.split(['{', ' ']).next().expect("name");
        assert_eq!(Some(name), current, "sample outside its family: {line}");
        assert!(!closed.contains(name), "family {name} split");
        let series = line.rsplit_once(' ').expect("value").0;
        assert!(seen.insert(series), "series twice: {series}");
    }
}

#[test]
fn every_family_is_capped_at_the_limit_plus_other() {
    let tenants = (0..1000).map(|i| tenant(&format!("t{i:04}"), 0, 0, i as f64, 0.0, 0.0)).collect();
    let groups = (0..50).map(|i| group(&format!("g{i:02}"), 0, 0)).collect();
    let text = rendered(&snapshot(groups, tenants), 10, 3);
    for family in [names::TENANT_QUEUED, names::TENANT_IN_FLIGHT, names::TENANT_SHARE_SCORE] {
        assert_eq!(series_of(&text, family).len(), 11, "{family}");
    }
    assert_eq!(series_of(&text, names::TENANT_SHARE).len(), 2 * 11);
    assert_eq!(series_of(&text, names::GROUP_QUEUED).len(), 4);
    assert_eq!(series_of(&text, names::GROUP_SLOTS).len(), 4 * 4);
    assert_eq!(series_of(&text, names::GROUP_SHARE).len(), 2 * 4);
    // Only `other` with a limit of 0.
    let text = rendered(&snapshot(vec![group("g", 1, 1)], vec![tenant("a", 1, 1, 1.0, 1.0, 1.0)]), 0, 0);
    assert_eq!(series_of(&text, names::TENANT_QUEUED), [r#"obleth_scheduler_tenant_queued{tenant="other"} 1"#]);
    assert_eq!(series_of(&text, names::GROUP_QUEUED), [r#"obleth_scheduler_group_queued{group="other"} 1"#]);
    // No tenants at all: the families are still there, with a zero `other`.
    let text = rendered(&snapshot(vec![], vec![]), 10, 10);
    assert_eq!(series_of(&text, names::TENANT_IN_FLIGHT), [r#"obleth_scheduler_tenant_in_flight{tenant="other"} 0"#]);
}

#[test]
fn the_most_active_get_their_own_series_and_the_rest_is_summed() {
    let tenants = vec![
        tenant("idle-a", 0, 0, 1.0, 0.0, 0.05),
        tenant("busy", 3, 2, 50.0, 0.4, 0.5),
        tenant("queued", 4, 0, 30.0, 0.3, 0.1),
        tenant("recent", 0, 0, 70.0, 0.0, 0.3),
        tenant("running", 0, 1, 20.0, 0.3, 0.05),
    ];
    let text = rendered(&snapshot(vec![], tenants), 2, 10);
    // busy (5 requests) and queued (4) go first; then running (1) and recent (by share).
    let own: Vec<&str> =
        series_of(&text, names::TENANT_QUEUED).into_iter().map(|l| l.split('"').nth(1).expect("tenant")).collect();
    assert_eq!(own, ["busy", "queued", "other"]);
    let other = |family: &str, extra: &str| value(&text, &format!(r#"{family}{{tenant="other"{extra}}}"#));
    assert_eq!(other(names::TENANT_QUEUED, ""), 0.0);
    assert_eq!(other(names::TENANT_IN_FLIGHT, ""), 1.0);
    assert!((other(names::TENANT_SHARE, r#",kind="actual""#) - 0.4).abs() < 1e-9);
    assert!((other(names::TENANT_SHARE, r#",kind="target""#) - 0.3).abs() < 1e-9);
    // The lowest score among the folded tenants with work: running's, not idle-a's.
    assert_eq!(other(names::TENANT_SHARE_SCORE, ""), 20.0);
    // Without work among them, 0.
    let text =
        rendered(&snapshot(vec![], vec![tenant("a", 1, 0, 9.0, 0.0, 0.0), tenant("b", 0, 0, 5.0, 0.0, 0.0)]), 1, 1);
    assert_eq!(value(&text, r#"obleth_scheduler_tenant_share_score{tenant="other"}"#), 0.0);
}

#[test]
fn groups_are_capped_by_activity_too() {
    let groups = vec![group("quiet", 0, 0), group("loud", 5, 3), group("mid", 1, 1)];
    let text = rendered(&snapshot(groups, vec![]), 10, 1);
    assert_eq!(value(&text, r#"obleth_scheduler_group_slots{group="loud",state="used"}"#), 3.0);
    assert_eq!(value(&text, r#"obleth_scheduler_group_slots{group="other",state="used"}"#), 1.0);
    // Uncapped groups count the whole pool as their max: two of them, 8 slots each.
    assert_eq!(value(&text, r#"obleth_scheduler_group_slots{group="other",state="max"}"#), 16.0);
    assert_eq!(value(&text, r#"obleth_scheduler_group_queued{group="other"}"#), 1.0);
    assert!(!text.contains("quiet") && !text.contains("\"mid\""));
}

#[test]
fn a_tenant_called_other_is_counted_in_other_and_labels_are_escaped() {
    let tenants = vec![tenant("other", 2, 0, 1.0, 0.0, 0.0), tenant("we\"ird\\na\nme", 1, 0, 1.0, 0.0, 0.0)];
    let text = rendered(&snapshot(vec![], tenants), 10, 10);
    assert_eq!(series_of(&text, names::TENANT_QUEUED).len(), 2, "{text}");
    assert_eq!(value(&text, r#"obleth_scheduler_tenant_queued{tenant="other"}"#), 2.0);
    assert_eq!(value(&text, r#"obleth_scheduler_tenant_queued{tenant="we\"ird\\na\nme"}"#), 1.0);
}

#[test]
fn values_are_spelled_as_the_text_format_wants() {
    let mut out = String::new();
    for v in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.25, 3.0, 1e21] {
        push_value(v, &mut out);
        out.push(' ');
    }
    assert_eq!(out, "+Inf -Inf NaN 0.25 3 1000000000000000000000 ");
}

fn req(name: &str, id: &str) -> Request<'static> {
    Request {
        tenant: TenantSpec {
            name: name.to_owned().into(),
            id: Some(id.to_owned().into()),
            weight: 1,
            group: format!("group-{}", name.len() % 3).into(),
            max_in_flight: None,
            never_degrade: false,
        },
        model: "m".into(),
        model_weight: 1.0,
        model_slots: None,
        estimate: Tokens { input: 10, output: 0 },
    }
}

#[test]
fn ten_thousand_tenants_render_in_a_few_kilobytes_and_deleted_ones_disappear() {
    let mut s = Scheduler::new(Config { mode: Mode::Hierarchical, slots: 65, ..Config::default() });
    let mut busy = HashMap::new();
    for i in 0..10_000 {
        let (name, id) = (format!("tenant-{i:05}"), format!("ten_{i:05}"));
        match s.submit(Duration::ZERO, req(&name, &id)).0 {
            // The first 64 keep their slot; the others finish at once.
            crate::core::Submitted::Admitted(g) if i < 64 => {
                busy.insert(name, g.ticket);
            }
            crate::core::Submitted::Admitted(g) => {
                s.complete(Duration::from_millis(1), g.ticket, None);
            }
            other => panic!("{other:?}"),
        }
    }
    let text = rendered(&s.snapshot(Duration::from_secs(1)), 100, 100);
    assert_eq!(series_of(&text, names::TENANT_IN_FLIGHT).len(), 101);
    assert_eq!(series_of(&text, names::TENANT_SHARE).len(), 202);
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    // The 64 busy tenants are among those shown, the idle rest summed.
    assert!(busy.keys().all(|name| text.contains(&format!("tenant=\"{name}\""))));
    assert_eq!(value(&text, r#"obleth_scheduler_tenant_in_flight{tenant="other"}"#), 0.0);

    // A deleted tenant's series go with it (once its request is done).
    let (name, ticket) = busy.iter().next().map(|(n, t)| (n.clone(), *t)).expect("busy");
    s.remove_tenant(&name.replace("tenant-", "ten_"));
    assert!(rendered(&s.snapshot(Duration::from_secs(1)), 100, 100).contains(&format!("tenant=\"{name}\"")));
    s.complete(Duration::from_secs(2), ticket, None);
    let text = rendered(&s.snapshot(Duration::from_secs(2)), 10_000, 100);
    assert!(!text.contains(&format!("tenant=\"{name}\"")), "a deleted tenant's series stayed");
    assert_eq!(series_of(&text, names::TENANT_QUEUED).len(), 9_999 + 1);
}

#[test]
fn the_fairness_index_counts_only_backlogged_tenants() {
    let at = |tenants: Vec<TenantView>| value(&rendered(&snapshot(vec![], tenants), 10, 10), names::FAIRNESS_INDEX);
    // Each backlogged tenant served in proportion to its weight: 1, whatever the shares.
    assert_eq!(at(vec![tenant("a", 3, 1, 0.0, 0.75, 0.75), tenant("b", 3, 1, 0.0, 0.25, 0.25)]), 1.0);
    // One of two gets everything: 1/2.
    assert_eq!(at(vec![tenant("a", 3, 1, 0.0, 0.5, 1.0), tenant("b", 3, 0, 0.0, 0.5, 0.0)]), 0.5);
    // x = (1.6, 0.4): (2.0)^2 / (2 * 2.72).
    let j = at(vec![tenant("a", 1, 1, 0.0, 0.5, 0.8), tenant("b", 1, 1, 0.0, 0.5, 0.2)]);
    assert!((j - 4.0 / 5.44).abs() < 1e-12, "{j}");
    // An idle tenant below its share is not starved: it does not count.
    assert_eq!(at(vec![tenant("a", 2, 1, 0.0, 1.0, 1.0), tenant("idle", 0, 0, 0.0, 0.0, 0.0)]), 1.0);
    // Nobody backlogged, or nobody served yet: 1.
    assert_eq!(at(vec![]), 1.0);
    assert_eq!(at(vec![tenant("a", 1, 0, 0.0, 0.5, 0.0), tenant("b", 1, 0, 0.0, 0.5, 0.0)]), 1.0);
}
