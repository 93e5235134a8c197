//! The queue against a simple model: random sequences of publish, consume, cancel, dispatch,
//! ack, nack (with and without requeue), get, purge and channel close must keep FIFO order with
//! requeue in place, never exceed a consumer's or a channel's prefetch, serve higher consumer
//! priorities first, set `redelivered` exactly on messages handed out before, count what
//! cancelled consumers still hold, and never stop dispatching while a ready message and a
//! consumer with credit are both there.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::broker::message::Message;
use crate::protocol::BasicProperties;

fn message(position: u64) -> Arc<Message> {
    Arc::new(Message {
        exchange: "".into(),
        routing_key: "k".into(),
        // Priorities 0..=3 (capped by a priority queue's maximum, ignored by a plain queue).
        properties: BasicProperties {
            priority: Some(message_priority(position)),
            ..BasicProperties::default()
        },
        body: Bytes::from(vec![0u8; (position % 7) as usize]),
        ttl: None,
        deaths: None,
    })
}

fn message_priority(position: u64) -> u8 {
    (position % 4) as u8
}

#[derive(Debug, Clone)]
enum Op {
    Publish(u8),
    Consume {
        owner: u64,
        prefetch: u32,
        no_ack: bool,
        priority: i32,
    },
    Cancel(usize),
    Dispatch(usize),
    Ack(usize),
    AckAsStranger(usize),
    Nack {
        pick: usize,
        requeue: bool,
    },
    Get {
        owner: u64,
        no_ack: bool,
    },
    Purge,
    CloseOwner(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..5).prop_map(Op::Publish),
        1 => (0u64..3, 0u32..4, any::<bool>(), 0i32..3).prop_map(|(owner, prefetch, no_ack, priority)| {
            Op::Consume { owner, prefetch, no_ack, priority }
        }),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => (1usize..6).prop_map(Op::Dispatch),
        2 => any::<usize>().prop_map(Op::Ack),
        1 => any::<usize>().prop_map(Op::AckAsStranger),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, requeue)| Op::Nack { pick, requeue }),
        1 => (0u64..3, any::<bool>()).prop_map(|(owner, no_ack)| Op::Get { owner, no_ack }),
        1 => Just(Op::Purge),
        1 => (0u64..3).prop_map(Op::CloseOwner),
    ]
}

#[derive(Debug, Clone, Copy)]
struct ModelConsumer {
    owner: u64,
    prefetch: u32,
    no_ack: bool,
    priority: i32,
}

#[derive(Debug, Clone, Copy)]
struct ModelUnacked {
    owner: u64,
    consumer: Option<u64>,
    took_channel_credit: bool,
    /// Its consumer was cancelled while it was out.
    of_cancelled: bool,
}

/// Channel-wide limits of the three channels: none, 2, and 0 (set, but unlimited).
fn channel_limit_of(owner: u64) -> Option<u32> {
    match owner {
        1 => Some(2),
        2 => Some(0),
        _ => None,
    }
}

#[derive(Default)]
struct Model {
    published: u64,
    /// Ready messages in delivery order: priority (highest first), then position.
    ready: BTreeSet<(Reverse<u8>, Position)>,
    max_priority: Option<u8>,
    handed_out: HashSet<Position>,
    unacked: BTreeMap<Position, ModelUnacked>,
    consumers: BTreeMap<ConsumerId, ModelConsumer>,
    next_consumer: ConsumerId,
}

impl Model {
    fn key(&self, position: Position) -> (Reverse<u8>, Position) {
        let priority = self
            .max_priority
            .map_or(0, |max| message_priority(position).min(max));
        (Reverse(priority), position)
    }

    fn in_flight(&self, consumer: ConsumerId) -> u32 {
        self.unacked
            .values()
            .filter(|u| u.consumer == Some(consumer))
            .count() as u32
    }

    fn channel_in_flight(&self, owner: u64) -> u32 {
        self.unacked
            .values()
            .filter(|u| u.owner == owner && u.took_channel_credit)
            .count() as u32
    }

    fn has_credit(&self, id: ConsumerId) -> bool {
        let c = self.consumers[&id];
        if c.no_ack {
            return true;
        }
        let own = c.prefetch == 0 || self.in_flight(id) < c.prefetch;
        let channel = match channel_limit_of(c.owner) {
            None | Some(0) => true,
            Some(limit) => self.channel_in_flight(c.owner) < limit,
        };
        own && channel
    }

    fn nth_unacked(&self, pick: usize) -> Option<(Position, ModelUnacked)> {
        if self.unacked.is_empty() {
            return None;
        }
        self.unacked
            .iter()
            .nth(pick % self.unacked.len())
            .map(|(p, u)| (*p, *u))
    }

    fn settle(&mut self, position: Position) -> ModelUnacked {
        self.unacked.remove(&position).unwrap()
    }
}

fn run(ops: Vec<Op>, max_priority: Option<u8>) {
    let mut queue = QueueState::with_max_priority(max_priority);
    let mut model = Model {
        max_priority,
        ..Model::default()
    };
    let limits: HashMap<u64, Arc<ChannelLimit>> = (0..3)
        .filter_map(|o| channel_limit_of(o).map(|l| (o, Arc::new(ChannelLimit::new(l)))))
        .collect();

    for op in ops {
        step(&mut queue, &mut model, &limits, op);
        check(&queue, &model, &limits);
    }
}

/// Applies one operation to the queue and the model, checking what the queue answers.
fn step(
    queue: &mut QueueState,
    model: &mut Model,
    limits: &HashMap<u64, Arc<ChannelLimit>>,
    op: Op,
) {
    match op {
        Op::Publish(n) => {
            for _ in 0..n {
                let position = queue.publish(message(model.published));
                assert_eq!(position, model.published);
                model.ready.insert(model.key(position));
                model.published += 1;
            }
        }
        Op::Consume {
            owner,
            prefetch,
            no_ack,
            priority,
        } => {
            let id = model.next_consumer;
            model.next_consumer += 1;
            queue.add_consumer(ConsumerSpec {
                id,
                owner,
                no_ack,
                prefetch,
                priority,
                channel_limit: limits.get(&owner).cloned(),
                backlog: None,
            });
            model.consumers.insert(
                id,
                ModelConsumer {
                    owner,
                    prefetch,
                    no_ack,
                    priority,
                },
            );
        }
        Op::Cancel(pick) => cancel(queue, model, pick),
        Op::Dispatch(max) => dispatch(queue, model, max),
        Op::Ack(pick) => {
            if let Some((position, u)) = model.nth_unacked(pick) {
                assert!(queue.ack(u.owner, position).is_some());
                model.settle(position);
            }
        }
        Op::AckAsStranger(pick) => {
            if let Some((position, u)) = model.nth_unacked(pick) {
                assert!(
                    queue.ack(u.owner + 10, position).is_none(),
                    "only the owner settles"
                );
            }
        }
        Op::Nack { pick, requeue } => {
            if let Some((position, u)) = model.nth_unacked(pick) {
                if requeue {
                    assert!(queue.requeue(u.owner, position));
                    model.ready.insert(model.key(position));
                } else {
                    assert!(queue.ack(u.owner, position).is_some());
                }
                model.settle(position);
            }
        }
        Op::Get { owner, no_ack } => get(queue, model, owner, no_ack),
        Op::Purge => {
            assert_eq!(queue.purge(), model.ready.len());
            model.ready.clear();
        }
        Op::CloseOwner(owner) => {
            queue.owner_closed(owner);
            model.consumers.retain(|_, c| c.owner != owner);
            let held: Vec<Position> = model
                .unacked
                .iter()
                .filter(|(_, u)| u.owner == owner)
                .map(|(p, _)| *p)
                .collect();
            for position in held {
                model.settle(position);
                model.ready.insert(model.key(position));
            }
        }
    }
}

fn cancel(queue: &mut QueueState, model: &mut Model, pick: usize) {
    if model.consumers.is_empty() {
        return;
    }
    let id = *model
        .consumers
        .keys()
        .nth(pick % model.consumers.len())
        .unwrap();
    assert!(queue.cancel_consumer(id).is_some());
    model.consumers.remove(&id);
    for u in model.unacked.values_mut() {
        if u.consumer == Some(id) {
            u.consumer = None;
            u.of_cancelled = true;
        }
    }
}

/// A dispatch hands out ready messages in priority order, to consumers with credit.
fn dispatch(queue: &mut QueueState, model: &mut Model, max: usize) {
    let mut out = Vec::new();
    let count = queue.dispatch(max, &mut out);
    assert_eq!(count, out.len());
    assert!(count <= max);
    for d in out {
        let id = d.consumer.expect("a dispatch goes to a consumer");
        let c = model.consumers[&id];
        assert_eq!(
            Some(d.position),
            model.ready.first().map(|k| k.1),
            "priority order, FIFO within a level, requeue in place"
        );
        assert!(model.has_credit(id), "consumer {id} had no credit");
        for (other, oc) in &model.consumers {
            if oc.priority > c.priority {
                assert!(
                    !model.has_credit(*other),
                    "a higher priority consumer had credit"
                );
            }
        }
        assert_eq!(d.redelivered, model.handed_out.contains(&d.position));
        assert_eq!(d.owner, c.owner);
        assert_eq!(d.settled, c.no_ack);
        model.ready.remove(&model.key(d.position));
        model.handed_out.insert(d.position);
        if !c.no_ack {
            let took_channel_credit = channel_limit_of(c.owner).is_some();
            model.unacked.insert(
                d.position,
                ModelUnacked {
                    owner: c.owner,
                    consumer: Some(id),
                    took_channel_credit,
                    of_cancelled: false,
                },
            );
        }
    }
    if count < max {
        let anyone = model.consumers.keys().any(|id| model.has_credit(*id));
        assert!(model.ready.is_empty() || !anyone, "dispatch stopped early");
    }
}

fn get(queue: &mut QueueState, model: &mut Model, owner: u64, no_ack: bool) {
    let got = queue.get(owner, no_ack);
    match model.ready.pop_first() {
        None => assert!(got.is_none()),
        Some((_, position)) => {
            let (d, remaining) = got.expect("a ready message");
            assert_eq!(d.position, position);
            assert_eq!(remaining, model.ready.len());
            assert_eq!(d.redelivered, model.handed_out.contains(&position));
            assert!(d.consumer.is_none());
            model.handed_out.insert(position);
            if !no_ack {
                model.unacked.insert(
                    position,
                    ModelUnacked {
                        owner,
                        consumer: None,
                        took_channel_credit: false,
                        of_cancelled: false,
                    },
                );
            }
        }
    }
}

/// The invariants after every operation: counts, credit and bytes agree with the model.
fn check(queue: &QueueState, model: &Model, limits: &HashMap<u64, Arc<ChannelLimit>>) {
    assert_eq!(queue.ready_count(), model.ready.len());
    assert_eq!(queue.unacked_count(), model.unacked.len());
    assert_eq!(queue.consumer_count(), model.consumers.len());
    assert_eq!(
        queue.held_by_cancelled(),
        model.unacked.values().filter(|u| u.of_cancelled).count(),
        "deliveries of cancelled consumers still out"
    );
    let bytes: u64 = model.ready.iter().map(|(_, p)| p % 7).sum();
    assert_eq!(queue.ready_bytes(), bytes);
    for (owner, limit) in limits {
        assert_eq!(
            limit.in_flight(),
            model.channel_in_flight(*owner),
            "channel {owner} credit"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn queue_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops, None);
    }

    #[test]
    fn priority_queue_agrees_with_the_model(
        ops in proptest::collection::vec(op(), 1..80),
        max in 0u8..4,
    ) {
        run(ops, Some(max));
    }
}

#[test]
fn equal_priorities_share_round_robin() {
    let mut queue = QueueState::new();
    for i in 0..6 {
        queue.publish(message(i));
    }
    for id in 0..3 {
        queue.add_consumer(ConsumerSpec {
            id,
            owner: 0,
            no_ack: false,
            prefetch: 0,
            priority: 0,
            channel_limit: None,
            backlog: None,
        });
    }
    let mut out = Vec::new();
    queue.dispatch(usize::MAX, &mut out);
    let order: Vec<u64> = out.iter().map(|d| d.consumer.unwrap()).collect();
    assert_eq!(order, [0, 1, 2, 0, 1, 2]);
}

#[test]
fn lower_priority_gets_messages_only_while_higher_is_blocked() {
    let mut queue = QueueState::new();
    for i in 0..5 {
        queue.publish(message(i));
    }
    let spec = |id, prefetch, priority| ConsumerSpec {
        id,
        owner: 0,
        no_ack: false,
        prefetch,
        priority,
        channel_limit: None,
        backlog: None,
    };
    queue.add_consumer(spec(1, 0, 0));
    queue.add_consumer(spec(2, 2, 10));
    let mut out = Vec::new();
    queue.dispatch(usize::MAX, &mut out);
    let order: Vec<u64> = out.iter().map(|d| d.consumer.unwrap()).collect();
    assert_eq!(order, [2, 2, 1, 1, 1]);
}

#[test]
fn requeued_message_returns_to_its_place_marked_redelivered() {
    let mut queue = QueueState::new();
    for i in 0..3 {
        queue.publish(message(i));
    }
    let (first, _) = queue.get(9, false).unwrap();
    assert!(!first.redelivered);
    assert!(queue.requeue(9, first.position));
    let (again, remaining) = queue.get(9, true).unwrap();
    assert_eq!(again.position, first.position);
    assert!(again.redelivered);
    assert_eq!(remaining, 2);
}

#[test]
fn a_consumer_whose_connection_is_backed_up_is_skipped() {
    let mut queue = QueueState::new();
    for i in 0..4 {
        queue.publish(message(i));
    }
    let backlog = Arc::new(Backlog::new(1));
    for id in 0..2 {
        queue.add_consumer(ConsumerSpec {
            id,
            owner: id,
            no_ack: true,
            prefetch: 0,
            priority: 0,
            channel_limit: None,
            backlog: (id == 0).then(|| Arc::clone(&backlog)),
        });
    }
    let mut out = Vec::new();
    queue.dispatch(usize::MAX, &mut out);
    let order: Vec<u64> = out.iter().map(|d| d.consumer.unwrap()).collect();
    assert_eq!(order, [0, 1, 1, 1]);
    assert!(backlog.take_starved());
}

#[test]
fn releasing_everything_gives_back_channel_credit() {
    let mut queue = QueueState::new();
    for i in 0..3 {
        queue.publish(message(i));
    }
    let limit = Arc::new(ChannelLimit::new(2));
    queue.add_consumer(ConsumerSpec {
        id: 1,
        owner: 1,
        no_ack: false,
        prefetch: 0,
        priority: 0,
        channel_limit: Some(Arc::clone(&limit)),
        backlog: None,
    });
    let mut out = Vec::new();
    assert_eq!(queue.dispatch(usize::MAX, &mut out), 2);
    assert_eq!(limit.in_flight(), 2);
    queue.release_all();
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(queue.unacked_count(), 0);
    assert_eq!(queue.ready_count(), 1);
}
