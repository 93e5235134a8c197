//! The exchanges, bindings and queues of one virtual host, shared by every connection.
//!
//! Routing runs on the publisher's connection task against a snapshot of the topology that it
//! loads without a lock (`ArcSwap`); declarations, bindings and deletions are serialized by the
//! `writer` mutex, build the next topology from a copy (O(1): every map in it is persistent)
//! and publish it when done. So a publish never waits for a declare, and a declare is seen by
//! every publish that starts after its `declare-ok`. Locks: `writer` and `reply_consumers` are
//! never held together, and neither is held across an `.await` (queue mailboxes are sent to
//! after the handles are cloned out). See "Concurrency rules" in docs/architecture.md.

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::mpsc;

use super::equivalence;
use super::error::{resource, BrokerError};
use super::exchange::{ExchangeKind, Router};
use super::persist::{
    self, BindingRecord, DefinitionChanges, ExchangeRecord, Persistence, QueueRecord,
};
use super::queue::{ConnEvent, QueueRef};
use super::queue_args::{self, QueueArgError, QueueFlags, QueueName};
use super::settings::{effective_alternate, PolicyValues};
use crate::protocol::{FieldTable, FieldValue};

/// The exchanges every vhost has (besides the default one, named "").
pub const STANDARD_EXCHANGES: [(&str, ExchangeKind); 5] = [
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

/// Where a binding leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dest {
    Queue(Arc<str>),
    Exchange(Arc<str>),
}

/// An exchange and its bindings (as the source).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    /// The alternate exchange in force (`settings::effective_alternate`).
    alternate: Option<Arc<str>>,
    router: Router<Dest>,
}

impl Exchange {
    fn alternate(&self) -> Option<&str> {
        self.alternate.as_deref()
    }
}

/// What `exchange.declare` asks for.
#[derive(Debug, Clone)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// What `queue.declare` asks for (the name already resolved).
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// Invariant: every `Dest::Queue` in a router names a queue in `queues` and every
/// `Dest::Exchange` an exchange in `exchanges`; deleting either removes the bindings to it.
///
/// Persistent maps of shared values: a copy shares everything, and a change copies only the
/// path to what it changes (an exchange is copied when its bindings change, `Arc::make_mut`).
#[derive(Debug, Default, Clone)]
struct Topology {
    exchanges: imbl::HashMap<Arc<str>, Arc<Exchange>>,
    queues: imbl::HashMap<Arc<str>, QueueRef>,
    /// The bindings kept in the store (both ends durable), by store key, so that removing
    /// an exchange or queue can delete its bindings' records.
    durable_bindings: imbl::HashMap<bytes::Bytes, Arc<BindingRecord>>,
}

impl Topology {
    fn exchange_mut(&mut self, name: &str) -> Option<&mut Exchange> {
        self.exchanges.get_mut(name).map(Arc::make_mut)
    }
}

/// A change to a vhost's topology in progress: a private copy of the current snapshot, which
/// becomes the snapshot that routing reads when the change is dropped (also on an error
/// return, unchanged then). Holding one holds the vhost's writer lock.
struct TopologyChange<'r> {
    next: Topology,
    published: &'r ArcSwap<Topology>,
    _writer: MutexGuard<'r, ()>,
}

impl Deref for TopologyChange<'_> {
    type Target = Topology;

    fn deref(&self) -> &Topology {
        &self.next
    }
}

impl DerefMut for TopologyChange<'_> {
    fn deref_mut(&mut self) -> &mut Topology {
        &mut self.next
    }
}

impl Drop for TopologyChange<'_> {
    fn drop(&mut self) {
        self.published
            .store(Arc::new(std::mem::take(&mut self.next)));
    }
}

/// A direct reply-to consumer: where replies to `amq.rabbitmq.reply-to.<key>` go.
#[derive(Debug, Clone)]
pub struct ReplyConsumer {
    pub events: mpsc::UnboundedSender<ConnEvent>,
    pub channel: u16,
    pub owner: u64,
    pub tag: crate::protocol::ShortStr,
}

/// One vhost's exchanges, queues and direct reply-to consumers.
#[derive(Debug)]
pub struct Registry {
    pub vhost: String,
    /// The snapshot routing reads; replaced whole by each change.
    topology: ArcSwap<Topology>,
    /// Serializes changes to `topology` (never taken by routing).
    writer: Mutex<()>,
    reply_consumers: Mutex<HashMap<String, ReplyConsumer>>,
    /// Where durable definitions and persistent messages go; `None` keeps everything in
    /// memory (unit tests).
    persistence: Option<Arc<Persistence>>,
    /// Definition writes submitted (see `definition_writes`).
    definition_writes: AtomicU64,
}

fn precondition(text: String) -> BrokerError {
    BrokerError::precondition(text)
}

fn default_exchange_error() -> BrokerError {
    BrokerError::default_exchange()
}

impl Registry {
    pub fn new(vhost: &str) -> Arc<Registry> {
        Registry::with_persistence(vhost, None)
    }

    pub fn with_persistence(vhost: &str, persistence: Option<Arc<Persistence>>) -> Arc<Registry> {
        let mut topology = Topology::default();
        for (name, kind) in STANDARD_EXCHANGES {
            topology.exchanges.insert(
                name.into(),
                Arc::new(Exchange {
                    kind,
                    durable: true,
                    auto_delete: false,
                    internal: false,
                    arguments: FieldTable::new(),
                    alternate: None,
                    router: Router::new(kind),
                }),
            );
        }
        Arc::new(Registry {
            vhost: vhost.to_owned(),
            topology: ArcSwap::from_pointee(topology),
            writer: Mutex::new(()),
            reply_consumers: Mutex::new(HashMap::new()),
            persistence,
            definition_writes: AtomicU64::new(0),
        })
    }

    pub fn persistence(&self) -> Option<&Arc<Persistence>> {
        self.persistence.as_ref()
    }

    /// Submits definition changes, synced: a later confirm (behind them in the committer's
    /// order) never makes a message durable before the queue or binding it depends on.
    fn save(&self, changes: DefinitionChanges) {
        if let (Some(p), false) = (&self.persistence, changes.is_empty()) {
            drop(p.submit(changes.batch, crate::store::Durability::Sync));
            self.definition_writes.fetch_add(1, Ordering::Release);
        }
    }

    /// How many definition writes this vhost has submitted: read before a declare, bind or
    /// delete, and give it to [`Registry::definitions_synced_since`] after.
    pub fn definition_writes(&self) -> u64 {
        self.definition_writes.load(Ordering::Acquire)
    }

    /// Resolves once the definition writes submitted since `before` are on disk. RabbitMQ
    /// answers a declare, bind or delete only once its metadata store has it, so a declare-ok
    /// must not outlive a crash that loses the definition. Nothing written since (a transient
    /// or unchanged definition): at once. A write made meanwhile by another connection is
    /// waited for too, which costs only time. A failed write is 541.
    pub async fn definitions_synced_since(&self, before: u64) -> Result<(), BrokerError> {
        let Some(p) = &self.persistence else {
            return Ok(());
        };
        if self.definition_writes() == before {
            return Ok(());
        }
        p.synced_barrier().await.map_err(|e| BrokerError::Internal {
            text: format!("cannot store definitions: {e}"),
        })
    }

    fn exchange_record_changes(&self, name: &str, x: &Exchange) -> DefinitionChanges {
        let mut changes = DefinitionChanges::default();
        if x.durable && self.persistence.is_some() {
            let record = ExchangeRecord {
                kind: x.kind.as_str().to_owned(),
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: x.arguments.clone(),
            };
            changes.put(
                persist::KIND_EXCHANGE,
                persist::vhost_key(&self.vhost, name),
                record.encode(),
            );
        }
        changes
    }

    /// Whether a binding from `source` to `dest` is kept in the store (RabbitMQ: both ends
    /// durable).
    fn binding_record(
        &self,
        topology: &Topology,
        source: &str,
        dest: &Dest,
        key: &str,
        args: &FieldTable,
    ) -> Option<BindingRecord> {
        self.persistence.as_ref()?;
        let source_durable = topology.exchanges.get(source).is_some_and(|x| x.durable);
        let (to_exchange, destination, dest_durable) = match dest {
            Dest::Queue(q) => (
                false,
                q,
                topology.queues.get(q).is_some_and(|q| q.persistent()),
            ),
            Dest::Exchange(x) => (
                true,
                x,
                topology.exchanges.get(x).is_some_and(|x| x.durable),
            ),
        };
        (source_durable && dest_durable).then(|| BindingRecord {
            vhost: self.vhost.clone(),
            source: source.to_owned(),
            to_exchange,
            destination: destination.to_string(),
            routing_key: key.to_owned(),
            arguments: args.clone(),
        })
    }

    /// The definition deletions for exchanges and a queue that were removed, with every
    /// stored binding that has one of them at either end.
    fn forget(
        &self,
        topology: &mut Topology,
        exchanges: &[Arc<str>],
        queue: Option<&str>,
    ) -> DefinitionChanges {
        let mut changes = DefinitionChanges::default();
        if self.persistence.is_none() {
            return changes;
        }
        for x in exchanges {
            changes.delete(persist::KIND_EXCHANGE, persist::vhost_key(&self.vhost, x));
        }
        if let Some(q) = queue {
            changes.delete(persist::KIND_QUEUE, persist::vhost_key(&self.vhost, q));
        }
        let gone: Vec<bytes::Bytes> = topology
            .durable_bindings
            .iter()
            .filter(|(_, b)| {
                exchanges
                    .iter()
                    .any(|x| **x == *b.source || (b.to_exchange && **x == *b.destination))
                    || (!b.to_exchange && queue == Some(b.destination.as_str()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            topology.durable_bindings.remove(&key);
            changes.delete(persist::KIND_BINDING, key);
        }
        changes
    }

    /// Shutdown: drops every queue handle (the store keeps them) so the queue tasks stop.
    pub fn forget_queues(&self) {
        let queues = std::mem::take(&mut self.write().queues);
        drop(queues);
    }

    /// Recovery: a durable exchange read back from the store.
    pub fn restore_exchange(&self, name: &str, record: ExchangeRecord) -> bool {
        let Some(kind) = ExchangeKind::parse(&record.kind) else {
            return false;
        };
        self.write().exchanges.insert(
            name.into(),
            Arc::new(Exchange {
                kind,
                durable: true,
                auto_delete: record.auto_delete,
                internal: record.internal,
                alternate: effective_alternate(&record.arguments, None),
                arguments: record.arguments,
                router: Router::new(kind),
            }),
        );
        true
    }

    /// Recovery: a durable queue whose task is already running.
    pub fn restore_queue(&self, q: QueueRef) {
        self.write().queues.insert(q.name.as_str().into(), q);
    }

    /// Recovery: a stored binding; `false` (and nothing bound) when an end is missing.
    pub fn restore_binding(&self, record: BindingRecord) -> bool {
        let mut topology = self.write();
        let dest = if record.to_exchange {
            if !topology.exchanges.contains_key(record.destination.as_str()) {
                return false;
            }
            Dest::Exchange(record.destination.as_str().into())
        } else {
            if !topology.queues.contains_key(record.destination.as_str()) {
                return false;
            }
            Dest::Queue(record.destination.as_str().into())
        };
        let Some(x) = topology.exchange_mut(record.source.as_str()) else {
            return false;
        };
        x.router.bind(dest, &record.routing_key, &record.arguments);
        topology
            .durable_bindings
            .insert(record.key(), Arc::new(record));
        true
    }

    /// The current snapshot: no lock, and a change published meanwhile does not affect it.
    fn read(&self) -> Guard<Arc<Topology>> {
        self.topology.load()
    }

    /// Starts a change. A panic during one drops the change half-made, but the copy it worked
    /// on is still consistent enough to publish (as with the poisoned lock it replaces), so a
    /// poisoned writer lock is used as is.
    fn write(&self) -> TopologyChange<'_> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        TopologyChange {
            next: Topology::clone(&self.topology.load()),
            published: &self.topology,
            _writer: writer,
        }
    }

    pub fn resource(&self, kind: &str, name: &str) -> String {
        resource(kind, name, &self.vhost)
    }

    pub fn exchange_not_found(&self, name: &str) -> BrokerError {
        BrokerError::not_found("exchange", name, &self.vhost)
    }

    pub fn queue_not_found(&self, name: &str) -> BrokerError {
        BrokerError::not_found("queue", name, &self.vhost)
    }

    /// `exchange.declare`, in RabbitMQ's order of checks.
    pub fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> Result<(), BrokerError> {
        if passive {
            // RabbitMQ refuses the default exchange even to a passive declare.
            if spec.name.is_empty() {
                return Err(default_exchange_error());
            }
            if self.read().exchanges.contains_key(spec.name.as_str()) {
                return Ok(());
            }
            return Err(self.exchange_not_found(&spec.name));
        }
        let kind = ExchangeKind::parse(&spec.kind)
            .ok_or_else(|| precondition(format!("invalid exchange type '{}'", spec.kind)))?;
        if spec.name.is_empty() {
            return Err(default_exchange_error());
        }
        let res = self.resource("exchange", &spec.name);
        let mut topology = self.write();
        match topology.exchanges.get(spec.name.as_str()) {
            Some(x) => {
                equivalence::field("type", x.kind.as_str(), kind.as_str(), &res)?;
                equivalence::field("durable", x.durable, spec.durable, &res)?;
                equivalence::field("auto_delete", x.auto_delete, spec.auto_delete, &res)?;
                equivalence::field("internal", x.internal, spec.internal, &res)?;
                equivalence::args(&x.arguments, &spec.arguments, &["alternate-exchange"], &res)
            }
            None => {
                if spec.name.starts_with("amq.") {
                    return Err(BrokerError::Reserved {
                        text: format!(
                            "exchange name '{}' contains reserved prefix 'amq.*'",
                            spec.name
                        ),
                    });
                }
                match spec.arguments.get("alternate-exchange") {
                    None | Some(FieldValue::LongStr(_)) => {}
                    Some(other) => {
                        return Err(precondition(format!(
                            "invalid type '{}' for arg 'alternate-exchange' in {res}",
                            other.type_name()
                        )))
                    }
                }
                let x = Exchange {
                    kind,
                    durable: spec.durable,
                    auto_delete: spec.auto_delete,
                    internal: spec.internal,
                    arguments: spec.arguments.clone(),
                    alternate: effective_alternate(&spec.arguments, None),
                    router: Router::new(kind),
                };
                let changes = self.exchange_record_changes(&spec.name, &x);
                topology
                    .exchanges
                    .insert(spec.name.as_str().into(), Arc::new(x));
                self.save(changes);
                Ok(())
            }
        }
    }

    /// `exchange.delete`; deleting a missing exchange succeeds, as in RabbitMQ.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), BrokerError> {
        if name.is_empty() {
            return Err(default_exchange_error());
        }
        if name.starts_with("amq.") {
            return Err(BrokerError::Reserved {
                text: format!(
                    "deletion of system {} not allowed",
                    self.resource("exchange", name)
                ),
            });
        }
        let mut topology = self.write();
        let Some(x) = topology.exchanges.get(name) else {
            return Ok(());
        };
        if if_unused && !x.router.is_empty() {
            return Err(BrokerError::InUse {
                resource: self.resource("exchange", name),
                what: "in use",
            });
        }
        let mut removed = Vec::new();
        remove_exchange(&mut topology, name, &mut removed);
        let changes = self.forget(&mut topology, &removed, None);
        self.save(changes);
        Ok(())
    }

    /// `queue.bind` / `exchange.bind`: `source` must exist and not be the default exchange.
    pub fn bind(
        &self,
        source: &str,
        dest: Dest,
        key: &str,
        args: &FieldTable,
    ) -> Result<(), BrokerError> {
        let mut topology = self.write();
        self.check_binding_ends(&topology, source, &dest)?;
        let Some(x) = topology.exchange_mut(source) else {
            return Err(self.exchange_not_found(source));
        };
        x.router
            .validate_binding(args)
            .map_err(|e| precondition(e.to_string()))?;
        x.router.bind(dest.clone(), key, args);
        if let Some(record) = self.binding_record(&topology, source, &dest, key, args) {
            let key = record.key();
            if topology
                .durable_bindings
                .insert(key.clone(), Arc::new(record))
                .is_none()
            {
                let mut changes = DefinitionChanges::default();
                changes.put(persist::KIND_BINDING, key, bytes::Bytes::new());
                self.save(changes);
            }
        }
        Ok(())
    }

    /// `queue.unbind` / `exchange.unbind`, idempotent as in RabbitMQ: a missing source,
    /// destination or binding is unbind-ok (an auto-delete queue and its exchange may already
    /// be gone when an application cleans up). The default exchange at either end is 403, and
    /// removing an existing binding to another connection's exclusive queue is 405. An
    /// auto-delete exchange goes with its last binding.
    pub fn unbind(
        &self,
        source: &str,
        dest: Dest,
        key: &str,
        args: &FieldTable,
        connection: u64,
    ) -> Result<(), BrokerError> {
        if source.is_empty() || matches!(&dest, Dest::Exchange(x) if x.is_empty()) {
            return Err(default_exchange_error());
        }
        let mut topology = self.write();
        let locked = match &dest {
            Dest::Queue(name) => match topology.queues.get(name) {
                Some(q) => q
                    .exclusive_owner
                    .is_some_and(|owner| owner != connection)
                    .then(|| Arc::clone(name)),
                None => return Ok(()),
            },
            Dest::Exchange(x) if !topology.exchanges.contains_key(x) => return Ok(()),
            Dest::Exchange(_) => None,
        };
        let Some(x) = topology.exchange_mut(source) else {
            return Ok(());
        };
        if !x.router.unbind(&dest, key, args) {
            return Ok(());
        }
        if let Some(name) = locked {
            // RabbitMQ checks exclusive access only for a binding that exists: put it back.
            x.router.bind(dest, key, args);
            return Err(self.locked(&name));
        }
        let mut removed = Vec::new();
        if x.auto_delete && x.router.is_empty() {
            remove_exchange(&mut topology, source, &mut removed);
        }
        let mut changes = self.forget(&mut topology, &removed, None);
        if let Some(record) = self.binding_record(&topology, source, &dest, key, args) {
            let key = record.key();
            if topology.durable_bindings.remove(&key).is_some() {
                changes.delete(persist::KIND_BINDING, key);
            }
        }
        self.save(changes);
        Ok(())
    }

    fn check_binding_ends(
        &self,
        topology: &Topology,
        source: &str,
        dest: &Dest,
    ) -> Result<(), BrokerError> {
        if source.is_empty() || matches!(dest, Dest::Exchange(x) if x.is_empty()) {
            return Err(default_exchange_error());
        }
        if !topology.exchanges.contains_key(source) {
            return Err(self.exchange_not_found(source));
        }
        match dest {
            Dest::Queue(q) if !topology.queues.contains_key(q) => Err(self.queue_not_found(q)),
            Dest::Exchange(x) if !topology.exchanges.contains_key(x) => {
                Err(self.exchange_not_found(x))
            }
            _ => Ok(()),
        }
    }

    /// Routes a message published to `exchange` with these keys (the routing key first, then
    /// CC and BCC) and headers: the queues it goes to, each once. Exchange-to-exchange
    /// bindings and alternate exchanges are followed; each exchange is visited at most once,
    /// so cycles end. A missing exchange is 404, an internal one 403.
    pub fn route(
        &self,
        exchange: &str,
        keys: &[&str],
        headers: Option<&FieldTable>,
        out: &mut Vec<QueueRef>,
    ) -> Result<(), BrokerError> {
        let topology = self.read();
        let mut names: Vec<Arc<str>> = Vec::new();
        if exchange.is_empty() {
            for key in keys {
                if let Some((name, _)) = topology.queues.get_key_value(*key) {
                    names.push(Arc::clone(name));
                }
            }
        } else {
            let Some(x) = topology.exchanges.get(exchange) else {
                return Err(self.exchange_not_found(exchange));
            };
            if x.internal {
                return Err(BrokerError::access_refused(format!(
                    "cannot publish to internal {}",
                    self.resource("exchange", exchange)
                )));
            }
            let mut visited: HashSet<&str> = HashSet::new();
            let mut pending: Vec<&str> = vec![exchange];
            let mut dests = Vec::new();
            while let Some(name) = pending.pop() {
                if !visited.insert(name) {
                    continue;
                }
                let Some(x) = topology.exchanges.get(name) else {
                    continue;
                };
                dests.clear();
                for key in keys {
                    x.router.route(key, headers, &mut dests);
                }
                if dests.is_empty() {
                    if let Some(ae) = x.alternate() {
                        pending.push(ae);
                    }
                }
                for dest in &dests {
                    match dest {
                        Dest::Queue(q) => names.push(Arc::clone(q)),
                        Dest::Exchange(e) => {
                            if let Some((k, _)) = topology.exchanges.get_key_value(&**e) {
                                pending.push(k);
                            }
                        }
                    }
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        out.extend(
            names
                .iter()
                .filter_map(|n| topology.queues.get(n))
                .map(Arc::clone),
        );
        Ok(())
    }

    /// Recomputes exchange `name`'s alternate exchange with `policy` as its matching policy
    /// (the policy work calls this); `false` when there is no such exchange.
    pub fn reconfigure_exchange(&self, name: &str, policy: Option<&PolicyValues>) -> bool {
        let mut topology = self.write();
        let Some(x) = topology.exchange_mut(name) else {
            return false;
        };
        x.alternate = effective_alternate(&x.arguments, policy);
        true
    }

    pub fn exchange_exists(&self, name: &str) -> bool {
        name.is_empty() || self.read().exchanges.contains_key(name)
    }

    pub fn exchange_count(&self) -> usize {
        self.read().exchanges.len()
    }

    pub fn queue(&self, name: &str) -> Option<QueueRef> {
        self.read().queues.get(name).cloned()
    }

    /// The queue `name` as `connection` may use it: 404 when missing, 405 when another
    /// connection's exclusive queue.
    pub fn queue_for(&self, name: &str, connection: u64) -> Result<QueueRef, BrokerError> {
        let q = self.queue(name).ok_or_else(|| self.queue_not_found(name))?;
        match q.exclusive_owner {
            Some(owner) if owner != connection => Err(self.locked(name)),
            _ => Ok(q),
        }
    }

    fn locked(&self, name: &str) -> BrokerError {
        BrokerError::Locked {
            resource: self.resource("queue", name),
        }
    }

    /// `queue.declare` (not passive): the existing queue after RabbitMQ's checks, or a new one
    /// made by `create` under the write lock (so two declares cannot both create it).
    pub fn declare_queue(
        &self,
        spec: &QueueSpec,
        connection: u64,
        create: impl FnOnce() -> Result<QueueRef, BrokerError>,
    ) -> Result<(QueueRef, bool), BrokerError> {
        let mut topology = self.write();
        if let Some(q) = topology.queues.get(spec.name.as_str()) {
            let owner_ok = match q.exclusive_owner {
                Some(owner) => spec.exclusive && owner == connection,
                None => !spec.exclusive,
            };
            if !owner_ok {
                return Err(self.locked(&spec.name));
            }
            // Only compared, never validated: RabbitMQ does the same on a redeclare.
            let current = QueueFlags {
                durable: q.durable && q.exclusive_owner.is_none(),
                exclusive: q.exclusive_owner.is_some(),
                auto_delete: q.auto_delete,
            };
            let requested = QueueFlags {
                durable: spec.durable && !spec.exclusive,
                exclusive: spec.exclusive,
                auto_delete: spec.auto_delete,
            };
            queue_args::check_equivalence(
                &QueueName::new(self.vhost.as_str(), spec.name.as_str()),
                (current, q.arguments()),
                (requested, &spec.arguments),
            )
            .map_err(|e| queue_arg_error(&e))?;
            return Ok((Arc::clone(q), false));
        }
        let q = create()?;
        topology
            .queues
            .insert(spec.name.as_str().into(), Arc::clone(&q));
        if q.persistent() && self.persistence.is_some() {
            let record = QueueRecord {
                id: q.id,
                auto_delete: q.auto_delete,
                arguments: q.arguments().clone(),
            };
            let mut changes = DefinitionChanges::default();
            changes.put(
                persist::KIND_QUEUE,
                persist::vhost_key(&self.vhost, &spec.name),
                record.encode(),
            );
            self.save(changes);
        }
        Ok((q, true))
    }

    /// Forgets the queue (if `q` is still the one registered under its name) and every binding
    /// to it; auto-delete exchanges left without bindings go too. Returns the definition
    /// deletions for the store, for the queue task to commit with its messages' removal.
    pub fn remove_queue(&self, q: &QueueRef) -> DefinitionChanges {
        let mut topology = self.write();
        let same = topology
            .queues
            .get(q.name.as_str())
            .is_some_and(|registered| registered.id == q.id);
        if !same {
            return DefinitionChanges::default();
        }
        topology.queues.remove(q.name.as_str());
        let mut removed = Vec::new();
        unbind_everywhere(
            &mut topology,
            &Dest::Queue(q.name.as_str().into()),
            &mut removed,
        );
        let queue = q.persistent().then_some(q.name.as_str());
        self.forget(&mut topology, &removed, queue)
    }

    pub fn add_reply_consumer(&self, key: String, consumer: ReplyConsumer) {
        self.replies().insert(key, consumer);
    }

    pub fn remove_reply_consumer(&self, key: &str) {
        self.replies().remove(key);
    }

    pub fn reply_consumer(&self, key: &str) -> Option<ReplyConsumer> {
        self.replies().get(key).cloned()
    }

    fn replies(&self) -> std::sync::MutexGuard<'_, HashMap<String, ReplyConsumer>> {
        self.reply_consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue-argument failure (RabbitMQ's 406 and text); raw non-UTF-8 bytes of a value (rare)
/// are shown as U+FFFD, since reply texts are `String`s.
pub fn queue_arg_error(e: &QueueArgError) -> BrokerError {
    BrokerError::precondition(e.to_string())
}

/// Removes an exchange and the bindings to it, then any auto-delete exchange that lost its
/// last binding that way.
/// `removed` collects the exchanges that went, for their store records.
fn remove_exchange(topology: &mut Topology, name: &str, removed: &mut Vec<Arc<str>>) {
    if topology.exchanges.remove(name).is_some() {
        removed.push(name.into());
        unbind_everywhere(topology, &Dest::Exchange(name.into()), removed);
    }
}

fn unbind_everywhere(topology: &mut Topology, dest: &Dest, removed: &mut Vec<Arc<str>>) {
    let mut emptied = Vec::new();
    // Only the exchanges with a binding to `dest` are copied.
    let bound: Vec<Arc<str>> = topology
        .exchanges
        .iter()
        .filter(|(_, x)| x.router.leads_to(dest))
        .map(|(name, _)| Arc::clone(name))
        .collect();
    for name in bound {
        let Some(x) = topology.exchange_mut(&name) else {
            continue;
        };
        if x.router.unbind_all(dest) > 0 && x.auto_delete && x.router.is_empty() {
            emptied.push(name);
        }
    }
    for name in emptied {
        remove_exchange(topology, &name, removed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::broker::queue::QueueShared;

    fn queue(registry: &Registry, name: &str) -> QueueRef {
        let spec = QueueSpec {
            name: name.into(),
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        let (q, created) = registry
            .declare_queue(&spec, 1, || {
                let (tx, _) = mpsc::channel(1);
                Ok(Arc::new(QueueShared {
                    name: name.into(),
                    id: name.len() as u64,
                    durable: false,
                    auto_delete: false,
                    exclusive_owner: None,
                    declared: Default::default(),
                    settings: Default::default(),
                    admission: Default::default(),
                    tx,
                    positions: Default::default(),
                }))
            })
            .unwrap();
        assert!(created);
        q
    }

    fn exchange(registry: &Registry, name: &str, kind: &str, args: FieldTable, auto: bool) {
        let spec = ExchangeSpec {
            name: name.into(),
            kind: kind.into(),
            durable: false,
            auto_delete: auto,
            internal: false,
            arguments: args,
        };
        registry.declare_exchange(&spec, false).unwrap();
    }

    fn routed(registry: &Registry, exchange: &str, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        registry.route(exchange, &[key], None, &mut out).unwrap();
        out.iter().map(|q| q.name.clone()).collect()
    }

    #[test]
    fn cycles_are_harmless_and_destinations_unique() {
        let r = Registry::new("/");
        queue(&r, "q");
        exchange(&r, "a", "fanout", FieldTable::new(), false);
        exchange(&r, "b", "fanout", FieldTable::new(), false);
        let none = FieldTable::new();
        r.bind("a", Dest::Exchange("b".into()), "", &none).unwrap();
        r.bind("b", Dest::Exchange("a".into()), "", &none).unwrap();
        r.bind("a", Dest::Queue("q".into()), "", &none).unwrap();
        r.bind("b", Dest::Queue("q".into()), "", &none).unwrap();
        assert_eq!(routed(&r, "a", "k"), ["q"]);
        assert_eq!(routed(&r, "", "q"), ["q"]);
        assert!(routed(&r, "", "nope").is_empty());
        assert_eq!(
            r.route("nope", &["k"], None, &mut Vec::new())
                .unwrap_err()
                .to_string(),
            "no exchange 'nope' in vhost '/'"
        );
    }

    #[test]
    fn alternate_exchanges_chain_until_routed() {
        let r = Registry::new("/");
        queue(&r, "q");
        let ae = |name: &str| {
            let mut t = FieldTable::new();
            t.insert(
                "alternate-exchange",
                FieldValue::LongStr(name.to_owned().into()),
            );
            t
        };
        exchange(&r, "last", "fanout", FieldTable::new(), false);
        exchange(&r, "middle", "direct", ae("last"), false);
        exchange(&r, "first", "direct", ae("middle"), false);
        // A loop back to the start ends too.
        exchange(&r, "loop", "direct", ae("loop"), false);
        r.bind("last", Dest::Queue("q".into()), "", &FieldTable::new())
            .unwrap();
        assert_eq!(routed(&r, "first", "k"), ["q"]);
        assert!(routed(&r, "loop", "k").is_empty());
        let mut bad = FieldTable::new();
        bad.insert("alternate-exchange", FieldValue::I32(5));
        let spec = ExchangeSpec {
            name: "bad".into(),
            kind: "direct".into(),
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: bad,
        };
        assert_eq!(
            r.declare_exchange(&spec, false).unwrap_err().to_string(),
            "invalid type 'signedint' for arg 'alternate-exchange' in exchange 'bad' in vhost '/'"
        );
    }

    #[test]
    fn a_policy_gives_an_exchange_an_alternate_that_its_argument_overrides() {
        let r = Registry::new("/");
        queue(&r, "q");
        exchange(&r, "ae", "fanout", FieldTable::new(), false);
        exchange(&r, "x", "direct", FieldTable::new(), false);
        r.bind("ae", Dest::Queue("q".into()), "", &FieldTable::new())
            .unwrap();
        assert!(routed(&r, "x", "k").is_empty());
        let policy = PolicyValues {
            alternate_exchange: Some("ae".into()),
            ..PolicyValues::default()
        };
        assert!(r.reconfigure_exchange("x", Some(&policy)));
        assert_eq!(routed(&r, "x", "k"), ["q"]);
        let mut args = FieldTable::new();
        args.insert("alternate-exchange", FieldValue::LongStr("none".into()));
        exchange(&r, "y", "direct", args, false);
        assert!(r.reconfigure_exchange("y", Some(&policy)));
        assert!(routed(&r, "y", "k").is_empty(), "the argument wins");
        assert!(!r.reconfigure_exchange("missing", Some(&policy)));
    }

    #[test]
    fn auto_delete_exchanges_go_with_their_last_binding_even_through_a_queue_deletion() {
        let r = Registry::new("/");
        let q = queue(&r, "q");
        exchange(&r, "auto", "fanout", FieldTable::new(), true);
        r.bind("auto", Dest::Queue("q".into()), "", &FieldTable::new())
            .unwrap();
        let before = r.exchange_count();
        r.remove_queue(&q);
        assert_eq!(r.exchange_count(), before - 1);
        assert!(!r.exchange_exists("auto"));
        assert!(r.queue("q").is_none());
    }
}
