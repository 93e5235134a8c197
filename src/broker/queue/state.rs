//! The state machine of one queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::consumers::{ConsumerId, ConsumerSpec, Consumers};
use super::limit::ChannelLimit;
use crate::broker::message::Message;

/// The channel that holds a delivery until it is acked, rejected or requeued (unique in the broker).
pub type OwnerId = u64;

/// A message's place in its queue, given at enqueue and kept for its whole life, so that a
/// requeued message goes back exactly where it was (RabbitMQ's classic-queue order).
pub type Position = u64;

/// A message in a queue.
#[derive(Debug, Clone)]
pub struct Entry {
    pub message: Arc<Message>,
    /// Whether it was handed out before (the `redelivered` flag of its next delivery).
    pub redelivered: bool,
    /// How many times it was handed out.
    pub deliveries: u32,
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
}

#[derive(Debug)]
struct Unacked {
    entry: Entry,
    owner: OwnerId,
    consumer: Option<ConsumerId>,
    /// The channel-wide credit this delivery took, given back when it is settled.
    channel_limit: Option<Arc<ChannelLimit>>,
}

/// The state of one queue.
///
/// Invariants: a position is in at most one of `ready` and `unacked`; `ready_bytes` is the sum
/// of the body sizes in `ready`; a consumer's `in_flight` is the number of `unacked` entries
/// delivered to it while it was a consumer.
#[derive(Debug, Default)]
pub struct QueueState {
    ready: BTreeMap<Position, Entry>,
    ready_bytes: u64,
    unacked: HashMap<Position, Unacked>,
    next_position: Position,
    consumers: Consumers,
}

impl QueueState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Enqueues a message at the tail.
    pub fn publish(&mut self, message: Arc<Message>) -> Position {
        let position = self.next_position;
        self.next_position += 1;
        self.ready_bytes += message.body_size();
        self.ready.insert(
            position,
            Entry {
                message,
                redelivered: false,
                deliveries: 0,
            },
        );
        position
    }

    pub fn add_consumer(&mut self, spec: ConsumerSpec) {
        self.consumers.add(spec);
    }

    /// Removes a consumer. Its unacknowledged deliveries stay with its channel, as in AMQP: they
    /// are settled or requeued by the channel, not by the cancel.
    pub fn cancel_consumer(&mut self, id: ConsumerId) -> Option<ConsumerSpec> {
        let spec = self.consumers.remove(id)?;
        for unacked in self.unacked.values_mut() {
            if unacked.consumer == Some(id) {
                unacked.consumer = None;
            }
        }
        Some(spec)
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
                self.ready_bytes += entry.message.body_size();
                self.ready.insert(position, entry);
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
        let count = self.ready.len();
        self.ready.clear();
        self.ready_bytes = 0;
        count
    }

    /// The queue is going away: drops what is unacknowledged and gives back the channel-wide
    /// credit it held, since the channels' later acks will find no queue.
    pub fn release_all(&mut self) {
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

    fn pop_ready(&mut self) -> Option<(Position, Entry)> {
        let (position, entry) = self.ready.pop_first()?;
        self.ready_bytes -= entry.message.body_size();
        Some((position, entry))
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
        let delivery = Delivery {
            consumer,
            owner,
            position,
            message: Arc::clone(&entry.message),
            redelivered: entry.redelivered,
            settled: no_ack,
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
        Some(unacked.entry)
    }
}
