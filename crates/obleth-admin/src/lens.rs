//! The console's live views: the scheduler lens (a server push), the last minutes of
//! traffic and the cluster's pods.
//!
//! The lens is one stream per open page, `GET /api/v1/scheduler/stream`, instead of a
//! page polling many endpoints. One producer task takes one scheduler snapshot per
//! second, whatever the number of open lenses, orders the tenants by activity, and
//! publishes it through a `watch` channel; each stream only trims it to its own top N and
//! writes one server-sent event. The producer runs while a lens is open and stops with
//! the last one, so a gateway nobody watches takes no snapshot.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use obleth_core::pulse::{MAX_WINDOW_SECS, Pulse, PulsePoint};
use obleth_core::scheduler::TenantView;
use obleth_core::{Admission, SchedulerSnapshot, now_millis};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::extract::Params;
use crate::{AdminState, ApiError};

/// How often the lens is refreshed.
pub const LENS_INTERVAL: Duration = Duration::from_secs(1);
/// Tenants a lens shows by default and at most; the rest are summed as "others".
const DEFAULT_TOP: u32 = 50;
const MAX_TOP: u32 = 200;

/// One refresh of the lens, shared by every open stream.
#[derive(Debug, Default)]
pub struct Frame {
    pub at: i64,
    /// Tenants ordered by activity (queued and in flight, then recent share).
    pub snapshot: Option<SchedulerSnapshot>,
    pub last: Option<PulsePoint>,
}

/// The producer of lens frames and its subscribers.
pub struct Lens {
    admission: Arc<dyn Admission>,
    pulse: Arc<Pulse>,
    channel: Mutex<Option<watch::Sender<Arc<Frame>>>>,
}

impl Lens {
    pub fn new(admission: Arc<dyn Admission>, pulse: Arc<Pulse>) -> Arc<Lens> {
        Arc::new(Lens { admission, pulse, channel: Mutex::new(None) })
    }

    /// A receiver of frames, starting the producer if no lens was open. The first frame
    /// is there at once.
    pub fn subscribe(self: &Arc<Self>) -> watch::Receiver<Arc<Frame>> {
        let mut channel = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channel.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(Arc::new(self.frame()));
        *channel = Some(tx);
        tokio::spawn(self.clone().produce());
        rx
    }

    async fn produce(self: Arc<Self>) {
        let mut tick = tokio::time::interval(LENS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let frame = Arc::new(self.frame());
            let mut channel = self.channel.lock().unwrap_or_else(|p| p.into_inner());
            // Decided under the lock, so a lens opening now either sees this producer
            // or starts the next one.
            match channel.as_ref() {
                Some(tx) if tx.receiver_count() > 0 => {
                    tx.send_replace(frame);
                }
                _ => {
                    *channel = None;
                    return;
                }
            }
        }
    }

    fn frame(&self) -> Frame {
        let now = now_millis();
        let mut snapshot = self.admission.snapshot();
        if let Some(s) = &mut snapshot {
            s.tenants.sort_by(|a, b| {
                activity(b).cmp(&activity(a)).then(b.actual_share.total_cmp(&a.actual_share)).then(a.name.cmp(&b.name))
            });
        }
        Frame { at: now, snapshot, last: self.pulse.last(now.max(0) as u64) }
    }
}

fn activity(t: &TenantView) -> u64 {
    t.queued as u64 + u64::from(t.in_flight)
}

/// A frame as one stream shows it: the `top` most active tenants, the rest summed.
pub(crate) fn render(frame: &Frame, top: usize) -> Value {
    let Some(s) = &frame.snapshot else {
        return json!({ "at": frame.at, "scheduler": null, "last": frame.last });
    };
    let (shown, rest) = s.tenants.split_at(top.min(s.tenants.len()));
    let others = json!({
        "tenants": rest.len(),
        "queued": rest.iter().map(|t| t.queued).sum::<usize>(),
        "in_flight": rest.iter().map(|t| u64::from(t.in_flight)).sum::<u64>(),
        "target_share": rest.iter().fold(0.0, |sum, t| sum + t.target_share),
        "actual_share": rest.iter().fold(0.0, |sum, t| sum + t.actual_share),
    });
    json!({
        "at": frame.at,
        "mode": s.mode,
        "slots_total": s.slots_total,
        "slots_used": s.slots_used,
        "queued": s.queued,
        "next": s.next,
        "groups": s.groups,
        "tenants": shown,
        "others": others,
        "tenant_count": s.tenants.len(),
        "models": s.models,
        "admissions": s.admissions,
        "last": frame.last,
    })
}

/// `GET /api/v1/scheduler/stream?top=50`: one `lens` event per second.
pub(crate) async fn stream(State(s): State<AdminState>, params: Params) -> Result<Response, ApiError> {
    let mut params = params;
    let top = params.u32_in("top", 1, MAX_TOP)?.unwrap_or(DEFAULT_TOP) as usize;
    params.finish()?;
    let rx = s.lens.subscribe();
    let events =
        futures_util::stream::unfold((rx, s.shutdown.clone(), true), move |(mut rx, stop, first)| async move {
            if !first {
                tokio::select! {
                    changed = rx.changed() => changed.ok()?,
                    _ = stop.cancelled() => return None,
                }
            }
            let frame = rx.borrow_and_update().clone();
            let event = format!("event: lens\ndata: {}\n\n", render(&frame, top));
            Some((Ok::<_, std::convert::Infallible>(event), (rx, stop, false)))
        });
    let mut response = Body::from_stream(events).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer (nginx) would hold the events back.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// `GET /api/v1/stats?window=300`: the last seconds of traffic, one point per second.
pub(crate) async fn stats(State(s): State<AdminState>, params: Params) -> Result<Json<Value>, ApiError> {
    let mut params = params;
    let window = params.u32_in("window", 10, MAX_WINDOW_SECS as u32)?.unwrap_or(300);
    params.finish()?;
    let points = s.pulse.window(u64::from(window), now_millis().max(0) as u64);
    Ok(Json(json!({ "interval_ms": 1000, "points": points })))
}

/// `GET /api/v1/cluster`: this pod's slot share and every live pod's claim.
pub(crate) async fn cluster(State(s): State<AdminState>) -> Json<Value> {
    let Some(cluster) = &s.cluster else { return Json(json!({ "enabled": false })) };
    let status = cluster.status();
    let (pods, error) = match cluster.pods().await {
        Ok(pods) => (pods, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    Json(json!({
        "enabled": true,
        "pod": status.pod,
        "cluster_slots": status.cluster_slots,
        "slots": status.slots,
        "connected": status.connected,
        "pods": pods,
        "error": error,
    }))
}
