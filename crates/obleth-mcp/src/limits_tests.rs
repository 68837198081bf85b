//! Tests of the tool-call limits: the bucket and counter at given times, and the slot's
//! release on drop.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn rate(cap: u64) -> Quota {
    Quota { tool_calls_per_minute: Some(cap), ..Quota::default() }
}

fn slots(cap: u32) -> Quota {
    Quota { tool_calls_in_flight: Some(cap), ..Quota::default() }
}

fn refused(limit: Limit, cap: u64, after_ms: u64) -> Result<bool, Refusal> {
    Err(Refusal { limit, cap, retry_after: Duration::from_millis(after_ms) })
}

#[test]
fn a_full_bucket_allows_a_burst_then_refills_continuously() {
    let mut t = Table::default();
    for _ in 0..3 {
        assert_eq!(t.admit("a", &rate(3), 0), Ok(false), "a per-minute limit holds no slot");
    }
    assert_eq!(t.admit("a", &rate(3), 0), refused(Limit::PerMinute, 3, 20_000), "one call every 20 s");
    assert_eq!(t.admit("a", &rate(3), 15_000), refused(Limit::PerMinute, 3, 5_000));
    assert_eq!(t.admit("a", &rate(3), 20_000), Ok(false));
    assert_eq!(t.admit("a", &rate(3), 20_000), refused(Limit::PerMinute, 3, 20_000));
    assert_eq!(t.admit("b", &rate(3), 20_000), Ok(false), "each tenant has its own bucket");

    let mut t = Table::default();
    for _ in 0..60 {
        t.admit("a", &rate(60), 0).expect("admitted");
    }
    assert_eq!(t.admit("a", &rate(60), 500), refused(Limit::PerMinute, 60, 500), "a sixtieth of a minute");
    assert_eq!(t.admit("a", &rate(60), 1_000), Ok(false));
    for _ in 0..60 {
        t.admit("a", &rate(60), 1_000_000).expect("admitted");
    }
    assert!(t.admit("a", &rate(60), 1_000_000).is_err(), "a long idle refills to the capacity, not beyond");
}

#[test]
fn a_changed_limit_applies_to_the_next_call() {
    let mut t = Table::default();
    t.admit("a", &rate(10), 0).expect("admitted");
    // Lowered: what is left is capped at the new capacity.
    assert_eq!(t.admit("a", &rate(2), 0), Ok(false));
    assert_eq!(t.admit("a", &rate(2), 0), Ok(false));
    assert_eq!(t.admit("a", &rate(2), 0), refused(Limit::PerMinute, 2, 30_000));
    // Raised: the bucket refills at the new rate from its current level.
    assert_eq!(t.admit("a", &rate(60), 1_000), Ok(false));
    // Removed: no limit at all, and set again later, a full bucket.
    for _ in 0..100 {
        assert_eq!(t.admit("a", &Quota::default(), 1_000), Ok(false));
    }
    assert_eq!(t.admit("a", &rate(1), 61_000), Ok(false));
}

#[test]
fn time_going_backwards_refills_nothing() {
    let mut t = Table::default();
    for _ in 0..3 {
        t.admit("a", &rate(3), 10_000).expect("admitted");
    }
    assert_eq!(t.admit("a", &rate(3), 0), refused(Limit::PerMinute, 3, 20_000), "an earlier time");
    assert_eq!(t.admit("a", &rate(3), 20_000), refused(Limit::PerMinute, 3, 10_000), "10 s after it");
    assert_eq!(t.admit("a", &rate(3), 30_000), Ok(false), "20 s after the latest time seen");
}

#[test]
fn in_flight_calls_hold_slots_until_released() {
    let mut t = Table::default();
    assert_eq!(t.admit("a", &slots(2), 0), Ok(true));
    assert_eq!(t.admit("a", &slots(2), 0), Ok(true));
    assert_eq!(t.admit("a", &slots(2), 0), refused(Limit::InFlight, 2, 1_000));
    assert_eq!(t.admit("b", &slots(2), 0), Ok(true), "slots are per tenant");
    t.release("a", 5);
    assert_eq!(t.in_flight("a"), 1);
    assert_eq!(t.admit("a", &slots(2), 5), Ok(true));
    assert_eq!(t.admit("a", &slots(1), 5), refused(Limit::InFlight, 1, 1_000), "a lowered limit binds at once");
    for _ in 0..3 {
        t.release("a", 6);
        t.release("b", 6);
    }
    assert_eq!((t.in_flight("a"), t.len()), (0, 0), "a release past zero stays at zero; idle tenants go");
}

#[test]
fn a_refused_call_spends_nothing() {
    let mut t = Table::default();
    let both = Quota { tool_calls_per_minute: Some(2), tool_calls_in_flight: Some(1), ..Quota::default() };
    assert_eq!(t.admit("a", &both, 0), Ok(true));
    assert_eq!(t.admit("a", &both, 0), refused(Limit::InFlight, 1, 1_000), "no token taken");
    t.release("a", 0);
    assert_eq!(t.admit("a", &both, 0), Ok(true), "the second token was still there");
    t.release("a", 0);
    assert_eq!(t.admit("a", &both, 0), refused(Limit::PerMinute, 2, 30_000), "and no slot taken");
    assert_eq!(t.in_flight("a"), 0);
}

#[test]
fn tenants_without_limits_or_idle_for_a_minute_are_not_kept() {
    let mut t = Table::default();
    t.admit("free", &Quota::default(), 0).expect("admitted");
    assert!(t.is_empty(), "no limits, no state");
    for i in 0..1_000 {
        t.admit(&format!("t{i}"), &rate(5), 0).expect("admitted");
    }
    t.admit("busy", &slots(1), 0).expect("admitted");
    assert_eq!(t.len(), 1_001);
    t.admit("late", &rate(5), 59_999).expect("admitted");
    assert_eq!(t.len(), 1_002, "swept at most once a minute");
    t.admit("late", &rate(5), 60_000).expect("admitted");
    assert_eq!(t.len(), 2, "the idle buckets are full again and go; a call in flight stays");
    assert_eq!(t.admit("busy", &slots(1), 60_000), refused(Limit::InFlight, 1, 1_000));
}

#[test]
fn a_slot_is_given_back_when_dropped_on_any_path() {
    let limits = ToolLimits::default();
    let mut tenant = obleth_core::Tenant::named("ten_1", "t1", "default");
    tenant.quota = slots(1);
    let first = limits.admit(&tenant).expect("a free slot");
    assert_eq!(limits.admit(&tenant).err().map(|r| r.limit), Some(Limit::InFlight));
    drop(first);
    assert_eq!(limits.in_flight("ten_1"), 0);

    // The client went away: the handler's future is dropped mid-call, and its slot with it.
    let held = limits.admit(&tenant).expect("the slot again");
    let call = async move {
        let _slot = held;
        std::future::pending::<()>().await;
    };
    assert_eq!(futures_util::FutureExt::now_or_never(call), None, "the call never ends by itself");
    assert_eq!(limits.in_flight("ten_1"), 0);
    let unlimited = obleth_core::Tenant::named("ten_2", "t2", "default");
    let slots: Vec<Slot> = (0..100).map(|_| limits.admit(&unlimited).expect("no limit")).collect();
    assert_eq!((limits.in_flight("ten_2"), slots.len()), (0, 100), "a tenant without limits holds nothing");
    drop(limits.admit(&tenant).expect("free once more"));
}

#[derive(Debug, Clone)]
enum Op {
    /// Time moves on by this many ms (or back, negative).
    Wait(i64),
    Call,
    /// The oldest call in flight ends.
    End,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![(-2_000i64..20_000).prop_map(Op::Wait), Just(Op::Call), Just(Op::Call), Just(Op::End)]
}

proptest! {
    /// Never more calls in flight than the limit, and never more admitted in a window of
    /// `w` ms than a full bucket plus its refill over `w` (the bucket's promise), whatever
    /// the order of calls, ends and (even backward) clock readings.
    #[test]
    fn limits_are_never_exceeded(cap in 1u64..8, slots in 1u32..4, ops in prop::collection::vec(op(), 1..200)) {
        let quota = Quota { tool_calls_per_minute: Some(cap), tool_calls_in_flight: Some(slots), ..Quota::default() };
        let mut t = Table::default();
        let (mut now, mut latest) = (0i64, 0i64);
        let mut admitted_at: Vec<i64> = Vec::new();
        let mut in_flight = 0u32;
        for op in ops {
            match op {
                Op::Wait(ms) => now = (now + ms).max(0),
                // The bucket's time is the latest reading it kept: an admitted call's, or
                // a call's it refused (one refused for want of a slot never reached it).
                Op::Call => match t.admit("a", &quota, now) {
                    Ok(_) => {
                        latest = latest.max(now);
                        admitted_at.push(latest);
                        in_flight += 1;
                    }
                    Err(r) if r.limit == Limit::PerMinute => latest = latest.max(now),
                    Err(_) => {}
                },
                Op::End => {
                    if in_flight > 0 {
                        t.release("a", now);
                        in_flight -= 1;
                    }
                }
            }
            prop_assert!(t.in_flight("a") <= slots);
            prop_assert_eq!(t.in_flight("a"), in_flight);
        }
        for (i, &start) in admitted_at.iter().enumerate() {
            for (n, &end) in admitted_at[i..].iter().enumerate() {
                let bound = cap as f64 * (1.0 + (end - start) as f64 / 60_000.0);
                prop_assert!((n + 1) as f64 <= bound + 1e-6, "{} calls from {start} to {end} ms, over {bound}", n + 1);
            }
        }
    }
}

#[test]
fn a_refusal_is_a_retryable_jsonrpc_error_naming_its_limit() {
    let refusal = Refusal { limit: Limit::PerMinute, cap: 3, retry_after: Duration::from_millis(20_000) };
    let error = crate::errors::limit_refusal(&refusal);
    assert_eq!(error.code.0, -32011);
    let data = error.data.expect("data");
    assert_eq!(
        data,
        serde_json::json!({"retryable": true, "retry_after_ms": 20_000, "limit": "tool_calls_per_minute"})
    );
    let refusal = Refusal { limit: Limit::InFlight, cap: 1, retry_after: IN_FLIGHT_RETRY };
    let data = crate::errors::limit_refusal(&refusal).data.expect("data");
    assert_eq!((data["limit"].as_str(), data["retry_after_ms"].as_u64()), (Some("tool_calls_in_flight"), Some(1_000)));
}
