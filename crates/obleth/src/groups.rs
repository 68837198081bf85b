//! Fairshare groups' reserved and max slots, kept in step with the store.
//!
//! A group's change event (`ChangeEvent::Group`) carries only its weight, which the
//! scheduler applies itself. The slot limits are read from the store when such an event
//! arrives — from this pod's admin API, from another pod over the cluster's change
//! channel, or from the cluster's periodic reload — and handed to the scheduler. One task
//! does the reads, in the order the events arrived, so the last limits applied always
//! come from a read made after the last change (a deleted group reads as not found and
//! loses its limits).

use std::collections::BTreeSet;
use std::sync::Arc;

use obleth_core::{ChangeEvent, ChangeNotifier, Group};
use obleth_scheduler::Fairshare;
use obleth_scheduler::core::GroupLimits;
use obleth_store::{ControlPlaneStore, StoreError};
use tokio::sync::mpsc;

/// The scheduler's view of a group's limits.
pub fn limits(group: &Group) -> GroupLimits {
    GroupLimits { reserved_slots: group.reserved_slots, max_slots: group.max_slots }
}

/// A [`ChangeNotifier`] that applies group slot limits from the store.
pub struct GroupLimitsFollower {
    tx: mpsc::UnboundedSender<String>,
}

impl GroupLimitsFollower {
    /// Starts the reading task on the current runtime; it ends when the follower is dropped.
    pub fn start(store: Arc<dyn ControlPlaneStore>, scheduler: Arc<Fairshare>) -> Arc<GroupLimitsFollower> {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // A reload announces every group at once: read each one once.
                let mut names = BTreeSet::from([first]);
                while let Ok(name) = rx.try_recv() {
                    names.insert(name);
                }
                for name in names {
                    match store.get_group(&name).await {
                        Ok(group) => scheduler.set_group_limits(&name, limits(&group)),
                        Err(StoreError::NotFound { .. }) => scheduler.set_group_limits(&name, GroupLimits::default()),
                        // Kept as they were; in a cluster the periodic reload tries again.
                        Err(e) => tracing::warn!(group = %name, error = %e, "cannot read a group's slot limits"),
                    }
                }
            }
        });
        Arc::new(GroupLimitsFollower { tx })
    }
}

impl ChangeNotifier for GroupLimitsFollower {
    fn notify(&self, event: ChangeEvent) {
        if let ChangeEvent::Group { name, .. } = event {
            // Fails only once the task is gone (runtime shutting down).
            let _ = self.tx.send(name);
        }
    }
}
