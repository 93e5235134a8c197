//! The state machine of one queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::time::Instant;

use super::consumers::{ConsumerId, ConsumerSpec, Consumers};
use super::limit::ChannelLimit;
use crate::broker::message::Message;

/// The channel that holds a delivery until it is acked, rejected or requeued (unique in the broker).
pub type OwnerId = u64;

/// A message's place in its queue, given at enqueue and kept for its whole life, so that a
/// requeued message goes back exactly where it was (RabbitMQ's classic-queue order).
pub type Position = u64;

/// Where a ready message sorts: by priority, highest first, then by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ReadyKey {
    priority: std::cmp::Reverse<u8>,
    position: Position,
}

/// A message in a queue.
#[derive(Debug, Clone)]
pub struct Entry {
    pub message: Arc<Message>,
    /// Whether it was handed out before (the `redelivered` flag of its next delivery).
    pub redelivered: bool,
    /// How many times it was handed out.
    pub deliveries: u32,
    /// When its TTL runs out, fixed at enqueue (a requeue keeps it).
    pub expires_at: Option<Instant>,
    /// Its priority in this queue: the `priority` property capped at `x-max-priority`.
    pub priority: u8,
    /// Its place in the queue (also its key in the store's queue index).
    pub position: Position,
    /// It has an entry in the store's queue index, to remove when it leaves the queue.
    pub stored: bool,
}

/// A message handed to a consumer (or to `basic.get`), for the owner channel to send.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `None` for `basic.get`.
    pub consumer: Option<ConsumerId>,
    pub owner: OwnerId,
    pub position: Position,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Settled already (no-ack): there is nothing to acknowledge.
    pub settled: bool,
    /// The message has a store entry (a persistent message in a durable queue).
    pub stored: bool,
}

#[derive(Debug)]
struct Unacked {
    entry: Entry,
    owner: OwnerId,
    consumer: Option<ConsumerId>,
    /// The channel-wide credit this delivery took, given back when it is settled.
    channel_limit: Option<Arc<ChannelLimit>>,
    /// Delivered to a consumer that has since been cancelled: a single-active-consumer
    /// handover waits until it is settled.
    of_cancelled: bool,
}

/// The state of one queue.
///
/// Invariants: a position is in at most one of `ready` and `unacked`; `ready_bytes` is the sum
/// of the body sizes in `ready`; a consumer's `in_flight` is the number of `unacked` entries
/// delivered to it while it was a consumer; `held_by_cancelled` is the number of `unacked`
/// entries marked `of_cancelled`.
#[derive(Debug, Default)]
pub struct QueueState {
    /// Ready messages in delivery order: higher priority first, then position (FIFO within a
    /// level, and a requeued message goes back to its place in its level).
    ready: BTreeMap<ReadyKey, Entry>,
    /// `x-max-priority`: `None` makes every message priority 0.
    max_priority: Option<u8>,
    /// `x-delivery-limit`: a message returned more often than this is not requeued.
    delivery_limit: Option<u64>,
    /// Messages past the delivery limit, for the task to dead-letter or drop.
    over_limit: Vec<Entry>,
    ready_bytes: u64,
    unacked: HashMap<Position, Unacked>,
    /// Unacknowledged deliveries made to consumers since cancelled (kept as a count so that
    /// an ack need not look at the other unacknowledged messages).
    held_by_cancelled: usize,
    next_position: Position,
    consumers: Consumers,
    /// "Now" for expiry, set by the owning task once per wake-up; `None` expires nothing.
    clock: Option<Instant>,
    /// Expired messages taken out of `ready`, for the task to drop or dead-letter.
    expired: Vec<Entry>,
}

impl QueueState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A priority queue (`x-max-priority`): a message's `priority` property (missing = 0,
    /// above the maximum = the maximum) orders it before lower ones.
    pub fn with_max_priority(max_priority: Option<u8>) -> Self {
        Self {
            max_priority,
            ..Self::default()
        }
    }

    /// Sets `x-delivery-limit`: every return (requeue, lost channel) counts, and a message
    /// returned more than `limit` times goes to [`QueueState::take_over_limit`] instead.
    pub fn set_delivery_limit(&mut self, limit: Option<u64>) {
        self.delivery_limit = limit;
    }

    /// The messages that went past the delivery limit since the last call.
    pub fn take_over_limit(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.over_limit)
    }

    /// Enqueues a message at the tail.
    pub fn publish(&mut self, message: Arc<Message>) -> Position {
        self.publish_expiring(message, None)
    }

    /// Enqueues a message at the tail that expires at `expires_at`.
    pub fn publish_expiring(
        &mut self,
        message: Arc<Message>,
        expires_at: Option<Instant>,
    ) -> Position {
        let position = self.next_position;
        self.publish_at(position, message, expires_at, false);
        position
    }

    /// Enqueues a message at `position`, given by whoever routed it (positions are taken
    /// from the queue's counter by publishers, so they may arrive slightly out of order).
    pub fn publish_at(
        &mut self,
        position: Position,
        message: Arc<Message>,
        expires_at: Option<Instant>,
        stored: bool,
    ) {
        let priority = self.priority_of(&message);
        self.insert_loaded(Entry {
            message,
            redelivered: false,
            deliveries: 0,
            expires_at,
            priority,
            position,
            stored,
        });
    }

    /// The priority a message has in this queue.
    pub fn priority_of(&self, message: &Message) -> u8 {
        match self.max_priority {
            Some(max) => message.properties.priority.unwrap_or(0).min(max),
            None => 0,
        }
    }

    /// Puts a ready entry (new, or read back from the store) at its position.
    pub fn insert_loaded(&mut self, entry: Entry) {
        self.next_position = self.next_position.max(entry.position + 1);
        self.ready_bytes += entry.message.body_size();
        self.insert_ready(entry.position, entry);
    }

    /// One past the highest position this queue has seen.
    pub fn next_position(&self) -> Position {
        self.next_position
    }

    /// Whether this is a priority queue.
    pub fn has_priorities(&self) -> bool {
        self.max_priority.is_some()
    }

    /// Sets "now" for expiry. A message expires once `now` is strictly past its expiry, so a
    /// message with TTL 0 published in this wake-up can still be delivered in it (RabbitMQ:
    /// "deliver now or expire").
    pub fn set_clock(&mut self, now: Instant) {
        self.clock = Some(now);
    }

    /// Takes expired messages off the head (only the head: as RabbitMQ, an expired message
    /// behind a live one waits until it reaches the head, but is never delivered).
    pub fn expire_head(&mut self) {
        while let Some((&key, entry)) = self.ready.first_key_value() {
            if !self.is_expired(entry) {
                break;
            }
            if let Some(entry) = self.ready.remove(&key) {
                self.ready_bytes -= entry.message.body_size();
                self.expired.push(entry);
            }
        }
    }

    /// Removes the head message (the length limit's drop-head).
    pub fn drop_head(&mut self) -> Option<Entry> {
        self.pop_ready().map(|(_, entry)| entry)
    }

    /// The expired messages removed since the last call.
    pub fn take_expired(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.expired)
    }

    /// When the head message expires, for the task's timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.ready.first_key_value().and_then(|(_, e)| e.expires_at)
    }

    fn insert_ready(&mut self, position: Position, entry: Entry) {
        let key = ReadyKey {
            priority: std::cmp::Reverse(entry.priority),
            position,
        };
        self.ready.insert(key, entry);
    }

    fn is_expired(&self, entry: &Entry) -> bool {
        matches!((entry.expires_at, self.clock), (Some(at), Some(now)) if at < now)
    }

    pub fn add_consumer(&mut self, spec: ConsumerSpec) {
        self.consumers.add(spec);
    }

    /// Removes a consumer. Its unacknowledged deliveries stay with its channel, as in AMQP: they
    /// are settled or requeued by the channel, not by the cancel. Until they are, they count
    /// in [`QueueState::held_by_cancelled`].
    pub fn cancel_consumer(&mut self, id: ConsumerId) -> Option<ConsumerSpec> {
        let spec = self.consumers.remove(id)?;
        for unacked in self.unacked.values_mut() {
            if unacked.consumer == Some(id) {
                unacked.consumer = None;
                unacked.of_cancelled = true;
                self.held_by_cancelled += 1;
            }
        }
        Some(spec)
    }

    /// How many deliveries made to consumers since cancelled are not settled yet (acked,
    /// rejected, requeued, or returned by their channel's close).
    pub fn held_by_cancelled(&self) -> usize {
        self.held_by_cancelled
    }

    /// Hands up to `max` ready messages to consumers with credit, in queue order, appending the
    /// deliveries to `out`; returns how many. `max` lets the owning task bound one batch.
    pub fn dispatch(&mut self, max: usize, out: &mut Vec<Delivery>) -> usize {
        let mut count = 0;
        while count < max && !self.ready.is_empty() {
            let Some(consumer) = self.consumers.pick() else {
                break;
            };
            let (id, owner, no_ack) = (consumer.spec.id, consumer.spec.owner, consumer.spec.no_ack);
            let channel_limit = consumer.spec.channel_limit.clone();
            let Some((position, entry)) = self.pop_ready() else {
                break;
            };
            out.push(self.hand_out(position, entry, Some(id), owner, no_ack, channel_limit));
            count += 1;
        }
        count
    }

    /// `basic.get`: the head message, if any, and the number of messages still ready.
    /// Prefetch limits do not apply to `basic.get`.
    pub fn get(&mut self, owner: OwnerId, no_ack: bool) -> Option<(Delivery, usize)> {
        let (position, entry) = self.pop_ready()?;
        let delivery = self.hand_out(position, entry, None, owner, no_ack, None);
        Some((delivery, self.ready.len()))
    }

    /// Settles a delivery as processed. `None` if `owner` holds no such delivery.
    pub fn ack(&mut self, owner: OwnerId, position: Position) -> Option<Entry> {
        self.settle(owner, position)
    }

    /// Puts a delivery back in its original position, to be redelivered.
    pub fn requeue(&mut self, owner: OwnerId, position: Position) -> bool {
        match self.settle(owner, position) {
            Some(entry) => {
                // `deliveries` is how many times it was handed out, so returned.
                if self
                    .delivery_limit
                    .is_some_and(|limit| u64::from(entry.deliveries) > limit)
                {
                    self.over_limit.push(entry);
                    return true;
                }
                self.ready_bytes += entry.message.body_size();
                self.insert_ready(position, entry);
                true
            }
            None => false,
        }
    }

    /// The channel is gone: its consumers are removed and everything it held is requeued.
    pub fn owner_closed(&mut self, owner: OwnerId) {
        for id in self.consumers.ids_of_owner(owner) {
            self.consumers.remove(id);
        }
        let held: Vec<Position> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.owner == owner)
            .map(|(p, _)| *p)
            .collect();
        for position in held {
            self.requeue(owner, position);
        }
    }

    /// Removes every ready message (unacknowledged ones stay); returns how many went.
    pub fn purge(&mut self) -> usize {
        self.purge_entries().len()
    }

    /// Removes every ready message (unacknowledged ones stay) and returns them.
    pub fn purge_entries(&mut self) -> Vec<Entry> {
        self.ready_bytes = 0;
        std::mem::take(&mut self.ready).into_values().collect()
    }

    /// The queue is going away: drops what is unacknowledged and gives back the channel-wide
    /// credit it held, since the channels' later acks will find no queue.
    pub fn release_all(&mut self) {
        self.held_by_cancelled = 0;
        for (_, unacked) in self.unacked.drain() {
            if let Some(limit) = &unacked.channel_limit {
                limit.release();
            }
        }
    }

    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    pub fn unacked_count(&self) -> usize {
        self.unacked.len()
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// The head message that has not expired; expired ones on the way go to `expired`.
    fn pop_ready(&mut self) -> Option<(Position, Entry)> {
        loop {
            let (ReadyKey { position, .. }, entry) = self.ready.pop_first()?;
            self.ready_bytes -= entry.message.body_size();
            if self.is_expired(&entry) {
                self.expired.push(entry);
                continue;
            }
            return Some((position, entry));
        }
    }

    fn hand_out(
        &mut self,
        position: Position,
        mut entry: Entry,
        consumer: Option<ConsumerId>,
        owner: OwnerId,
        no_ack: bool,
        channel_limit: Option<Arc<ChannelLimit>>,
    ) -> Delivery {
        // With a delivery limit, a redelivery carries `x-delivery-count` (its returns so far),
        // on a copy of the properties: the body is shared, the queue keeps the original.
        let message = if self.delivery_limit.is_some() && entry.deliveries > 0 {
            let mut copy = Message::clone(&entry.message);
            let mut headers = copy.properties.headers.take().unwrap_or_default();
            headers.insert("x-delivery-count", i64::from(entry.deliveries));
            copy.properties.headers = Some(headers);
            Arc::new(copy)
        } else {
            Arc::clone(&entry.message)
        };
        let delivery = Delivery {
            consumer,
            owner,
            position,
            message,
            redelivered: entry.redelivered,
            settled: no_ack,
            stored: entry.stored,
        };
        entry.redelivered = true;
        entry.deliveries = entry.deliveries.saturating_add(1);
        if !no_ack {
            self.unacked.insert(
                position,
                Unacked {
                    entry,
                    owner,
                    consumer,
                    channel_limit,
                    of_cancelled: false,
                },
            );
        }
        delivery
    }

    fn settle(&mut self, owner: OwnerId, position: Position) -> Option<Entry> {
        if self.unacked.get(&position)?.owner != owner {
            return None;
        }
        let unacked = self.unacked.remove(&position)?;
        if let Some(consumer) = unacked.consumer.and_then(|id| self.consumers.get_mut(id)) {
            consumer.in_flight = consumer.in_flight.saturating_sub(1);
        }
        if let Some(limit) = &unacked.channel_limit {
            limit.release();
        }
        if unacked.of_cancelled {
            self.held_by_cancelled = self.held_by_cancelled.saturating_sub(1);
        }
        Some(unacked.entry)
    }
}

#[cfg(test)]
mod ttl_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn msg(body: &'static [u8]) -> Arc<Message> {
        Arc::new(Message {
            exchange: "".into(),
            routing_key: "q".into(),
            properties: Default::default(),
            body: Bytes::from_static(body),
            ttl: None,
            deaths: None,
        })
    }

    #[test]
    fn only_the_head_expires_but_expired_messages_are_never_handed_out() {
        let t0 = Instant::now();
        let mut q = QueueState::new();
        q.publish_expiring(msg(b"live"), Some(t0 + Duration::from_secs(60)));
        q.publish_expiring(msg(b"dead"), Some(t0));
        q.publish_expiring(msg(b"last"), None);
        q.set_clock(t0);
        // Expiry is strict: at its expiry instant a message is still live (TTL 0 delivers).
        q.expire_head();
        assert!(q.take_expired().is_empty());
        q.set_clock(t0 + Duration::from_millis(1));
        q.expire_head();
        assert!(q.take_expired().is_empty(), "the head has not expired");
        assert_eq!(q.next_expiry(), Some(t0 + Duration::from_secs(60)));
        let (first, _) = q.get(1, true).unwrap();
        assert_eq!(&first.message.body[..], b"live");
        let (second, left) = q.get(1, true).unwrap();
        assert_eq!((&second.message.body[..], left), (&b"last"[..], 0));
        let expired = q.take_expired();
        assert_eq!(expired.len(), 1);
        assert_eq!(&expired[0].message.body[..], b"dead");
        assert_eq!(q.ready_bytes(), 0);
    }

    #[test]
    fn a_requeued_message_keeps_its_expiry() {
        let t0 = Instant::now();
        let mut q = QueueState::new();
        let p = q.publish_expiring(msg(b"m"), Some(t0 + Duration::from_millis(10)));
        q.set_clock(t0);
        let (d, _) = q.get(7, false).unwrap();
        assert_eq!(d.position, p);
        q.set_clock(t0 + Duration::from_millis(20));
        q.expire_head();
        assert!(
            q.take_expired().is_empty(),
            "unacked messages do not expire"
        );
        assert!(q.requeue(7, p));
        q.expire_head();
        assert_eq!(q.take_expired().len(), 1);
        assert_eq!(q.ready_count(), 0);
    }
}
