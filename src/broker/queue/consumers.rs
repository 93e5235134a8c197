//! The consumers of one queue and the order in which they are served: highest priority first
//! (`x-priority`), round-robin within a priority, and a consumer without credit is skipped so
//! lower priorities get messages only while every higher one is blocked by its prefetch.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::limit::{Backlog, ChannelLimit};
use super::state::OwnerId;

/// Unique among the consumers of the broker (the channel that made it maps it to its tag).
pub type ConsumerId = u64;

#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub id: ConsumerId,
    /// The channel that receives the deliveries and owns them until they are settled.
    pub owner: OwnerId,
    pub no_ack: bool,
    /// Per-consumer prefetch (`basic.qos` `global=false`); 0 is unlimited.
    pub prefetch: u32,
    pub priority: i32,
    /// Channel-wide prefetch (`basic.qos` `global=true`), if the channel set one.
    pub channel_limit: Option<Arc<ChannelLimit>>,
    /// The consumer's connection's backlog of unwritten deliveries, if it keeps one.
    pub backlog: Option<Arc<Backlog>>,
}

#[derive(Debug)]
pub(super) struct Consumer {
    pub(super) spec: ConsumerSpec,
    /// Deliveries to this consumer not yet settled.
    pub(super) in_flight: u32,
}

impl Consumer {
    fn has_own_credit(&self) -> bool {
        self.spec.no_ack || self.spec.prefetch == 0 || self.in_flight < self.spec.prefetch
    }
}

/// Invariant: every id in `order` is a key of `by_id` and appears in exactly one level, the one
/// of its priority.
#[derive(Debug, Default)]
pub(super) struct Consumers {
    order: BTreeMap<Reverse<i32>, VecDeque<ConsumerId>>,
    by_id: HashMap<ConsumerId, Consumer>,
}

impl Consumers {
    pub(super) fn add(&mut self, spec: ConsumerSpec) {
        self.order
            .entry(Reverse(spec.priority))
            .or_default()
            .push_back(spec.id);
        self.by_id.insert(spec.id, Consumer { spec, in_flight: 0 });
    }

    pub(super) fn remove(&mut self, id: ConsumerId) -> Option<ConsumerSpec> {
        let consumer = self.by_id.remove(&id)?;
        let level = Reverse(consumer.spec.priority);
        if let Some(queue) = self.order.get_mut(&level) {
            queue.retain(|c| *c != id);
            if queue.is_empty() {
                self.order.remove(&level);
            }
        }
        Some(consumer.spec)
    }

    pub(super) fn get_mut(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.by_id.get_mut(&id)
    }

    pub(super) fn ids_of_owner(&self, owner: OwnerId) -> Vec<ConsumerId> {
        let mut ids: Vec<ConsumerId> = self
            .by_id
            .values()
            .filter(|c| c.spec.owner == owner)
            .map(|c| c.spec.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Chooses the consumer for the next message and charges it one unit of credit (its own
    /// and its channel's), or `None` when every consumer is blocked. The chosen consumer goes to
    /// the back of its priority level: that is the round-robin.
    pub(super) fn pick(&mut self) -> Option<&mut Consumer> {
        let mut chosen = None;
        'levels: for queue in self.order.values_mut() {
            for at in 0..queue.len() {
                let id = queue[at];
                let Some(consumer) = self.by_id.get(&id) else {
                    continue;
                };
                if !consumer.has_own_credit() {
                    continue;
                }
                let backlog = consumer.spec.backlog.as_ref();
                if !backlog.is_none_or(|b| b.try_acquire()) {
                    continue;
                }
                let channel_ok = consumer.spec.no_ack
                    || consumer
                        .spec
                        .channel_limit
                        .as_ref()
                        .is_none_or(|limit| limit.try_acquire());
                if !channel_ok {
                    if let Some(b) = backlog {
                        b.release();
                    }
                    continue;
                }
                queue.remove(at);
                queue.push_back(id);
                chosen = Some(id);
                break 'levels;
            }
        }
        let consumer = self.by_id.get_mut(&chosen?)?;
        if !consumer.spec.no_ack {
            consumer.in_flight += 1;
        }
        Some(consumer)
    }
}
