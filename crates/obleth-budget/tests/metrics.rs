//! The budget layer's per-tenant series: bounded, summed into `other`, gone with their
//! tenant.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use obleth_budget::{Budget, Limits, ManualClock, MemoryBudget, conformance};
use obleth_core::{ChangeEvent, ChangeNotifier};

fn series<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.split('{').next() == Some(family)).collect()
}

#[tokio::test]
async fn tenant_series_are_capped_and_forgotten() {
    let clock = Arc::new(ManualClock::new(conformance::START));
    let budget = Budget::new(Arc::new(MemoryBudget::new(clock, conformance::TTL)));
    let limits = Limits { rpm: Some(100), monthly_budget: Some(1_000_000_000_000), ..Limits::default() };
    for i in 0..1000u64 {
        // Tenant i spends i nanos a request: the highest spenders get series of their own.
        let (id, name, request) = (format!("id-{i}"), format!("t{i}"), format!("r{i}"));
        drop(budget.reserve(&id, &name, &request, &limits, 1, i as i64).await.unwrap());
    }
    let mut text = String::new();
    budget.render(10, &mut text);
    for family in ["obleth_budget_monthly_spend", "obleth_budget_lifetime_spend"] {
        assert_eq!(series(&text, family).len(), 11, "10 tenants and other: {text}");
    }
    assert_eq!(
        series(&text, "obleth_budget_limit").len(),
        12,
        "the requests window of 10 tenants, and other for each window"
    );
    assert!(text.contains("obleth_budget_monthly_spend{tenant=\"t999\"}"), "{text}");
    assert!(!text.contains("tenant=\"t5\""), "{text}");
    let other: f64 = series(&text, "obleth_budget_limit")
        .into_iter()
        .find(|l| l.contains("tenant=\"other\",window=\"requests\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert_eq!(other, 990.0 * 100.0, "the others' limits are summed");
    assert!(text.len() < 8 * 1024, "{} bytes for 1000 tenants", text.len());

    // Deleted tenants leave; a renamed one shows its new name.
    budget.notify(ChangeEvent::Tenant { id: "id-999".into(), tenant: None });
    let renamed = obleth_core::Tenant {
        id: "id-998".into(),
        name: "renamed".into(),
        weight: 1,
        group: "default".into(),
        allowed_models: vec![],
        disabled: false,
        never_degrade: false,
        quota: obleth_core::Quota::default(),
        created_at: 0,
        updated_at: 0,
    };
    budget.notify(ChangeEvent::Tenant { id: "id-998".into(), tenant: Some(Arc::new(renamed)) });
    let mut text = String::new();
    budget.render(10, &mut text);
    assert!(!text.contains("tenant=\"t999\""), "{text}");
    assert!(text.contains("tenant=\"renamed\""), "{text}");
    assert_eq!(series(&text, "obleth_budget_monthly_spend").len(), 11);
}
