//! The seam for a cache every pod shares (Redis), between a pod's own caches and the
//! control-plane store.
//!
//! Entries travel as JSON text so that the trait stays object-safe; the data plane
//! decides what they hold. A lookup that misses hands out a *ticket*: the fill that
//! follows the store read is stored only if no change was announced in between, so a
//! read that raced an admin change cannot put the old answer back.

use async_trait::async_trait;

/// What an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedKind {
    /// An API key, by the hex of its hash.
    Key,
    /// A tenant, by id.
    Tenant,
}

/// The answer of the shared cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// The entry, as it was filled.
    Hit(String),
    /// Known absent from the store (briefly cached, like the pod's own negative cache).
    Absent,
    /// Not cached; fill it with this ticket once the store has answered.
    Miss { ticket: String },
    /// The shared cache cannot be reached: go to the store, fill nothing.
    Unavailable,
}

#[async_trait]
pub trait SharedCache: Send + Sync + 'static {
    async fn get(&self, kind: SharedKind, id: &str) -> Shared;
    /// Stores what the store answered (`None`: absent), unless a change was announced
    /// since `ticket` was handed out.
    async fn fill(&self, kind: SharedKind, id: &str, ticket: &str, value: Option<&str>);
}
