//! The channel-wide prefetch (`basic.qos` with `global=true`, RabbitMQ 3.x semantics): one
//! counter shared by a channel and every queue that delivers to its consumers.

use std::sync::atomic::{AtomicU32, Ordering};

/// Unacknowledged deliveries of one channel against its limit (0 means unlimited).
///
/// Queues take a unit before delivering to a consumer of the channel and give it back when the
/// delivery is acked, rejected or requeued; the channel may change the limit at any time.
#[derive(Debug, Default)]
pub struct ChannelLimit {
    limit: AtomicU32,
    in_flight: AtomicU32,
}

impl ChannelLimit {
    pub fn new(limit: u32) -> Self {
        Self {
            limit: AtomicU32::new(limit),
            in_flight: AtomicU32::new(0),
        }
    }

    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Release);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Takes one unit if the channel is under its limit.
    pub fn try_acquire(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                let limit = self.limit.load(Ordering::Acquire);
                (limit == 0 || n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release(&self) {
        // Saturating: a release can never take the count below zero even if misused.
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_counts_and_zero_is_unlimited() {
        let l = ChannelLimit::new(2);
        assert!(l.try_acquire());
        assert!(l.try_acquire());
        assert!(!l.try_acquire());
        l.release();
        assert!(l.try_acquire());
        l.set_limit(0);
        assert!((0..100).all(|_| l.try_acquire()));
        assert_eq!(l.in_flight(), 102);
    }
}
