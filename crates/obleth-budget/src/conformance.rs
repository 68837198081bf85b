//! The behavioural suite every [`BudgetStore`] must pass.
//!
//! Call [`run`] with a store built with reservation TTL [`TTL`] and reading `clock`.
//! The suite only moves the clock forward and uses fresh tenant ids on every run, so a
//! shared Redis database can be reused. It panics on the first difference from the
//! contract.

use std::time::Duration;

use futures_util::future::join_all;

use crate::{
    Actual, BudgetStore, Decision, LimitKind, Limits, ManualClock, Nanos, Reservation, Reserve, calendar, to_nanos,
};

/// The reservation TTL the store under test must use.
pub const TTL: Duration = Duration::from_secs(30);

/// Where the suite starts its clock: one hour before a month ends (2026-11-30T23:00Z).
pub const START: i64 = 1_796_083_200_000 - 3_600_000;

struct Suite<'a> {
    store: &'a dyn BudgetStore,
    clock: &'a ManualClock,
    run: String,
}

impl Suite<'_> {
    fn tenant(&self, name: &str) -> String {
        format!("ten_{}_{name}", self.run)
    }

    async fn reserve(&self, tenant: &str, id: &str, limits: &Limits, tokens: u64, cost: Nanos) -> Decision {
        let request_id = format!("{}-{id}", self.run);
        self.store
            .reserve(&Reserve { tenant, request_id: &request_id, limits, tokens, cost })
            .await
            .unwrap_or_else(|e| panic!("reserve {id}: {e}"))
    }

    fn reservation(&self, tenant: &str, id: &str, limits: &Limits, tokens: u64, cost: Nanos) -> Reservation {
        Reservation {
            tenant: tenant.to_owned(),
            request_id: format!("{}-{id}", self.run),
            limits: limits.clone(),
            tokens,
            cost,
        }
    }

    async fn reconcile(&self, r: &Reservation, tokens: u64, cost: Nanos) {
        self.store.reconcile(r, Actual { tokens, cost }).await.unwrap_or_else(|e| panic!("reconcile: {e}"));
    }

    async fn usage(&self, tenant: &str, limits: &Limits) -> crate::TenantUsage {
        self.store.usage(tenant, limits).await.unwrap_or_else(|e| panic!("usage: {e}"))
    }
}

fn allowed(d: &Decision) -> bool {
    matches!(d, Decision::Allowed(_))
}

fn denied_by(d: &Decision) -> LimitKind {
    match d {
        Decision::Denied(denial) => denial.limit,
        Decision::Allowed(_) => panic!("expected a denial, got {d:?}"),
    }
}

/// Runs the whole suite. `clock` must be the store's clock.
pub async fn run(store: &dyn BudgetStore, clock: &ManualClock) {
    clock.set(START);
    let suite = Suite { store, clock, run: obleth_core::new_id("") };
    unlimited(&suite).await;
    tokens_per_minute(&suite).await;
    requests_per_minute(&suite).await;
    all_or_nothing(&suite).await;
    in_flight_and_expiry(&suite).await;
    reconcile_refunds_and_debts(&suite).await;
    idempotent(&suite).await;
    lowered_limit(&suite).await;
    concurrent(&suite).await;
    absorb(&suite).await;
    tenants_are_separate(&suite).await;
    spend_and_months(&suite).await;
}

async fn unlimited(s: &Suite<'_>) {
    let t = s.tenant("unlimited");
    let l = Limits::default();
    for i in 0..3 {
        let d = s.reserve(&t, &format!("u{i}"), &l, 1_000_000, 1_000).await;
        assert!(allowed(&d), "no limits: {d:?}");
        if let Decision::Allowed(status) = d {
            assert_eq!(status.tokens, None, "no token window without a TPM limit");
            assert_eq!(status.requests, None);
        }
    }
}

async fn tokens_per_minute(s: &Suite<'_>) {
    let t = s.tenant("tpm");
    let l = Limits { tpm: Some(1000), ..Limits::default() };
    let d = s.reserve(&t, "t1", &l, 400, 0).await;
    let Decision::Allowed(status) = d else { panic!("first: {d:?}") };
    let w = status.tokens.expect("token window");
    assert_eq!((w.limit, w.remaining), (1000, 600));
    assert_eq!(w.reset_ms, 24_000, "400 of 1000/min refill in 24 s");
    assert!(allowed(&s.reserve(&t, "t2", &l, 400, 0).await));
    let d = s.reserve(&t, "t3", &l, 400, 0).await;
    let Decision::Denied(denial) = &d else { panic!("third: {d:?}") };
    assert_eq!(denial.limit, LimitKind::Tpm);
    assert!(!denial.too_large);
    assert_eq!(denial.retry_after_ms, Some(12_000), "200 missing at 1000/min");
    assert_eq!(denial.status.tokens.map(|w| w.remaining), Some(200));
    s.clock.advance(Duration::from_millis(11_000));
    assert_eq!(denied_by(&s.reserve(&t, "t4", &l, 400, 0).await), LimitKind::Tpm, "not yet refilled");
    s.clock.advance(Duration::from_millis(1_000));
    assert!(allowed(&s.reserve(&t, "t5", &l, 400, 0).await), "refilled after the advertised wait");
    let d = s.reserve(&t, "t6", &l, 1001, 0).await;
    let Decision::Denied(denial) = &d else { panic!("too large: {d:?}") };
    assert!(denial.too_large, "a request larger than the limit can never pass");
    assert_eq!(denial.retry_after_ms, None);
    let u = s.usage(&t, &l).await;
    assert_eq!(u.tokens_per_minute.map(|w| w.remaining), Some(0));
    assert_eq!(u.in_flight, 3);
}

async fn requests_per_minute(s: &Suite<'_>) {
    let t = s.tenant("rpm");
    let l = Limits { rpm: Some(2), ..Limits::default() };
    assert!(allowed(&s.reserve(&t, "r1", &l, 1, 0).await));
    let d = s.reserve(&t, "r2", &l, 1, 0).await;
    let Decision::Allowed(status) = d else { panic!("second: {d:?}") };
    assert_eq!(status.requests.map(|w| (w.limit, w.remaining)), Some((2, 0)));
    let d = s.reserve(&t, "r3", &l, 1, 0).await;
    let Decision::Denied(denial) = &d else { panic!("third: {d:?}") };
    assert_eq!(denial.limit, LimitKind::Rpm);
    assert_eq!(denial.retry_after_ms, Some(30_000), "one request refills in 30 s at 2/min");
    // Reconciling does not give a request back: it was made.
    s.reconcile(&s.reservation(&t, "r1", &l, 1, 0), 1, 0).await;
    assert_eq!(denied_by(&s.reserve(&t, "r4", &l, 1, 0).await), LimitKind::Rpm);
    s.clock.advance(Duration::from_secs(30));
    assert!(allowed(&s.reserve(&t, "r5", &l, 1, 0).await));
}

async fn all_or_nothing(s: &Suite<'_>) {
    // The request passes the token limit but not the request limit: nothing is taken.
    let t = s.tenant("atomic");
    let l = Limits { tpm: Some(1000), rpm: Some(1), ..Limits::default() };
    assert!(allowed(&s.reserve(&t, "a1", &l, 100, 0).await));
    assert_eq!(denied_by(&s.reserve(&t, "a2", &l, 100, 0).await), LimitKind::Rpm);
    let u = s.usage(&t, &l).await;
    assert_eq!(u.tokens_per_minute.map(|w| w.remaining), Some(900), "a refused request reserves nothing");
    assert_eq!(u.in_flight, 1);
    // Both failing: the retry is when both pass.
    let l2 = Limits { tpm: Some(1000), rpm: Some(1), ..Limits::default() };
    let d = s.reserve(&t, "a3", &l2, 950, 0).await;
    let Decision::Denied(denial) = &d else { panic!("{d:?}") };
    assert_eq!(denial.retry_after_ms, Some(60_000), "the rpm wait (60 s) is longer than the tpm wait (3 s)");
}

async fn in_flight_and_expiry(s: &Suite<'_>) {
    let t = s.tenant("inflight");
    let l = Limits { max_in_flight: Some(2), ..Limits::default() };
    assert!(allowed(&s.reserve(&t, "f1", &l, 10, 0).await));
    assert!(allowed(&s.reserve(&t, "f2", &l, 10, 0).await));
    let d = s.reserve(&t, "f3", &l, 10, 0).await;
    let Decision::Denied(denial) = &d else { panic!("{d:?}") };
    assert_eq!(denial.limit, LimitKind::InFlight);
    assert!(denial.retry_after_ms.is_some());
    s.reconcile(&s.reservation(&t, "f1", &l, 10, 0), 10, 0).await;
    assert!(allowed(&s.reserve(&t, "f4", &l, 10, 0).await), "a reconcile frees the slot");
    assert_eq!(denied_by(&s.reserve(&t, "f5", &l, 10, 0).await), LimitKind::InFlight);

    // f2 and f4 are never reconciled (their pod died): they expire after the TTL.
    s.clock.advance(TTL + Duration::from_millis(1));
    assert!(allowed(&s.reserve(&t, "f6", &l, 10, 0).await), "expired reservations free their slots");
    let u = s.usage(&t, &l).await;
    assert_eq!(u.in_flight, 1);
    assert_eq!(u.expired_reservations, 2, "expiries are counted");
    // A late reconcile of an expired reservation charges its use but frees no second slot.
    let spend = Limits { max_in_flight: Some(2), lifetime_budget: Some(1_000), ..Limits::default() };
    s.reconcile(&s.reservation(&t, "f2", &spend, 10, 0), 10, 7).await;
    let u = s.usage(&t, &spend).await;
    assert_eq!(u.in_flight, 1, "f6 still holds its slot");
    assert_eq!(u.lifetime_spend, crate::from_nanos(7), "the late reconcile was charged");
}

async fn reconcile_refunds_and_debts(s: &Suite<'_>) {
    let t = s.tenant("reconcile");
    let l = Limits { tpm: Some(1000), monthly_budget: Some(10_000), ..Limits::default() };
    assert!(allowed(&s.reserve(&t, "c1", &l, 800, 8_000).await));
    assert_eq!(denied_by(&s.reserve(&t, "c2", &l, 800, 100).await), LimitKind::Tpm);
    // The request used far less than it reserved: the rest comes back.
    s.reconcile(&s.reservation(&t, "c1", &l, 800, 8_000), 100, 1_000).await;
    let u = s.usage(&t, &l).await;
    assert_eq!(u.tokens_per_minute.map(|w| w.remaining), Some(900));
    assert_eq!(u.monthly_spend, crate::from_nanos(1_000));
    assert_eq!(u.in_flight, 0);
    // The request used more than it reserved (the estimate was low): the bucket goes into debt.
    assert!(allowed(&s.reserve(&t, "c3", &l, 100, 100).await));
    s.reconcile(&s.reservation(&t, "c3", &l, 100, 100), 1_500, 2_000).await;
    let u = s.usage(&t, &l).await;
    assert_eq!(u.tokens_per_minute.map(|w| w.remaining), Some(0));
    assert_eq!(u.monthly_spend, crate::from_nanos(3_000));
    let d = s.reserve(&t, "c4", &l, 100, 0).await;
    let Decision::Denied(denial) = &d else { panic!("in debt: {d:?}") };
    // Level is 800 - 100... = -600 now; 700 tokens missing at 1000/min = 42 s.
    assert_eq!(denial.retry_after_ms, Some(42_000));
}

async fn idempotent(s: &Suite<'_>) {
    let t = s.tenant("idem");
    let l = Limits { tpm: Some(1000), max_in_flight: Some(5), lifetime_budget: Some(1_000_000), ..Limits::default() };
    assert!(allowed(&s.reserve(&t, "i1", &l, 300, 3_000).await));
    assert!(allowed(&s.reserve(&t, "i1", &l, 300, 3_000).await), "a repeated reserve is granted again");
    let u = s.usage(&t, &l).await;
    assert_eq!(u.tokens_per_minute.map(|w| w.remaining), Some(700), "…and counted once");
    assert_eq!(u.in_flight, 1);
    assert_eq!(u.lifetime_spend, crate::from_nanos(3_000));
    let r = s.reservation(&t, "i1", &l, 300, 3_000);
    s.reconcile(&r, 200, 2_000).await;
    s.reconcile(&r, 200, 2_000).await;
    let u = s.usage(&t, &l).await;
    assert_eq!(u.tokens_per_minute.map(|w| w.remaining), Some(800), "a repeated reconcile counts once");
    assert_eq!(u.in_flight, 0, "and frees one slot");
    assert_eq!(u.lifetime_spend, crate::from_nanos(2_000));
    // Reconciling something never reserved changes nothing.
    s.reconcile(&s.reservation(&t, "never", &l, 300, 3_000), 500, 5_000).await;
    assert_eq!(s.usage(&t, &l).await, u);
}

async fn lowered_limit(s: &Suite<'_>) {
    let t = s.tenant("lowered");
    let l = Limits { tpm: Some(10_000), ..Limits::default() };
    assert!(allowed(&s.reserve(&t, "l1", &l, 10, 0).await));
    let lower = Limits { tpm: Some(100), ..Limits::default() };
    let u = s.usage(&t, &lower).await;
    assert_eq!(u.tokens_per_minute.map(|w| w.remaining), Some(100), "a lowered limit caps the bucket");
    assert!(allowed(&s.reserve(&t, "l2", &lower, 100, 0).await));
    assert_eq!(denied_by(&s.reserve(&t, "l3", &lower, 1, 0).await), LimitKind::Tpm);
}

async fn concurrent(s: &Suite<'_>) {
    // 200 concurrent requests against limits that fit 50: exactly 50 pass, whichever store.
    let limits = [
        ("spend", Limits { lifetime_budget: Some(to_nanos(0.5)), ..Limits::default() }),
        ("tokens", Limits { tpm: Some(50 * 300), ..Limits::default() }),
        ("slots", Limits { max_in_flight: Some(50), ..Limits::default() }),
    ];
    for (name, l) in limits {
        let t = s.tenant(&format!("conc-{name}"));
        let decisions = join_all((0..200).map(|i| {
            let t = t.clone();
            let l = l.clone();
            async move { s.reserve(&t, &format!("{name}{i}"), &l, 300, to_nanos(0.01)).await }
        }))
        .await;
        let passed = decisions.iter().filter(|d| allowed(d)).count();
        assert_eq!(passed, 50, "{name}: {passed} of 200 passed a limit that fits 50");
        let u = s.usage(&t, &l).await;
        assert_eq!(u.in_flight, 50);
        assert_eq!(u.lifetime_spend, 0.5);
    }
}

async fn absorb(s: &Suite<'_>) {
    let t = s.tenant("absorb");
    let l = Limits { tpm: Some(1000), lifetime_budget: Some(1_000_000), ..Limits::default() };
    let used = Actual { tokens: 600, cost: 6_000 };
    s.store.absorb(&format!("{}-b1", s.run), &t, &l, used).await.expect("absorb");
    s.store.absorb(&format!("{}-b1", s.run), &t, &l, used).await.expect("absorb again");
    let u = s.usage(&t, &l).await;
    assert_eq!(u.tokens_per_minute.map(|w| w.remaining), Some(400), "a batch is absorbed once");
    assert_eq!(u.lifetime_spend, crate::from_nanos(6_000));
    assert_eq!(u.in_flight, 0);
}

async fn tenants_are_separate(s: &Suite<'_>) {
    let a = s.tenant("sep-a");
    let b = s.tenant("sep-b");
    let l = Limits { rpm: Some(1), ..Limits::default() };
    assert!(allowed(&s.reserve(&a, "s1", &l, 1, 0).await));
    assert!(allowed(&s.reserve(&b, "s2", &l, 1, 0).await), "another tenant's limit is its own");
    assert_eq!(denied_by(&s.reserve(&a, "s3", &l, 1, 0).await), LimitKind::Rpm);
}

async fn spend_and_months(s: &Suite<'_>) {
    let t = s.tenant("spend");
    let l = Limits { monthly_budget: Some(1_000), lifetime_budget: Some(2_500), ..Limits::default() };
    let d = s.reserve(&t, "m1", &l, 10, 600).await;
    let Decision::Allowed(status) = d else { panic!("{d:?}") };
    assert_eq!((status.monthly_spent, status.lifetime_spent), (600, 600), "the standing includes this reservation");
    // 600 + 500 > 1000: the estimate alone would overspend, so it is refused.
    let d = s.reserve(&t, "m2", &l, 10, 500).await;
    let Decision::Denied(denial) = &d else { panic!("{d:?}") };
    assert_eq!(denial.limit, LimitKind::MonthlyBudget);
    let reset = calendar::next_month_start(s.clock.now_ms());
    assert_eq!(denial.resets_at, Some(reset), "the monthly budget resets at the start of next month");
    assert_eq!(denial.retry_after_ms, Some((reset - s.clock.now_ms()) as u64));
    assert!(allowed(&s.reserve(&t, "m3", &l, 10, 400).await), "exactly the budget is fine");
    let u = s.usage(&t, &l).await;
    assert_eq!((u.monthly_spend, u.lifetime_spend), (crate::from_nanos(1_000), crate::from_nanos(1_000)));
    assert_eq!(u.monthly_resets_at, reset);
    let month = u.month.clone();

    // Into the next month: the monthly budget starts over, the lifetime one does not.
    s.clock.set(reset + 1);
    let u = s.usage(&t, &l).await;
    assert_ne!(u.month, month);
    assert_eq!(u.monthly_spend, 0.0);
    assert!(allowed(&s.reserve(&t, "m4", &l, 10, 1_000).await));
    let d = s.reserve(&t, "m5", &l, 10, 600).await;
    let Decision::Denied(denial) = &d else { panic!("{d:?}") };
    assert_eq!(denial.limit, LimitKind::MonthlyBudget);
    // A reconcile of last month's request corrects last month, and the lifetime total.
    s.reconcile(&s.reservation(&t, "m3", &l, 10, 400), 10, 100).await;
    let u = s.usage(&t, &l).await;
    assert_eq!(u.monthly_spend, crate::from_nanos(1_000), "this month is untouched");
    assert_eq!(u.lifetime_spend, crate::from_nanos(1_700));
    s.reconcile(&s.reservation(&t, "m4", &l, 10, 1_000), 10, 900).await;
    assert!(allowed(&s.reserve(&t, "m6", &l, 10, 100).await));
    let d = s.reserve(&t, "m7", &l, 10, 1).await;
    let Decision::Denied(denial) = &d else { panic!("{d:?}") };
    assert_eq!(denial.limit, LimitKind::MonthlyBudget);
    // Lifetime so far: 600 + 100 (m3 reconciled) + 900 (m4 reconciled) + 100 (m6).
    let l2 = Limits { lifetime_budget: Some(1_700), ..Limits::default() };
    let d = s.reserve(&t, "m8", &l2, 10, 1).await;
    let Decision::Denied(denial) = &d else { panic!("{d:?}") };
    assert_eq!(denial.limit, LimitKind::LifetimeBudget);
    assert_eq!(denial.resets_at, None, "a lifetime budget never resets");
}

impl ManualClock {
    fn now_ms(&self) -> i64 {
        crate::Clock::now(self)
    }
}
