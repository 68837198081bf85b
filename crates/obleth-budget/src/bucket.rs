//! Per-minute token buckets: pure arithmetic, shared by the in-process store and
//! mirrored line for line by the Redis scripts.
//!
//! A bucket of capacity `cap` (the per-minute limit) refills at `cap` per minute. Its
//! level may go below zero when a reconcile charges more than was reserved: that debt
//! refills like any other deficit.

use obleth_core::UnixMillis;

const MINUTE_MS: f64 = 60_000.0;

/// A bucket's level at a point in time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub level: f64,
    pub at: UnixMillis,
}

impl Bucket {
    /// A full bucket.
    pub fn full(cap: u64, now: UnixMillis) -> Bucket {
        Bucket { level: cap as f64, at: now }
    }

    /// The level at `now` (time never runs backwards here: an earlier `now` refills nothing).
    pub fn refilled(self, cap: u64, now: UnixMillis) -> Bucket {
        let elapsed = (now - self.at).max(0) as f64;
        let level = (self.level + elapsed * cap as f64 / MINUTE_MS).min(cap as f64);
        Bucket { level, at: now.max(self.at) }
    }

    /// Milliseconds until the level reaches `need`; `None` if it never can (`need > cap`).
    pub fn wait_ms(self, need: u64, cap: u64) -> Option<u64> {
        if need > cap || cap == 0 {
            return None;
        }
        let missing = need as f64 - self.level;
        if missing <= 0.0 {
            return Some(0);
        }
        Some((missing * MINUTE_MS / cap as f64).ceil() as u64)
    }

    /// Milliseconds until the bucket is full.
    pub fn reset_ms(self, cap: u64) -> u64 {
        if cap == 0 {
            return 0;
        }
        ((cap as f64 - self.level).max(0.0) * MINUTE_MS / cap as f64).ceil() as u64
    }

    /// Whole tokens available now.
    pub fn remaining(self) -> u64 {
        self.level.max(0.0).floor() as u64
    }

    /// Gives back (or, negative, takes) `delta`, never above `cap`.
    pub fn credit(self, delta: f64, cap: u64) -> Bucket {
        Bucket { level: (self.level + delta).min(cap as f64), at: self.at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refill_wait_and_reset() {
        let b = Bucket::full(600, 0);
        let b = Bucket { level: b.level - 600.0, at: 0 };
        assert_eq!(b.wait_ms(100, 600), Some(10_000));
        assert_eq!(b.reset_ms(600), 60_000);
        let b = b.refilled(600, 30_000);
        assert_eq!(b.remaining(), 300);
        assert_eq!(b.refilled(600, 1_000_000).remaining(), 600, "capped at capacity");
        assert_eq!(b.wait_ms(601, 600), None, "larger than the bucket");
        assert_eq!(b.credit(-500.0, 600).remaining(), 0, "debt shows as zero remaining");
        assert_eq!(b.credit(-500.0, 600).wait_ms(100, 600), Some(30_000));
        assert_eq!(b.refilled(600, 10_000).at, 30_000, "time never runs backwards");
    }
}
