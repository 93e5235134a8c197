//! A queue as a tokio task: it owns a [`QueueState`] and serves a bounded mailbox. Commands are
//! taken in batches (one wake-up handles everything waiting), then ready messages are handed to
//! consumers with credit and sent to their connections, grouped per connection.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{self, Duration, Instant};

use super::admission::Admission;
use super::consumers::{ConsumerId, ConsumerSpec};
use super::dead_letters::dead_letter_message;
use super::paging::{Disk, Recovered};
use super::state::{Delivery, Entry, OwnerId, Position, QueueState};
use crate::broker::dead_letter::{effective_ttl, DeathReason};
use crate::broker::error::{resource, BrokerError};
use crate::broker::message::Message;
use crate::broker::persist::Persistence;
use crate::broker::queue_args::{Overflow, QueueArgs};
use crate::broker::registry::{QueueSpec, Registry};
use crate::broker::settings::{effective, QueueSettings};
use crate::protocol::{FieldTable, ShortStr};

/// Commands waiting in a queue's mailbox; a full mailbox makes publishers wait (flow control).
pub const MAILBOX: usize = 1024;
/// Most commands handled, and most deliveries made, per wake-up.
const BATCH: usize = 256;
/// How long after a message's expiry the idle-queue timer fires.
const TICK: Duration = Duration::from_millis(1);

/// A queue as everyone else sees it: its fixed properties and its mailbox.
#[derive(Debug)]
pub struct QueueShared {
    pub name: String,
    /// Unique in the process: tells a queue from a later one with the same name.
    pub id: u64,
    pub durable: bool,
    pub auto_delete: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    /// The arguments as declared (validated), kept once: the redeclare equivalence check
    /// compares against them and a policy change recomputes `settings` from them.
    pub declared: QueueArgs,
    /// The rules in force. The queue task owns them (it alone stores a new value, on
    /// `Command::Reconfigure`); publishers read them on every publish, so the cell is
    /// lock-free to read.
    pub settings: ArcSwap<QueueSettings>,
    /// Ready and admitted counts, asked by publishers while the settings refuse publishes
    /// when full (`reject-publish(-dlx)` with a length limit).
    pub admission: Admission,
    pub tx: mpsc::Sender<Command>,
    /// The next position to give a message routed here: publishers take positions before
    /// the queue sees the message, so that its store entry can be written on their side.
    pub positions: AtomicU64,
}

impl QueueShared {
    /// Takes the position of a message about to be sent to this queue.
    pub fn take_position(&self) -> Position {
        self.positions.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the queue survives a restart (durable and not exclusive), and so keeps its
    /// persistent messages in the store.
    pub fn persistent(&self) -> bool {
        self.durable && self.exclusive_owner.is_none()
    }

    /// The arguments as declared.
    pub fn arguments(&self) -> &FieldTable {
        &self.declared.arguments
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<QueueSettings> {
        self.settings.load_full()
    }
}

pub type QueueRef = Arc<QueueShared>;

/// Where a consumer's deliveries go: its connection, channel and tag.
#[derive(Debug, Clone)]
pub struct Sink {
    pub events: mpsc::UnboundedSender<ConnEvent>,
    pub channel: u16,
    /// The channel's broker-wide id, which a reused channel number does not share.
    pub owner: OwnerId,
    pub tag: ShortStr,
}

/// One message for a connection to send as `basic.deliver`.
#[derive(Debug)]
pub struct Outgoing {
    pub channel: u16,
    pub owner: OwnerId,
    pub tag: ShortStr,
    /// The queue and position to acknowledge, `None` when there is nothing to acknowledge.
    pub ack: Option<(QueueRef, Position)>,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Took a slot of the connection's backlog, to give back once handled.
    pub counted: bool,
}

/// What queues (and direct reply-to publishers) tell a connection. The channel is unbounded:
/// prefetch credit bounds what a queue sends, and a queue must never wait on a connection that
/// may itself be waiting on the queue's mailbox.
#[derive(Debug)]
pub enum ConnEvent {
    Deliver(Vec<Outgoing>),
    /// The queue went away under this consumer (server-sent `basic.cancel`).
    Cancelled {
        channel: u16,
        owner: OwnerId,
        tag: ShortStr,
    },
}

/// How a consumer settles deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    /// nack/reject with requeue=true (and recover).
    Requeue,
    /// nack/reject with requeue=false: dead-lettered (reason `rejected`) or dropped.
    Reject,
}

/// A message on its way into a queue, at the position its publisher took.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub position: Position,
    pub message: Arc<Message>,
    /// The publisher wrote its store entry (persistent message, durable queue).
    pub stored: bool,
    /// It took room in the queue's admission count, for the task to give back.
    pub admitted: bool,
}

#[derive(Debug)]
pub enum Command {
    /// Messages routed here by one connection since its last batch, in publish order.
    Publish(Vec<Enqueued>),
    Consume {
        spec: ConsumerSpec,
        sink: Sink,
        exclusive: bool,
        reply: oneshot::Sender<Result<(), BrokerError>>,
    },
    Cancel {
        id: ConsumerId,
        reply: oneshot::Sender<()>,
    },
    Get {
        owner: OwnerId,
        no_ack: bool,
        reply: oneshot::Sender<Option<(Delivery, usize)>>,
    },
    Ack {
        owner: OwnerId,
        positions: Vec<Position>,
    },
    Requeue {
        owner: OwnerId,
        positions: Vec<Position>,
    },
    Reject {
        owner: OwnerId,
        positions: Vec<Position>,
    },
    OwnerClosed(OwnerId),
    /// Channel-wide credit was freed elsewhere: try to dispatch.
    Wake,
    Purge(oneshot::Sender<usize>),
    /// (ready messages, consumers)
    Stats(oneshot::Sender<(u32, u32)>),
    Delete {
        if_unused: bool,
        if_empty: bool,
        reply: oneshot::Sender<Result<u32, BrokerError>>,
    },
    /// Run by these settings from now on (a policy changed); replied once applied.
    Reconfigure {
        settings: Arc<QueueSettings>,
        reply: oneshot::Sender<()>,
    },
}

/// Queue ids, unique in the process and, for durable queues, in the store.
static IDS: AtomicU64 = AtomicU64::new(1);

/// New queues get ids above `id` (recovery calls this with the highest stored id).
pub fn reserve_ids_through(id: u64) {
    IDS.fetch_max(id.saturating_add(1), Ordering::Relaxed);
}

/// Starts the task of a new queue.
pub fn spawn(
    spec: &QueueSpec,
    args: QueueArgs,
    exclusive_owner: Option<u64>,
    registry: Weak<Registry>,
) -> QueueRef {
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    spawn_with(spec, args, exclusive_owner, registry, id, None)
}

/// Starts the task of a durable queue read back from the store, with id `id`.
pub fn spawn_recovered(
    spec: &QueueSpec,
    args: QueueArgs,
    registry: Weak<Registry>,
    id: u64,
    recovered: Recovered,
) -> QueueRef {
    reserve_ids_through(id);
    spawn_with(spec, args, None, registry, id, Some(recovered))
}

fn spawn_with(
    spec: &QueueSpec,
    args: QueueArgs,
    exclusive_owner: Option<u64>,
    registry: Weak<Registry>,
    id: u64,
    recovered: Option<Recovered>,
) -> QueueRef {
    let persistence: Option<Arc<Persistence>> =
        registry.upgrade().and_then(|r| r.persistence().cloned());
    let (tx, rx) = mpsc::channel(MAILBOX);
    let settings = Arc::new(effective(&args, None, None));
    let me = Arc::new(QueueShared {
        name: spec.name.clone(),
        id,
        durable: spec.durable,
        auto_delete: spec.auto_delete,
        exclusive_owner,
        declared: args,
        settings: ArcSwap::new(Arc::clone(&settings)),
        admission: Admission::default(),
        tx,
        positions: AtomicU64::new(recovered.map_or(0, |r| r.next_position)),
    });
    let can_page = settings.can_page();
    let disk = persistence.map(|p| Disk::new(p, id, me.persistent(), can_page, recovered));
    let task = QueueTask {
        disk,
        me: Arc::downgrade(&me),
        name: spec.name.clone(),
        auto_delete: spec.auto_delete,
        registry,
        state: {
            let mut state = QueueState::with_max_priority(settings.max_priority);
            state.set_delivery_limit(settings.delivery_limit);
            state
        },
        sinks: HashMap::new(),
        exclusive_consumer: None,
        had_consumer: false,
        waiting: VecDeque::new(),
        expires: settings.expires.map(Duration::from_millis),
        last_used: Instant::now(),
        settings,
        reconfigured: Vec::new(),
    };
    tokio::spawn(task.run(rx));
    me
}

/// Invariants: `sinks` has exactly the consumers of `state`; `exclusive_consumer`, when set,
/// is the only consumer.
struct QueueTask {
    /// The store side: removals, pages, the tail on disk (`None` without a store).
    disk: Option<Disk>,
    /// Weak so that the task does not keep its own mailbox open.
    me: Weak<QueueShared>,
    name: String,
    auto_delete: bool,
    registry: Weak<Registry>,
    state: QueueState,
    sinks: HashMap<ConsumerId, Sink>,
    exclusive_consumer: Option<ConsumerId>,
    had_consumer: bool,
    /// Single active consumer: the consumers waiting to take over, in arrival order (also
    /// while a cancelled active consumer's deliveries are still out, see `turn_taken`).
    waiting: VecDeque<(ConsumerSpec, Sink)>,
    /// `x-expires`: the queue is deleted once unused (no consumers, no get, no declare) for
    /// this long.
    expires: Option<Duration>,
    /// The last use, or when the last consumer left.
    last_used: Instant,
    /// The settings in force, also published in `QueueShared::settings` for publishers.
    settings: Arc<QueueSettings>,
    /// Reconfigure commands of this wake-up, answered at its end, once the new limits have
    /// been enforced.
    reconfigured: Vec<oneshot::Sender<()>>,
}

enum Flow {
    Continue,
    Stop,
}

impl QueueTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut out = Vec::new();
        // A recovered queue starts with its messages on disk only.
        self.refill().await;
        loop {
            // Woken by a command, or by the head message's expiry on an idle queue (1 ms
            // after it, since a message expires once the clock is strictly past its expiry).
            let wake = self.next_wake();
            let first = tokio::select! {
                biased;
                cmd = rx.recv() => match cmd {
                    Some(cmd) => Some(cmd),
                    None => break,
                },
                () = time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => None,
            };
            let now = Instant::now();
            self.state.set_clock(now);
            if first.is_none() && self.unused_deadline().is_some_and(|at| at <= now) {
                // Expired queues are deleted without dead-lettering their messages.
                self.shut_down();
                break;
            }
            if let Some(first) = first {
                // Commands (a get, say) see the head in memory whenever there is one on disk.
                self.refill().await;
                let mut flow = self.handle(first);
                let mut taken = 1;
                while matches!(flow, Flow::Continue) && taken < BATCH {
                    match rx.try_recv() {
                        Ok(cmd) => flow = self.handle(cmd),
                        Err(_) => break,
                    }
                    taken += 1;
                }
                if matches!(flow, Flow::Stop) {
                    break;
                }
            }
            self.refill().await;
            self.state.expire_head();
            self.settle_expired();
            loop {
                out.clear();
                let n = self.state.dispatch(BATCH, &mut out);
                self.send(&mut out);
                if n < BATCH {
                    break;
                }
                self.refill().await;
                tokio::task::yield_now().await;
            }
            self.settle_expired();
            self.enforce_limits();
            if self.auto_delete_due() {
                self.shut_down();
                break;
            }
            self.refill().await;
            if let Some(disk) = &mut self.disk {
                disk.flush();
            }
            for reply in self.reconfigured.drain(..) {
                let _ = reply.send(());
            }
        }
    }

    fn handle(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Publish(messages) => self.publish(messages),
            Command::Consume {
                spec,
                sink,
                exclusive,
                reply,
            } => {
                let _ = reply.send(self.consume(spec, sink, exclusive));
            }
            Command::Cancel { id, reply } => return self.cancel(id, reply),
            Command::Get {
                owner,
                no_ack,
                reply,
            } => self.get(owner, no_ack, reply),
            Command::Ack { owner, positions } => self.ack(owner, positions),
            Command::Requeue { owner, positions } => self.requeue(owner, positions),
            Command::Reject { owner, positions } => self.reject(owner, positions),
            Command::OwnerClosed(owner) => self.owner_closed(owner),
            Command::Wake => {}
            Command::Purge(reply) => {
                let _ = reply.send(self.purge());
            }
            // Asked by every declare of the existing queue, which renews its lease.
            Command::Stats(reply) => {
                self.last_used = Instant::now();
                let _ = reply.send((
                    count64to32(self.ready_total().0),
                    count(self.consumer_total()),
                ));
            }
            Command::Delete {
                if_unused,
                if_empty,
                reply,
            } => return self.delete(if_unused, if_empty, reply),
            Command::Reconfigure { settings, reply } => {
                self.reconfigure(settings);
                self.reconfigured.push(reply);
            }
        }
        Flow::Continue
    }

    fn publish(&mut self, messages: Vec<Enqueued>) {
        let (mut taken, mut taken_bytes) = (0, 0);
        let now = Instant::now();
        for e in messages {
            if e.admitted {
                taken += 1;
                taken_bytes += e.message.body_size();
            }
            let ttl = effective_ttl(self.settings.message_ttl, e.message.ttl);
            let expires_at = ttl.map(|ms| now + Duration::from_millis(ms));
            if let Some(disk) = &mut self.disk {
                if disk.page_out(&self.state, &e, expires_at) {
                    continue;
                }
            }
            self.state
                .publish_at(e.position, e.message, expires_at, e.stored);
        }
        // Mirror first, then release the admissions: publishers never see less.
        if let Some(me) = self.me.upgrade() {
            if self.settings.refuses_when_full() || taken > 0 {
                let (ready, bytes) = self.ready_total();
                me.admission.mirror(ready, bytes);
                me.admission.taken(taken, taken_bytes);
            }
        }
    }

    /// New settings (a policy changed), as RabbitMQ applies them to a running queue: a new
    /// message TTL applies to messages enqueued from now on (those already in the queue keep
    /// their expiry); new length limits apply before the reply, at the end of this wake-up
    /// (`enforce_limits`: drop-head drops or dead-letters the oldest, reject-publish refuses
    /// the next publishes; a queue that must stop paging reads its tail back first); a new
    /// delivery limit applies to the next returns; a new `expires` counts from the last
    /// use. Priority levels are fixed at declare.
    fn reconfigure(&mut self, settings: Arc<QueueSettings>) {
        self.state.set_delivery_limit(settings.delivery_limit);
        self.expires = settings.expires.map(Duration::from_millis);
        if let Some(disk) = &mut self.disk {
            disk.set_can_page(settings.can_page());
        }
        if let Some(me) = self.me.upgrade() {
            me.settings.store(Arc::clone(&settings));
            let (ready, bytes) = self.ready_total();
            me.admission.mirror(ready, bytes);
        }
        self.settings = settings;
    }

    fn consume(
        &mut self,
        spec: ConsumerSpec,
        sink: Sink,
        exclusive: bool,
    ) -> Result<(), BrokerError> {
        // RabbitMQ never grants an exclusive consume on a single-active-consumer queue.
        let busy = self.exclusive_consumer.is_some()
            || (exclusive && (self.settings.single_active_consumer || self.consumer_total() > 0));
        if busy {
            return Err(BrokerError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.name,
                self.vhost()
            )));
        }
        if self.settings.single_active_consumer && self.turn_taken() {
            // Single active consumer: later consumers wait their turn, in order.
            self.waiting.push_back((spec, sink));
        } else {
            if exclusive {
                self.exclusive_consumer = Some(spec.id);
            }
            self.sinks.insert(spec.id, sink);
            self.state.add_consumer(spec);
        }
        self.had_consumer = true;
        self.last_used = Instant::now();
        Ok(())
    }

    fn cancel(&mut self, id: ConsumerId, reply: oneshot::Sender<()>) -> Flow {
        self.remove_consumer(id);
        // Gone before cancel-ok, as in RabbitMQ: a declare after it makes a new queue.
        if self.auto_delete_due() {
            self.shut_down();
            let _ = reply.send(());
            return Flow::Stop;
        }
        let _ = reply.send(());
        Flow::Continue
    }

    fn get(
        &mut self,
        owner: OwnerId,
        no_ack: bool,
        reply: oneshot::Sender<Option<(Delivery, usize)>>,
    ) {
        self.last_used = Instant::now();
        let got = self.state.get(owner, no_ack);
        let tail = self.disk.as_ref().map_or(0, |d| d.tail().0);
        let got = got.map(|(d, left)| {
            if let Some(disk) = &mut self.disk {
                if d.stored {
                    disk.delivered(d.position);
                }
                if d.settled {
                    disk.removed_at(d.position, d.stored);
                }
            }
            (
                d,
                left.saturating_add(usize::try_from(tail).unwrap_or(usize::MAX)),
            )
        });
        let _ = reply.send(got);
        self.settle_expired();
    }

    fn ack(&mut self, owner: OwnerId, positions: Vec<Position>) {
        for p in positions {
            if let Some(entry) = self.state.ack(owner, p) {
                self.removed(&entry);
            }
        }
        self.promote_waiting();
    }

    fn requeue(&mut self, owner: OwnerId, positions: Vec<Position>) {
        for p in positions {
            self.state.requeue(owner, p);
        }
        self.promote_waiting();
    }

    fn reject(&mut self, owner: OwnerId, positions: Vec<Position>) {
        for p in positions {
            if let Some(entry) = self.state.ack(owner, p) {
                self.dead_letter(&entry.message, DeathReason::Rejected);
                self.removed(&entry);
            }
        }
        self.promote_waiting();
    }

    fn owner_closed(&mut self, owner: OwnerId) {
        self.waiting.retain(|(_, sink)| sink.owner != owner);
        let gone: Vec<ConsumerId> = self
            .sinks
            .iter()
            .filter(|(_, sink)| sink.owner == owner)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove_consumer(id);
        }
        self.state.owner_closed(owner);
        self.promote_waiting();
    }

    /// Empties the queue, on disk too; returns how many messages it removed.
    fn purge(&mut self) -> usize {
        let entries = self.state.purge_entries();
        let mut purged = entries.len();
        if let Some(disk) = &mut self.disk {
            let tail = usize::try_from(disk.tail().0).unwrap_or(usize::MAX);
            purged = purged.saturating_add(tail);
            let end = self
                .me
                .upgrade()
                .map_or(0, |me| me.positions.load(Ordering::Relaxed));
            disk.purge(&entries, end);
        }
        purged
    }

    fn delete(
        &mut self,
        if_unused: bool,
        if_empty: bool,
        reply: oneshot::Sender<Result<u32, BrokerError>>,
    ) -> Flow {
        let resource = || resource("queue", &self.name, &self.vhost());
        if if_unused && self.consumer_total() > 0 {
            let _ = reply.send(Err(BrokerError::InUse {
                resource: resource(),
                what: "in use",
            }));
        } else if if_empty && self.ready_total().0 > 0 {
            let _ = reply.send(Err(BrokerError::InUse {
                resource: resource(),
                what: "not empty",
            }));
        } else {
            let messages = count64to32(self.ready_total().0);
            self.shut_down();
            let _ = reply.send(Ok(messages));
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// When the task must wake up without a command: the head message's expiry (1 ms after
    /// it, since a message expires once the clock is strictly past it) or the queue's own.
    fn next_wake(&self) -> Option<Instant> {
        let message = self.state.next_expiry().map(|at| at + TICK);
        match (message, self.unused_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the queue expires if it stays unused; `None` while it has consumers.
    fn unused_deadline(&self) -> Option<Instant> {
        let expires = self.expires?;
        (self.consumer_total() == 0).then(|| self.last_used + expires)
    }

    /// Drop-head: drops (dead-letters with reason `maxlen`) from the head until the ready
    /// messages fit the limits. Runs after dispatch, so a waiting consumer still gets a message
    /// a full queue would drop (RabbitMQ delivers before enqueueing). Then mirrors the ready
    /// count for publishers of a queue that refuses publishes instead.
    fn enforce_limits(&mut self) {
        let (max_len, max_bytes) = (self.settings.max_length, self.settings.max_length_bytes);
        if self.settings.overflow == Overflow::DropHead {
            while max_len.is_some_and(|m| count64(self.state.ready_count()) > m)
                || max_bytes.is_some_and(|m| self.state.ready_bytes() > m)
            {
                let Some(entry) = self.state.drop_head() else {
                    break;
                };
                self.dead_letter(&entry.message, DeathReason::Maxlen);
                self.removed(&entry);
            }
            self.settle_expired();
        } else if let Some(me) = self.me.upgrade() {
            if self.settings.refuses_when_full() {
                let (ready, bytes) = self.ready_total();
                me.admission.mirror(ready, bytes);
            }
        }
    }

    /// Dead-letters (or drops) the messages that expired.
    fn settle_expired(&mut self) {
        for entry in self.state.take_expired() {
            self.dead_letter(&entry.message, DeathReason::Expired);
            self.removed(&entry);
        }
        for entry in self.state.take_over_limit() {
            self.dead_letter(&entry.message, DeathReason::DeliveryLimit);
            self.removed(&entry);
        }
    }

    /// The entry left the queue for good: its store entry goes too.
    fn removed(&mut self, entry: &Entry) {
        if let Some(disk) = &mut self.disk {
            disk.removed(entry);
        }
    }

    /// Ready messages, in memory and on disk: (count, bytes).
    fn ready_total(&self) -> (u64, u64) {
        let (tail, tail_bytes) = self.disk.as_ref().map_or((0, 0), Disk::tail);
        (
            count64(self.state.ready_count()).saturating_add(tail),
            self.state.ready_bytes().saturating_add(tail_bytes),
        )
    }

    /// Tops memory up from the tail on disk while it runs low.
    async fn refill(&mut self) {
        if let Some(disk) = &mut self.disk {
            // Non-paging queues (recovered priority or length-limited ones) read all of it.
            let mut rounds = 0;
            while disk.needs_refill(&self.state) && rounds < 1024 {
                disk.refill(&mut self.state).await;
                rounds += 1;
            }
        }
    }

    fn dead_letter(&self, message: &Message, reason: DeathReason) {
        if self.settings.dead_letter_exchange.is_none() {
            return;
        }
        if let Some(registry) = self.registry.upgrade() {
            dead_letter_message(&registry, &self.name, &self.settings, message, reason);
        }
    }

    /// An auto-delete queue goes when its last consumer does (never before it had one).
    fn auto_delete_due(&self) -> bool {
        self.auto_delete && self.had_consumer && self.consumer_total() == 0
    }

    fn vhost(&self) -> String {
        self.registry
            .upgrade()
            .map(|r| r.vhost.clone())
            .unwrap_or_default()
    }

    fn remove_consumer(&mut self, id: ConsumerId) {
        // Unused from now on if it was the last consumer.
        self.last_used = Instant::now();
        if let Some(i) = self.waiting.iter().position(|(spec, _)| spec.id == id) {
            self.waiting.remove(i);
            return;
        }
        self.state.cancel_consumer(id);
        self.sinks.remove(&id);
        if self.exclusive_consumer == Some(id) {
            self.exclusive_consumer = None;
        }
        self.promote_waiting();
    }

    /// Single active consumer: whether a new consumer must wait. The turn stays taken after
    /// the active consumer's cancel until what it was sent is settled, so that one consumer at
    /// a time processes the queue, in order: the next one then starts at the head, with
    /// whatever the cancelled one returned.
    fn turn_taken(&self) -> bool {
        self.state.consumer_count() > 0
            || self.state.held_by_cancelled() > 0
            || !self.waiting.is_empty()
    }

    /// Single active consumer: the longest-waiting consumer takes over once the turn is free
    /// (no active consumer, nothing a cancelled one was sent still unsettled). Cheap enough to
    /// call after every settlement.
    fn promote_waiting(&mut self) {
        if self.state.consumer_count() > 0 || self.state.held_by_cancelled() > 0 {
            return;
        }
        if let Some((spec, sink)) = self.waiting.pop_front() {
            self.sinks.insert(spec.id, sink);
            self.state.add_consumer(spec);
        }
    }

    /// Consumers, the waiting single-active-consumer ones included (as RabbitMQ counts them).
    fn consumer_total(&self) -> usize {
        self.state.consumer_count() + self.waiting.len()
    }

    /// Leaves the registry, gives back the channel credit held by unacknowledged messages and
    /// tells every consumer's connection that the consumer is gone.
    fn shut_down(&mut self) {
        if let (Some(registry), Some(me)) = (self.registry.upgrade(), self.me.upgrade()) {
            let definitions = registry.remove_queue(&me);
            if let Some(disk) = &mut self.disk {
                disk.delete_all(definitions, me.positions.load(Ordering::Relaxed));
            }
        }
        self.state.release_all();
        let waiting = self.waiting.drain(..).map(|(_, sink)| sink);
        let sinks: Vec<Sink> = self
            .sinks
            .drain()
            .map(|(_, sink)| sink)
            .chain(waiting)
            .collect();
        for sink in sinks {
            let _ = sink.events.send(ConnEvent::Cancelled {
                channel: sink.channel,
                owner: sink.owner,
                tag: sink.tag,
            });
        }
    }

    /// Sends a batch of deliveries, one event per connection.
    fn send(&mut self, out: &mut Vec<Delivery>) {
        if out.is_empty() {
            return;
        }
        let me = self.me.upgrade();
        let mut batches: Vec<(mpsc::UnboundedSender<ConnEvent>, Vec<Outgoing>)> = Vec::new();
        for d in out.drain(..) {
            if let Some(disk) = &mut self.disk {
                if d.stored {
                    disk.delivered(d.position);
                }
                if d.settled {
                    disk.removed_at(d.position, d.stored);
                }
            }
            let Some(sink) = d.consumer.and_then(|id| self.sinks.get(&id)) else {
                continue;
            };
            let outgoing = Outgoing {
                channel: sink.channel,
                owner: d.owner,
                tag: sink.tag.clone(),
                ack: if d.settled {
                    None
                } else {
                    me.clone().map(|q| (q, d.position))
                },
                message: d.message,
                redelivered: d.redelivered,
                counted: true,
            };
            match batches
                .iter_mut()
                .find(|(tx, _)| tx.same_channel(&sink.events))
            {
                Some((_, batch)) => batch.push(outgoing),
                None => batches.push((sink.events.clone(), vec![outgoing])),
            }
        }
        for (tx, batch) in batches {
            // A connection that is gone has its channels' OwnerClosed on the way: the
            // deliveries are requeued then.
            let _ = tx.send(ConnEvent::Deliver(batch));
        }
    }
}

fn count64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn count64to32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
