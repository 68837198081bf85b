//! The identity's caches: bounded maps whose entries expire a fixed time after they
//! were written.
//!
//! moka served here first. Each of its entries cost ~250 B besides the value (its
//! access-order and write-order lists, the frequency sketch, the housekeeper's
//! bookkeeping): with 10,000 tenants and keys, 5 MiB of the gateway's 36 MiB heap. These
//! caches need less: lookups by exact key, expiry after a fixed time, and a bound on
//! entries. An entry here is its key, its value and when it was written.
//!
//! A full shard first drops what has expired, then the oldest eighth of what is left
//! (written longest ago; not least recently read, which would cost a write on every
//! read). Expired entries are also swept once per `ttl`, so that short-lived entries
//! (unknown keys, kept for seconds) do not linger until the shard fills.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards, each under its own lock: the data-plane threads seldom meet on one.
const SHARDS: usize = 16;

pub(crate) struct Memo<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    per_shard: usize,
    ttl: Duration,
    hasher: RandomState,
}

struct Shard<K, V> {
    entries: HashMap<K, (V, Instant)>,
    /// When expired entries are next swept.
    sweep_at: Option<Instant>,
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    /// A cache of at most `capacity` entries (rounded up to a multiple of the shards),
    /// each kept for `ttl`.
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        let per_shard = (capacity as usize).div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard { entries: HashMap::new(), sweep_at: None })).collect();
        Memo { shards, per_shard, ttl, hasher: RandomState::new() }
    }

    /// The value and when it was written, unless it has expired.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<(V, Instant)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_at(key, Instant::now())
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        self.insert_at(key, value, Instant::now());
    }

    pub(crate) fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).entries.remove(key);
    }

    pub(crate) fn invalidate_all(&self) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.entries = HashMap::new();
            shard.sweep_at = None;
        }
    }

    fn get_at<Q>(&self, key: &Q, now: Instant) -> Option<(V, Instant)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard(key);
        let (value, written) = shard.entries.get(key)?;
        (now.saturating_duration_since(*written) < self.ttl).then(|| (value.clone(), *written))
    }

    fn insert_at(&self, key: K, value: V, now: Instant) {
        let mut shard = self.shard(&key);
        if shard.sweep_at.is_none_or(|at| now >= at) {
            self.sweep(&mut shard, now);
            shard.sweep_at = Some(now + self.ttl);
        }
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&key) {
            self.make_room(&mut shard, now);
        }
        shard.entries.insert(key, (value, now));
    }

    fn sweep(&self, shard: &mut Shard<K, V>, now: Instant) {
        shard.entries.retain(|_, (_, written)| now.saturating_duration_since(*written) < self.ttl);
    }

    /// Drops the expired entries, then, if the shard is still full, the oldest eighth.
    fn make_room(&self, shard: &mut Shard<K, V>, now: Instant) {
        self.sweep(shard, now);
        if shard.entries.len() < self.per_shard {
            return;
        }
        let mut written: Vec<Instant> = shard.entries.values().map(|(_, w)| *w).collect();
        let drop = (written.len() / 8).max(1);
        let (_, cutoff, _) = written.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        let mut dropped = 0;
        shard.entries.retain(|_, (_, w)| {
            let keep = *w > cutoff || dropped >= drop;
            dropped += usize::from(!keep);
            keep
        });
    }

    fn shard<Q>(&self, key: &Q) -> MutexGuard<'_, Shard<K, V>>
    where
        Q: Hash + ?Sized,
    {
        lock(&self.shards[self.hasher.hash_one(key) as usize % SHARDS])
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }
}

/// A panic elsewhere while holding the lock leaves a map that is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_entry_is_served_until_it_expires_and_not_after() {
        let memo = Memo::new(100, Duration::from_secs(10));
        let t0 = Instant::now();
        memo.insert_at("a".to_owned(), 1, t0);
        assert_eq!(memo.get_at("a", t0 + Duration::from_secs(9)), Some((1, t0)));
        assert_eq!(memo.get_at("a", t0 + Duration::from_secs(10)), None);
        memo.insert_at("a".to_owned(), 2, t0 + Duration::from_secs(10));
        assert_eq!(memo.get_at("a", t0 + Duration::from_secs(11)).map(|e| e.0), Some(2));
        memo.invalidate("a");
        assert_eq!(memo.get_at("a", t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn expired_entries_are_swept_once_a_ttl_has_passed() {
        let memo = Memo::new(10_000, Duration::from_secs(2));
        let t0 = Instant::now();
        for i in 0..1000 {
            memo.insert_at(i, (), t0);
        }
        assert_eq!(memo.len(), 1000);
        // Every shard that takes an insert after the ttl sweeps. The shard of a key is
        // random (the hasher's seed): with 1,000 more keys, the odds that one of the 16
        // shards gets none are 16 × (15/16)^1000, about 10^-27.
        for i in 1000..2000 {
            memo.insert_at(i, (), t0 + Duration::from_secs(3));
        }
        assert_eq!(memo.len(), 1000);
    }

    #[test]
    fn a_full_shard_drops_what_was_written_longest_ago() {
        let memo = Memo::new(SHARDS as u64 * 8, Duration::from_secs(3600));
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            memo.insert_at(i, i, t0 + Duration::from_millis(i));
        }
        assert!(memo.len() <= SHARDS * 8);
        // The newest key is always there; the first ones are long gone.
        assert!(memo.get_at(&9_999, t0 + Duration::from_secs(11)).is_some());
        assert!(memo.get_at(&0, t0 + Duration::from_secs(11)).is_none());
    }

    proptest! {
        /// Whatever the operations, the cache holds no more than its capacity, and
        /// answers for a key what the last write put there, if that write has not
        /// expired and was not invalidated; it may have dropped it to make room, but
        /// only if there were more keys than a shard holds.
        #[test]
        fn it_agrees_with_a_plain_map_within_its_bound(
            ops in prop::collection::vec((0u8..3, 0u16..300, 0u64..5_000), 1..2_000),
            keys in 1u16..300,
            capacity in 16u64..256,
        ) {
            let ttl = Duration::from_secs(1);
            let memo = Memo::new(capacity, ttl);
            let mut model: HashMap<u16, (u64, Instant)> = HashMap::new();
            let t0 = Instant::now();
            let mut now = t0;
            let never_full = usize::from(keys) <= (capacity as usize).div_ceil(SHARDS);
            for (op, key, step) in ops {
                let key = key % keys;
                now += Duration::from_micros(step * 100);
                match op {
                    0 => {
                        memo.insert_at(key, step, now);
                        model.insert(key, (step, now));
                    }
                    1 => {
                        memo.invalidate(&key);
                        model.remove(&key);
                    }
                    _ => {
                        let got = memo.get_at(&key, now);
                        let live = model.get(&key).filter(|(_, w)| now.duration_since(*w) < ttl);
                        match got {
                            Some(entry) => prop_assert_eq!(Some(&entry), live),
                            None => prop_assert!(live.is_none() || !never_full),
                        }
                    }
                }
                prop_assert!(memo.len() <= (capacity as usize).div_ceil(SHARDS) * SHARDS);
            }
        }
    }
}
