//! The messaging state of one open channel: publish assembly, consumers, delivery tags and the
//! unacknowledged map, prefetch, confirm and tx modes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::assembler::Assembler;
use super::session::Session;
use crate::broker::message::Message;
use crate::broker::queue::{
    ChannelLimit, Command, ConsumerId, OwnerId, Position, QueueRef, Settle,
};
use crate::error::AmqpError;
use crate::protocol::{ReplyCode, ShortStr};

/// A consumer of this channel: on a queue, or the direct reply-to pseudo-consumer.
#[derive(Debug, Clone)]
pub struct ConsumerEntry {
    pub queue: Option<QueueRef>,
    pub id: ConsumerId,
}

/// A publish held back by tx until commit.
#[derive(Debug)]
pub struct HeldPublish {
    pub message: Arc<Message>,
    pub mandatory: bool,
    pub keys: Vec<String>,
}

/// What a transaction holds until commit.
#[derive(Debug, Default)]
pub struct Tx {
    pub publishes: Vec<HeldPublish>,
    /// Settlements (tag, queue, position, requeue); rollback puts them back as unacked.
    pub settles: Vec<(u64, QueueRef, Position, Settle)>,
}

/// One open channel.
///
/// Invariants: `unacked` holds every delivery tag handed out and not yet settled that needs
/// an acknowledgement, each with the queue and position to settle; `touched` has every queue
/// that may hold something for `owner` (consumers, unacked messages), so closing the channel
/// can tell each of them; `confirm` and `tx` are never both set.
#[derive(Debug)]
pub struct Channel {
    pub number: u16,
    /// Unique in the process, unlike the channel number, which is reused.
    pub owner: OwnerId,
    pub closing: bool,
    pub assembler: Assembler,
    pub consumers: HashMap<ShortStr, ConsumerEntry>,
    /// Tag -> (queue, position, when it was delivered); the time drives the consumer timeout.
    pub unacked: BTreeMap<u64, (QueueRef, Position, Instant)>,
    next_tag: u64,
    pub touched: HashMap<u64, QueueRef>,
    /// basic.qos global=false: the prefetch of consumers created from now on.
    pub prefetch: u32,
    /// basic.qos global=true: shared by every consumer of the channel (0: unlimited).
    pub global_prefetch: u32,
    pub limit: Arc<ChannelLimit>,
    /// Confirm mode: the sequence number of the next publish.
    pub confirm: Option<u64>,
    pub tx: Option<Tx>,
    /// The last queue declared on the channel, for the empty-name shortcut.
    pub last_queue: Option<String>,
    /// The direct reply-to key when the channel consumes `amq.rabbitmq.reply-to`.
    pub reply_key: Option<String>,
    /// Consumers just cancelled whose last deliveries may still be on their way; emptied by
    /// the connection once it has taken them (before cancel-ok goes out).
    pub draining: Vec<ShortStr>,
}

impl Channel {
    pub fn new(number: u16) -> Channel {
        static OWNERS: AtomicU64 = AtomicU64::new(1);
        Channel {
            number,
            owner: OWNERS.fetch_add(1, Ordering::Relaxed),
            closing: false,
            assembler: Assembler::default(),
            consumers: HashMap::new(),
            unacked: BTreeMap::new(),
            next_tag: 1,
            touched: HashMap::new(),
            prefetch: 0,
            global_prefetch: 0,
            limit: Arc::new(ChannelLimit::new(0)),
            confirm: None,
            tx: None,
            last_queue: None,
            reply_key: None,
            draining: Vec::new(),
        }
    }

    pub fn next_tag(&mut self) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        tag
    }

    pub fn touch(&mut self, q: &QueueRef) {
        self.touched.entry(q.id).or_insert_with(|| Arc::clone(q));
    }

    /// Takes the deliveries an ack/nack/reject names out of `unacked` (RabbitMQ's
    /// `collect_acks`): the tag must be outstanding, except `multiple` with tag 0 = all.
    pub fn take(
        &mut self,
        tag: u64,
        multiple: bool,
    ) -> Result<Vec<(u64, QueueRef, Position)>, AmqpError> {
        if multiple && tag == 0 {
            let all = std::mem::take(&mut self.unacked);
            return Ok(all.into_iter().map(|(t, (q, p, _))| (t, q, p)).collect());
        }
        if !self.unacked.contains_key(&tag) {
            return Err(AmqpError::new(
                ReplyCode::PRECONDITION_FAILED,
                format!("unknown delivery tag {tag}"),
            ));
        }
        if multiple {
            let rest = self.unacked.split_off(&(tag + 1));
            let taken = std::mem::replace(&mut self.unacked, rest);
            return Ok(taken.into_iter().map(|(t, (q, p, _))| (t, q, p)).collect());
        }
        Ok(self
            .unacked
            .remove(&tag)
            .map(|(q, p, _)| vec![(tag, q, p)])
            .unwrap_or_default())
    }

    /// Settles deliveries with their queues, one command per queue; then, when a channel-wide
    /// prefetch may have been freed, wakes the other queues this channel consumes from.
    pub async fn settle(&mut self, taken: Vec<(u64, QueueRef, Position)>, how: Settle) {
        let mut per_queue: Vec<(QueueRef, Vec<Position>)> = Vec::new();
        for (_, q, p) in taken {
            match per_queue.iter_mut().find(|(known, _)| known.id == q.id) {
                Some((_, positions)) => positions.push(p),
                None => per_queue.push((q, vec![p])),
            }
        }
        let owner = self.owner;
        for (q, positions) in &per_queue {
            let positions = positions.clone();
            let command = match how {
                Settle::Ack => Command::Ack { owner, positions },
                Settle::Requeue => Command::Requeue { owner, positions },
                Settle::Reject => Command::Reject { owner, positions },
            };
            let _ = q.tx.send(command).await;
        }
        if self.global_prefetch > 0 && !per_queue.is_empty() {
            self.wake_consumer_queues(|id| per_queue.iter().any(|(q, _)| q.id == id))
                .await;
        }
    }

    /// The consumer (acknowledgement) timeout: the first unacknowledged delivery older than
    /// its timeout (the queue's `x-consumer-timeout`, else `default_ms`; 0 disables) as
    /// `Err(timeout in ms)`, else the earliest deadline still ahead, if any.
    pub fn ack_deadline(&self, now: Instant, default_ms: u64) -> Result<Option<Instant>, u64> {
        let mut earliest: Option<Instant> = None;
        for (q, _, delivered) in self.unacked.values() {
            let ms = q.settings.load().consumer_timeout.unwrap_or(default_ms);
            if ms == 0 {
                continue;
            }
            let deadline = *delivered + Duration::from_millis(ms);
            if deadline <= now {
                return Err(ms);
            }
            earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
        }
        Ok(earliest)
    }

    /// Sends `Wake` to the queues this channel consumes from, except those `skip` names.
    pub async fn wake_consumer_queues(&self, skip: impl Fn(u64) -> bool) {
        let mut woken: Vec<u64> = Vec::new();
        for entry in self.consumers.values() {
            let Some(q) = &entry.queue else { continue };
            if skip(q.id) || woken.contains(&q.id) {
                continue;
            }
            woken.push(q.id);
            let _ = q.tx.send(Command::Wake).await;
        }
    }

    /// The channel is closing: every queue it touched requeues what the channel held and
    /// forgets its consumers; the direct reply-to consumer goes.
    pub async fn release(&mut self, session: &Session) {
        self.closing = true;
        self.tx = None;
        self.unacked.clear();
        self.consumers.clear();
        for (_, q) in self.touched.drain() {
            let _ = q.tx.send(Command::OwnerClosed(self.owner)).await;
        }
        if let Some(key) = self.reply_key.take() {
            session.registry.remove_reply_consumer(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::broker::queue::QueueShared;

    fn queue() -> QueueRef {
        let (tx, _) = tokio::sync::mpsc::channel(1);
        Arc::new(QueueShared {
            name: "q".into(),
            id: 1,
            durable: false,
            auto_delete: false,
            exclusive_owner: None,
            declared: Default::default(),
            settings: Default::default(),
            admission: Default::default(),
            tx,
            positions: Default::default(),
        })
    }

    fn channel_with(tags: &[u64]) -> Channel {
        let mut ch = Channel::new(1);
        let q = queue();
        for tag in tags {
            ch.unacked
                .insert(*tag, (Arc::clone(&q), *tag * 10, Instant::now()));
        }
        ch
    }

    fn tags(taken: &[(u64, QueueRef, Position)]) -> Vec<u64> {
        taken.iter().map(|(t, _, _)| *t).collect()
    }

    #[test]
    fn take_follows_rabbitmqs_collect_acks() {
        let mut ch = channel_with(&[1, 2, 3, 5]);
        assert_eq!(
            ch.take(4, false).unwrap_err().text,
            "unknown delivery tag 4"
        );
        assert_eq!(ch.take(4, true).unwrap_err().text, "unknown delivery tag 4");
        assert_eq!(tags(&ch.take(2, false).unwrap()), [2]);
        assert_eq!(tags(&ch.take(3, true).unwrap()), [1, 3]);
        assert_eq!(
            ch.take(0, false).unwrap_err().text,
            "unknown delivery tag 0"
        );
        assert_eq!(tags(&ch.take(0, true).unwrap()), [5]);
        assert!(ch.take(0, true).unwrap().is_empty());
        assert_eq!(ch.take(5, false).unwrap_err().code.code(), 406);
    }

    #[test]
    fn owners_are_unique_and_tags_start_at_one() {
        let mut a = Channel::new(1);
        let b = Channel::new(1);
        assert_ne!(a.owner, b.owner);
        assert_eq!(a.next_tag(), 1);
        assert_eq!(a.next_tag(), 2);
    }
}
