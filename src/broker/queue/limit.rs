//! The channel-wide prefetch (`basic.qos` with `global=true`, RabbitMQ 3.x semantics): one
//! counter shared by a channel and every queue that delivers to its consumers.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

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

/// Deliveries a connection was sent and has not written yet. Prefetch bounds what acked
/// consumers hold, but a no-ack consumer (or one with prefetch 0) on a client that reads slowly
/// would let queues pile deliveries up in its connection without end: queues take a slot per
/// delivery and skip the consumer when none is left; the connection gives slots back as it
/// writes, and wakes its queues if one was turned away (`starved`).
#[derive(Debug)]
pub struct Backlog {
    limit: usize,
    in_flight: AtomicUsize,
    starved: AtomicBool,
}

impl Backlog {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            in_flight: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
        }
    }

    pub fn try_acquire(&self) -> bool {
        // Marked before trying as well as after failing, so that a connection draining its
        // backlog meanwhile sees the mark after its last release and wakes the queues.
        if self.in_flight.load(Ordering::Acquire) >= self.limit {
            self.starved.store(true, Ordering::Release);
        }
        let ok = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        if !ok {
            self.starved.store(true, Ordering::Release);
        }
        ok
    }

    pub fn release(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Whether a queue was turned away since the last call.
    pub fn take_starved(&self) -> bool {
        self.starved.swap(false, Ordering::AcqRel)
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

    #[test]
    fn backlog_counts_and_remembers_a_refusal() {
        let b = Backlog::new(1);
        assert!(b.try_acquire());
        assert!(!b.take_starved());
        assert!(!b.try_acquire());
        assert!(b.take_starved());
        assert!(!b.take_starved());
        b.release();
        assert!(b.try_acquire());
    }
}
