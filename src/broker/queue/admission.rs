//! Length limits with `x-overflow: reject-publish(-dlx)`: publishers ask the queue's admission
//! counter before handing it a message, so a refusal is known at publish time (a publisher
//! nack under confirms) without a round trip to the queue task.
//!
//! The limits are the queue's current settings (a policy may change them while publishers
//! run), passed in by [`QueueShared::offer`], the one place a message enters a queue.
//!
//! The counter is the queue's ready messages as the task last published them plus the messages
//! admitted since and not yet taken from the mailbox. The task mirrors its ready count after
//! every wake-up; between mirrors the view can be slightly stale (a delivered message still
//! counted, so a publish is refused a moment early), never lower than the truth for publishes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::paging::enqueue_for;
use super::task::{Enqueued, QueueShared};
use crate::broker::message::Message;
use crate::broker::persist::{Persistence, PublishWrites};
use crate::broker::queue_args::Overflow;
use crate::store::MessageId;

/// Why a queue refused a message: it is full and its overflow refuses publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `reject-publish`: a nack under confirms.
    RejectPublish,
    /// `reject-publish-dlx`: a nack, and the refused message is dead-lettered.
    RejectPublishDlx,
}

impl QueueShared {
    /// The queue takes `message` or refuses it: admission under the current settings (length
    /// limits of a queue that refuses when full), then its position and store entry (see
    /// [`enqueue_for`]). The entry is for the caller to send to the queue's mailbox.
    pub fn offer(
        &self,
        message: &Arc<Message>,
        persistence: Option<&Persistence>,
        writes: &mut PublishWrites,
        stored_id: &mut Option<MessageId>,
    ) -> Result<Enqueued, Refused> {
        let settings = self.settings.load();
        let admitted = settings.refuses_when_full();
        if admitted
            && !self.admission.try_admit(
                message.body_size(),
                settings.max_length,
                settings.max_length_bytes,
            )
        {
            return Err(match settings.overflow {
                Overflow::RejectPublishDlx => Refused::RejectPublishDlx,
                _ => Refused::RejectPublish,
            });
        }
        let mut e = enqueue_for(persistence, self, &settings, message, writes, stored_id);
        e.admitted = admitted;
        Ok(e)
    }
}

#[derive(Debug, Default)]
pub struct Admission {
    ready: AtomicU64,
    ready_bytes: AtomicU64,
    pending: AtomicU64,
    pending_bytes: AtomicU64,
}

impl Admission {
    /// Takes room for a message of `size` bytes, or refuses it when the queue is full.
    /// Admissions of concurrent publishers may both see room for one message; the queue then
    /// holds one more than its limit until the next delivery (the limit is advisory there).
    pub fn try_admit(&self, size: u64, max_length: Option<u64>, max_bytes: Option<u64>) -> bool {
        let count = self.ready.load(Ordering::Acquire) + self.pending.load(Ordering::Acquire);
        let bytes =
            self.ready_bytes.load(Ordering::Acquire) + self.pending_bytes.load(Ordering::Acquire);
        let fits_count = max_length.is_none_or(|max| count < max);
        let fits_bytes = max_bytes.is_none_or(|max| bytes + size <= max);
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
        let a = Admission::default();
        let admit = |size| a.try_admit(size, Some(2), Some(10));
        assert!(admit(4));
        assert!(admit(4));
        assert!(!admit(1), "count");
        a.mirror(2, 8);
        a.taken(2, 8);
        assert!(!admit(0));
        a.mirror(1, 4);
        assert!(!admit(7), "bytes");
        assert!(admit(6));
    }
}
