//! The exchanges, bindings and queues of one virtual host, shared by every connection.
//!
//! Routing runs on the publisher's connection task under the read lock; declarations, bindings
//! and deletions take the write lock. Locks: `topology` and `reply_consumers` are never held
//! together, and no lock is held across an `.await` (queue mailboxes are sent to after the
//! handles are cloned out).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::mpsc;

use super::equivalence::{self, resource};
use super::exchange::{ExchangeKind, Router};
use super::queue::{ConnEvent, QueueRef};
use super::queue_args::{self, QueueArgError, QueueFlags, QueueName};
use crate::error::AmqpError;
use crate::protocol::{FieldTable, FieldValue, ReplyCode};

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
#[derive(Debug)]
pub struct Exchange {
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    router: Router<Dest>,
}

impl Exchange {
    fn alternate(&self) -> Option<&str> {
        match self.arguments.get("alternate-exchange") {
            Some(FieldValue::LongStr(name)) => std::str::from_utf8(name).ok(),
            _ => None,
        }
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
#[derive(Debug, Default)]
struct Topology {
    exchanges: HashMap<Arc<str>, Exchange>,
    queues: HashMap<Arc<str>, QueueRef>,
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
    topology: RwLock<Topology>,
    reply_consumers: Mutex<HashMap<String, ReplyConsumer>>,
}

fn not_found(kind: &str, name: &str, vhost: &str) -> AmqpError {
    AmqpError::new(
        ReplyCode::NOT_FOUND,
        format!("no {}", resource(kind, name, vhost)),
    )
}

fn precondition(text: String) -> AmqpError {
    AmqpError::new(ReplyCode::PRECONDITION_FAILED, text)
}

/// RabbitMQ's 403 for the default exchange.
pub fn default_exchange_error() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

impl Registry {
    pub fn new(vhost: &str) -> Arc<Registry> {
        let mut topology = Topology::default();
        for (name, kind) in STANDARD_EXCHANGES {
            topology.exchanges.insert(
                name.into(),
                Exchange {
                    kind,
                    durable: true,
                    auto_delete: false,
                    internal: false,
                    arguments: FieldTable::new(),
                    router: Router::new(kind),
                },
            );
        }
        Arc::new(Registry {
            vhost: vhost.to_owned(),
            topology: RwLock::new(topology),
            reply_consumers: Mutex::new(HashMap::new()),
        })
    }

    // A panic while holding the lock cannot leave the maps half-updated in a way that matters
    // more than stopping the whole vhost would, so a poisoned lock is used as is.
    fn read(&self) -> RwLockReadGuard<'_, Topology> {
        self.topology.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Topology> {
        self.topology.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn resource(&self, kind: &str, name: &str) -> String {
        resource(kind, name, &self.vhost)
    }

    pub fn exchange_not_found(&self, name: &str) -> AmqpError {
        not_found("exchange", name, &self.vhost)
    }

    pub fn queue_not_found(&self, name: &str) -> AmqpError {
        not_found("queue", name, &self.vhost)
    }

    /// `exchange.declare`, in RabbitMQ's order of checks.
    pub fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> Result<(), AmqpError> {
        if passive {
            if spec.name.is_empty() || self.read().exchanges.contains_key(spec.name.as_str()) {
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
                    return Err(AmqpError::access_refused(format!(
                        "exchange name '{}' contains reserved prefix 'amq.*'",
                        spec.name
                    )));
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
                topology.exchanges.insert(
                    spec.name.as_str().into(),
                    Exchange {
                        kind,
                        durable: spec.durable,
                        auto_delete: spec.auto_delete,
                        internal: spec.internal,
                        arguments: spec.arguments.clone(),
                        router: Router::new(kind),
                    },
                );
                Ok(())
            }
        }
    }

    /// `exchange.delete`; deleting a missing exchange succeeds, as in RabbitMQ.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), AmqpError> {
        if name.is_empty() {
            return Err(default_exchange_error());
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "deletion of system {} not allowed",
                self.resource("exchange", name)
            )));
        }
        let mut topology = self.write();
        let Some(x) = topology.exchanges.get(name) else {
            return Ok(());
        };
        if if_unused && !x.router.is_empty() {
            return Err(precondition(format!(
                "{} in use",
                self.resource("exchange", name)
            )));
        }
        remove_exchange(&mut topology, name);
        Ok(())
    }

    /// `queue.bind` / `exchange.bind`: `source` must exist and not be the default exchange.
    pub fn bind(
        &self,
        source: &str,
        dest: Dest,
        key: &str,
        args: &FieldTable,
    ) -> Result<(), AmqpError> {
        let mut topology = self.write();
        self.check_binding_ends(&topology, source, &dest)?;
        let Some(x) = topology.exchanges.get_mut(source) else {
            return Err(self.exchange_not_found(source));
        };
        x.router
            .validate_binding(args)
            .map_err(|e| precondition(e.to_string()))?;
        x.router.bind(dest, key, args);
        Ok(())
    }

    /// `queue.unbind` / `exchange.unbind`; a missing binding is not an error. An auto-delete
    /// exchange goes with its last binding.
    pub fn unbind(
        &self,
        source: &str,
        dest: Dest,
        key: &str,
        args: &FieldTable,
    ) -> Result<(), AmqpError> {
        let mut topology = self.write();
        self.check_binding_ends(&topology, source, &dest)?;
        let Some(x) = topology.exchanges.get_mut(source) else {
            return Err(self.exchange_not_found(source));
        };
        if x.router.unbind(&dest, key, args) && x.auto_delete && x.router.is_empty() {
            remove_exchange(&mut topology, source);
        }
        Ok(())
    }

    fn check_binding_ends(
        &self,
        topology: &Topology,
        source: &str,
        dest: &Dest,
    ) -> Result<(), AmqpError> {
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
    ) -> Result<(), AmqpError> {
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
                return Err(AmqpError::access_refused(format!(
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
    pub fn queue_for(&self, name: &str, connection: u64) -> Result<QueueRef, AmqpError> {
        let q = self.queue(name).ok_or_else(|| self.queue_not_found(name))?;
        match q.exclusive_owner {
            Some(owner) if owner != connection => Err(self.locked(name)),
            _ => Ok(q),
        }
    }

    fn locked(&self, name: &str) -> AmqpError {
        AmqpError::new(
            ReplyCode::RESOURCE_LOCKED,
            format!(
                "cannot obtain exclusive access to locked {}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
                self.resource("queue", name)
            ),
        )
    }

    /// `queue.declare` (not passive): the existing queue after RabbitMQ's checks, or a new one
    /// made by `create` under the write lock (so two declares cannot both create it).
    pub fn declare_queue(
        &self,
        spec: &QueueSpec,
        connection: u64,
        create: impl FnOnce() -> Result<QueueRef, AmqpError>,
    ) -> Result<(QueueRef, bool), AmqpError> {
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
                (current, &q.arguments),
                (requested, &spec.arguments),
            )
            .map_err(|e| queue_arg_error(&e))?;
            return Ok((Arc::clone(q), false));
        }
        let q = create()?;
        topology
            .queues
            .insert(spec.name.as_str().into(), Arc::clone(&q));
        Ok((q, true))
    }

    /// Forgets the queue (if `q` is still the one registered under its name) and every binding
    /// to it; auto-delete exchanges left without bindings go too.
    pub fn remove_queue(&self, q: &QueueRef) {
        let mut topology = self.write();
        let same = topology
            .queues
            .get(q.name.as_str())
            .is_some_and(|registered| registered.id == q.id);
        if !same {
            return;
        }
        topology.queues.remove(q.name.as_str());
        unbind_everywhere(&mut topology, &Dest::Queue(q.name.as_str().into()));
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

/// A queue-argument failure as the 406 channel error RabbitMQ sends. The text is RabbitMQ's;
/// raw non-UTF-8 bytes of a value (rare) are shown as U+FFFD, since reply texts are `String`s.
pub fn queue_arg_error(e: &QueueArgError) -> AmqpError {
    AmqpError::new(ReplyCode::PRECONDITION_FAILED, e.to_string())
}

/// Removes an exchange and the bindings to it, then any auto-delete exchange that lost its
/// last binding that way.
fn remove_exchange(topology: &mut Topology, name: &str) {
    if topology.exchanges.remove(name).is_some() {
        unbind_everywhere(topology, &Dest::Exchange(name.into()));
    }
}

fn unbind_everywhere(topology: &mut Topology, dest: &Dest) {
    let mut emptied = Vec::new();
    for (name, x) in topology.exchanges.iter_mut() {
        if x.router.unbind_all(dest) > 0 && x.auto_delete && x.router.is_empty() {
            emptied.push(Arc::clone(name));
        }
    }
    for name in emptied {
        remove_exchange(topology, &name);
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
                    arguments: FieldTable::new(),
                    args: Default::default(),
                    admission: None,
                    tx,
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
                .text,
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
            r.declare_exchange(&spec, false).unwrap_err().text,
            "invalid type 'signedint' for arg 'alternate-exchange' in exchange 'bad' in vhost '/'"
        );
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
