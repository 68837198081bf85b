//! Control-plane change notifications: how an admin change reaches the caches.
//!
//! The admin API announces every change through a [`ChangeNotifier`]. In one process
//! the data plane's caches subscribe directly; across pods `obleth-cluster` carries the
//! same events over Redis pub/sub.

use std::sync::Arc;

use crate::key::KeyHash;
use crate::tenant::Tenant;

/// A change that may invalidate something the data plane cached.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeEvent {
    /// A tenant was updated, disabled or deleted (`tenant` is `None` when deleted).
    Tenant { id: String, tenant: Option<Arc<Tenant>> },
    /// A fairshare group was set: its weight (`None`: the group was deleted) and its
    /// slot limits (`None`: no limit).
    Group { name: String, weight: Option<u32>, reserved_slots: Option<u32>, max_slots: Option<u32> },
    /// A key was revoked or deleted.
    Key { hash: KeyHash },
    /// A model was created, updated or deleted.
    Model { name: String },
    /// An MCP server was created, updated or deleted.
    McpServer { name: String },
    /// MCP grants changed (created, deleted, copied by a key rotation, or gone with their
    /// tenant or server): the gateway reloads them all (they are few).
    McpGrants,
    /// A tool's pin changed (approved, quarantined, or out of quarantine).
    McpPin { server: String, tool: String },
    /// Changes may have been missed (the cross-pod channel was down): forget what was
    /// cached and read it again from the store.
    Resync,
}

/// Receives control-plane changes. Must be cheap and non-blocking.
pub trait ChangeNotifier: Send + Sync + 'static {
    fn notify(&self, event: ChangeEvent);
}

/// Fans one event out to several notifiers.
impl ChangeNotifier for Vec<std::sync::Arc<dyn ChangeNotifier>> {
    fn notify(&self, event: ChangeEvent) {
        for n in self {
            n.notify(event.clone());
        }
    }
}
