//! Length limits with `x-overflow: reject-publish(-dlx)`: publishers ask the queue's admission
//! counter before handing it a message, so a refusal is known at publish time (a publisher
//! nack under confirms) without a round trip to the queue task.
//!
//! The counter is the queue's ready messages as the task last published them plus the messages
//! admitted since and not yet taken from the mailbox. The task mirrors its ready count after
//! every wake-up; between mirrors the view can be slightly stale (a delivered message still
//! counted, so a publish is refused a moment early), never lower than the truth for publishes.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Admission {
    max_length: Option<u64>,
    max_bytes: Option<u64>,
    ready: AtomicU64,
    ready_bytes: AtomicU64,
    pending: AtomicU64,
    pending_bytes: AtomicU64,
}

impl Admission {
    pub fn new(max_length: Option<u64>, max_bytes: Option<u64>) -> Self {
        Self {
            max_length,
            max_bytes,
            ready: AtomicU64::new(0),
            ready_bytes: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
        }
    }

    /// Takes room for a message of `size` bytes, or refuses it when the queue is full.
    /// Admissions of concurrent publishers may both see room for one message; the queue then
    /// holds one more than its limit until the next delivery (the limit is advisory there).
    pub fn try_admit(&self, size: u64) -> bool {
        let count = self.ready.load(Ordering::Acquire) + self.pending.load(Ordering::Acquire);
        let bytes =
            self.ready_bytes.load(Ordering::Acquire) + self.pending_bytes.load(Ordering::Acquire);
        let fits_count = self.max_length.is_none_or(|max| count < max);
        let fits_bytes = self.max_bytes.is_none_or(|max| bytes + size <= max);
        if !(fits_count && fits_bytes) {
            return false;
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.pending_bytes.fetch_add(size, Ordering::AcqRel);
        true
    }

    /// The task took admitted messages from its mailbox (after mirroring its ready count).
    pub fn taken(&self, count: u64, bytes: u64) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(count))
            });
        let _ = self
            .pending_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(bytes))
            });
    }

    /// The task's ready count and bytes.
    pub fn mirror(&self, ready: u64, bytes: u64) {
        self.ready.store(ready, Ordering::Release);
        self.ready_bytes.store(bytes, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_either_limit() {
        let a = Admission::new(Some(2), Some(10));
        assert!(a.try_admit(4));
        assert!(a.try_admit(4));
        assert!(!a.try_admit(1), "count");
        a.mirror(2, 8);
        a.taken(2, 8);
        assert!(!a.try_admit(0));
        a.mirror(1, 4);
        assert!(!a.try_admit(7), "bytes");
        assert!(a.try_admit(6));
    }
}
