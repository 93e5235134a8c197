//! The definitions service: the one place users, vhosts, permissions and topic permissions
//! change, at boot (the stored records, then the configuration) and at run time (tests now, the
//! management API next). Each change is one typed [`DefinitionChange`]: it is validated against
//! the current model, its store record is written (synced) and only then is it applied to the
//! in-memory model, so a change that was answered `Ok` survives a crash and a failed write
//! leaves the model as it was. This record is what a cluster will later replicate.
//!
//! Changes are serialised by [`super::Broker::apply`]; readers (login, vhost open) take a
//! `std::sync::RwLock` read guard for a map lookup and never hold it across an `.await`.
//!
//! Exchanges, queues and bindings still change through each vhost's
//! [`Registry`]; deleting a vhost deletes them here.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::persist::{self, decode_vhost_key, BindingRecord, Dec, Enc, Persistence};
use super::queue::Command;
use super::registry::Registry;
use super::users::User;
use super::vhost::{Permission, TopicPermission, VHost};
use crate::store::{Batch, Op, Store};

/// One change to the access definitions. `Put*`/`Set*` create or replace; `Delete*` of a
/// missing user or vhost is an error, `Clear*` of a missing permission is not (RabbitMQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionChange {
    PutUser {
        name: String,
        password: String,
        tags: Vec<String>,
    },
    /// Also removes the user's permissions and topic permissions, and closes its connections.
    DeleteUser {
        name: String,
    },
    PutVhost {
        name: String,
    },
    /// Also removes its permissions, exchanges, queues (with their messages) and bindings, and
    /// closes its connections. `/` may be deleted, as in RabbitMQ.
    DeleteVhost {
        name: String,
    },
    SetPermission {
        vhost: String,
        user: String,
        permission: Permission,
    },
    ClearPermission {
        vhost: String,
        user: String,
    },
    SetTopicPermission {
        vhost: String,
        user: String,
        permission: TopicPermission,
    },
    /// One exchange's topic permission, or (`None`) all of the user's in the vhost.
    ClearTopicPermission {
        vhost: String,
        user: String,
        exchange: Option<String>,
    },
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    Deleted,
    /// Nothing to do: the vhost already existed, or the permission to clear did not.
    Unchanged,
}

/// Why a change was refused. `Display` gives rabbitmqctl's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionError {
    NoSuchUser(String),
    NoSuchVhost(String),
    /// The store refused the record; the model is unchanged.
    Store(String),
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefinitionError::NoSuchUser(u) => write!(f, "User {u} does not exist"),
            DefinitionError::NoSuchVhost(v) => write!(f, "Virtual host {v} does not exist"),
            DefinitionError::Store(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for DefinitionError {}

/// Fires once, with the reason, when a vhost or user is deleted.
pub(super) type Signal = watch::Sender<Option<String>>;

fn signal() -> Signal {
    watch::channel(None).0
}

/// What a connection subscribes to when it opens a vhost: its vhost's and its user's deletion.
#[derive(Debug, Clone)]
pub struct Revocation {
    vhost: watch::Receiver<Option<String>>,
    user: watch::Receiver<Option<String>>,
}

impl Revocation {
    /// Resolves with the close reason (RabbitMQ's text for 320 CONNECTION_FORCED, e.g.
    /// "vhost 'v' is deleted") once the vhost or the user is deleted; never otherwise.
    /// Cancel-safe, so it can be a `select!` branch.
    pub async fn revoked(&mut self) -> String {
        tokio::select! {
            reason = wait(&mut self.vhost) => reason,
            reason = wait(&mut self.user) => reason,
        }
    }

    /// The reason, if already revoked.
    pub fn reason(&self) -> Option<String> {
        let vhost = self.vhost.borrow().clone();
        vhost.or_else(|| self.user.borrow().clone())
    }
}

async fn wait(rx: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(reason) = rx.borrow_and_update().clone() {
            return reason;
        }
        if rx.changed().await.is_err() {
            // The broker is gone without revoking: shutdown closes the connection instead.
            return std::future::pending().await;
        }
    }
}

#[derive(Debug)]
pub(super) struct UserEntry {
    pub user: User,
    revoked: Signal,
}

#[derive(Debug)]
pub(super) struct VhostEntry {
    /// Copied on write, so a connection's snapshot never changes under it.
    pub vhost: Arc<VHost>,
    pub registry: Arc<Registry>,
    revoked: Signal,
}

/// Users and vhosts, in memory. Invariant: every permission names an existing user.
#[derive(Debug, Default)]
pub(super) struct Access {
    pub users: HashMap<String, UserEntry>,
    pub vhosts: HashMap<String, VhostEntry>,
}

/// What applying a change writes, and what it answers.
#[derive(Debug)]
pub(super) struct Plan {
    pub applied: Applied,
    pub batch: Batch,
    /// Vhost deletion: its durable queues, whose tasks delete them with their messages.
    pub queues: Vec<String>,
}

/// What a change took out of the model, to finish outside the lock.
#[derive(Debug, Default)]
pub(super) struct Removed {
    revoked: Option<(Signal, String)>,
    registry: Option<Arc<Registry>>,
}

impl Access {
    pub fn revocation(&self, user: &str, vhost: &str) -> Option<Revocation> {
        Some(Revocation {
            vhost: self.vhosts.get(vhost)?.revoked.subscribe(),
            user: self.users.get(user)?.revoked.subscribe(),
        })
    }

    fn user_and_vhost(&self, user: &str, vhost: &str) -> Result<&VHost, DefinitionError> {
        if !self.users.contains_key(user) {
            return Err(DefinitionError::NoSuchUser(user.to_owned()));
        }
        self.vhost(vhost)
    }

    fn vhost(&self, vhost: &str) -> Result<&VHost, DefinitionError> {
        self.vhosts
            .get(vhost)
            .map(|e| e.vhost.as_ref())
            .ok_or_else(|| DefinitionError::NoSuchVhost(vhost.to_owned()))
    }

    /// Validates `change` and gives the records it writes; a vhost deletion adds `stored`
    /// (its exchanges, bindings and queues in the store, see [`scan_topology`]).
    pub fn plan(
        &self,
        change: &DefinitionChange,
        stored: Option<StoredTopology>,
    ) -> Result<Plan, DefinitionError> {
        use DefinitionChange as C;
        let mut plan = Plan {
            applied: Applied::Created,
            batch: Batch::new(),
            queues: Vec::new(),
        };
        let created = |exists: bool| match exists {
            true => Applied::Updated,
            false => Applied::Created,
        };
        match change {
            C::PutUser {
                name,
                password,
                tags,
            } => {
                plan.applied = created(self.users.contains_key(name));
                plan.batch.push(user_record(name, password, tags));
            }
            C::DeleteUser { name } => {
                if !self.users.contains_key(name) {
                    return Err(DefinitionError::NoSuchUser(name.clone()));
                }
                plan.applied = Applied::Deleted;
                plan.batch.push(delete(persist::KIND_USER, name.as_bytes()));
                for e in self.vhosts.values() {
                    forget_user_records(&mut plan.batch, &e.vhost, name);
                }
            }
            C::PutVhost { name } => match self.vhosts.contains_key(name) {
                true => plan.applied = Applied::Unchanged,
                false => {
                    plan.batch.push(Op::PutDefinition {
                        kind: persist::KIND_VHOST,
                        key: Bytes::copy_from_slice(name.as_bytes()),
                        value: Bytes::new(),
                    });
                }
            },
            C::DeleteVhost { name } => self.plan_vhost_deletion(name, stored, &mut plan)?,
            C::SetPermission {
                vhost,
                user,
                permission,
            } => {
                let v = self.user_and_vhost(user, vhost)?;
                plan.applied = created(v.permission(user).is_some());
                plan.batch.push(permission_record(vhost, user, permission));
            }
            C::ClearPermission { vhost, user } => {
                let v = self.user_and_vhost(user, vhost)?;
                plan.applied = match v.permission(user) {
                    Some(_) => Applied::Deleted,
                    None => Applied::Unchanged,
                };
                plan.batch.push(Op::DeleteDefinition {
                    kind: persist::KIND_PERMISSION,
                    key: persist::vhost_key(vhost, user),
                });
            }
            C::SetTopicPermission {
                vhost,
                user,
                permission,
            } => {
                let v = self.user_and_vhost(user, vhost)?;
                plan.applied = created(v.topic_permission(user, &permission.exchange).is_some());
                plan.batch
                    .push(topic_permission_record(vhost, user, permission));
            }
            C::ClearTopicPermission {
                vhost,
                user,
                exchange,
            } => {
                let v = self.user_and_vhost(user, vhost)?;
                plan.applied = Applied::Unchanged;
                for (_, p) in v.topic_permissions().filter(|(u, p)| {
                    *u == user && exchange.as_ref().is_none_or(|x| *x == p.exchange)
                }) {
                    plan.applied = Applied::Deleted;
                    plan.batch.push(Op::DeleteDefinition {
                        kind: persist::KIND_TOPIC_PERMISSION,
                        key: topic_key(vhost, user, &p.exchange),
                    });
                }
            }
        }
        Ok(plan)
    }

    /// A vhost deletion's records: the vhost's, its permissions' and topic permissions', and
    /// its exchanges' and bindings' (`stored`); its durable queues are left to their tasks.
    fn plan_vhost_deletion(
        &self,
        name: &str,
        stored: Option<StoredTopology>,
        plan: &mut Plan,
    ) -> Result<(), DefinitionError> {
        let vhost = self.vhost(name)?;
        plan.applied = Applied::Deleted;
        plan.batch
            .push(delete(persist::KIND_VHOST, name.as_bytes()));
        for user in vhost.permissions().map(|(u, _)| u) {
            forget_user_records(&mut plan.batch, vhost, user);
        }
        for (user, p) in vhost.topic_permissions() {
            plan.batch.push(Op::DeleteDefinition {
                kind: persist::KIND_TOPIC_PERMISSION,
                key: topic_key(name, user, &p.exchange),
            });
        }
        if let Some(stored) = stored {
            for op in stored.deletions {
                plan.batch.push(op);
            }
            plan.queues = stored.queues;
        }
        Ok(())
    }

    /// Applies a change [`Access::plan`] accepted. A new vhost gets its registry here.
    pub fn commit(
        &mut self,
        change: DefinitionChange,
        persistence: Option<&Arc<Persistence>>,
    ) -> Removed {
        use DefinitionChange as C;
        let mut removed = Removed::default();
        match change {
            C::PutUser {
                name,
                password,
                tags,
            } => {
                let user = User::new(&name, &password, tags);
                match self.users.get_mut(&name) {
                    Some(e) => e.user = user,
                    None => {
                        let revoked = signal();
                        self.users.insert(name, UserEntry { user, revoked });
                    }
                }
            }
            C::DeleteUser { name } => {
                for e in self.vhosts.values_mut() {
                    Arc::make_mut(&mut e.vhost).forget_user(&name);
                }
                if let Some(e) = self.users.remove(&name) {
                    removed.revoked = Some((e.revoked, format!("user '{name}' is deleted")));
                }
            }
            C::PutVhost { name } => {
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    self.vhosts.entry(name.clone())
                {
                    slot.insert(VhostEntry {
                        vhost: Arc::new(VHost::new(&name)),
                        registry: Registry::with_persistence(&name, persistence.cloned()),
                        revoked: signal(),
                    });
                }
            }
            C::DeleteVhost { name } => {
                if let Some(e) = self.vhosts.remove(&name) {
                    removed.revoked = Some((e.revoked, format!("vhost '{name}' is deleted")));
                    removed.registry = Some(e.registry);
                }
            }
            C::SetPermission {
                vhost,
                user,
                permission,
            } => self.edit(&vhost, |v| v.set_permission(&user, permission)),
            C::ClearPermission { vhost, user } => self.edit(&vhost, |v| {
                v.clear_permission(&user);
            }),
            C::SetTopicPermission {
                vhost,
                user,
                permission,
            } => self.edit(&vhost, |v| v.set_topic_permission(&user, permission)),
            C::ClearTopicPermission {
                vhost,
                user,
                exchange,
            } => self.edit(&vhost, |v| {
                v.clear_topic_permissions(&user, exchange.as_deref());
            }),
        }
        removed
    }

    fn edit(&mut self, vhost: &str, f: impl FnOnce(&mut VHost)) {
        if let Some(e) = self.vhosts.get_mut(vhost) {
            f(Arc::make_mut(&mut e.vhost));
        }
    }
}

impl Removed {
    /// Tells the connections of a deleted user or vhost to close, then deletes a deleted
    /// vhost's durable queues through their tasks (which delete their messages, and their
    /// records and bindings, in the committer's order) and lets its other queues stop.
    pub async fn finish(self, durable_queues: Vec<String>) {
        if let Some((revoked, reason)) = self.revoked {
            tracing::info!("{reason}: closing its connections");
            revoked.send_replace(Some(reason));
        }
        let Some(registry) = self.registry else {
            return;
        };
        for name in durable_queues {
            let Some(q) = registry.queue(&name) else {
                continue;
            };
            let (reply, done) = oneshot::channel();
            let delete = Command::Delete {
                if_unused: false,
                if_empty: false,
                reply,
            };
            if q.tx.send(delete).await.is_ok() {
                let _ = done.await;
            }
        }
        registry.forget_queues();
    }
}

/// What a vhost holds in the store: the deletions of its exchanges' and bindings' records, and
/// the names of its durable queues.
#[derive(Debug, Default)]
pub(super) struct StoredTopology {
    deletions: Vec<Op>,
    queues: Vec<String>,
}

/// Reads what vhost `vhost` holds in the store, on a blocking thread (store reads block).
pub(super) async fn scan_topology(
    store: Arc<dyn Store>,
    vhost: String,
) -> Result<StoredTopology, DefinitionError> {
    tokio::task::spawn_blocking(move || stored_topology(store.as_ref(), &vhost))
        .await
        .map_err(|e| DefinitionError::Store(e.to_string()))?
}

fn stored_topology(store: &dyn Store, vhost: &str) -> Result<StoredTopology, DefinitionError> {
    let scan = |kind| {
        store
            .scan_definitions(kind)
            .map_err(|e| DefinitionError::Store(e.to_string()))
    };
    let mut out = StoredTopology::default();
    for (key, _) in scan(persist::KIND_EXCHANGE)? {
        if decode_vhost_key(key.clone()).is_some_and(|(v, _)| v == vhost) {
            out.deletions.push(Op::DeleteDefinition {
                kind: persist::KIND_EXCHANGE,
                key,
            });
        }
    }
    for (key, _) in scan(persist::KIND_BINDING)? {
        if BindingRecord::decode(key.clone()).is_some_and(|b| b.vhost == vhost) {
            out.deletions.push(Op::DeleteDefinition {
                kind: persist::KIND_BINDING,
                key,
            });
        }
    }
    for (key, _) in scan(persist::KIND_QUEUE)? {
        if let Some((v, name)) = decode_vhost_key(key) {
            if v == vhost {
                out.queues.push(name);
            }
        }
    }
    Ok(out)
}

fn delete(kind: crate::store::DefinitionKind, key: &[u8]) -> Op {
    Op::DeleteDefinition {
        kind,
        key: Bytes::copy_from_slice(key),
    }
}

/// The deletions of `user`'s permission and topic permissions in `vhost`.
fn forget_user_records(batch: &mut Batch, vhost: &VHost, user: &str) {
    if vhost.permission(user).is_some() {
        batch.push(Op::DeleteDefinition {
            kind: persist::KIND_PERMISSION,
            key: persist::vhost_key(&vhost.name, user),
        });
    }
    for (_, p) in vhost.topic_permissions().filter(|(u, _)| *u == user) {
        batch.push(Op::DeleteDefinition {
            kind: persist::KIND_TOPIC_PERMISSION,
            key: topic_key(&vhost.name, user, &p.exchange),
        });
    }
}

/// A user's record: key the name, value the password then the tags joined by commas
/// (read back by [`super::recovery::load_access`]).
fn user_record(name: &str, password: &str, tags: &[String]) -> Op {
    let mut e = Enc::new();
    e.bytes(password.as_bytes())
        .bytes(tags.join(",").as_bytes());
    Op::PutDefinition {
        kind: persist::KIND_USER,
        key: Bytes::copy_from_slice(name.as_bytes()),
        value: e.finish(),
    }
}

fn permission_record(vhost: &str, user: &str, p: &Permission) -> Op {
    let mut e = Enc::new();
    e.bytes(p.configure.as_bytes())
        .bytes(p.write.as_bytes())
        .bytes(p.read.as_bytes());
    Op::PutDefinition {
        kind: persist::KIND_PERMISSION,
        key: persist::vhost_key(vhost, user),
        value: e.finish(),
    }
}

/// A topic permission's key: vhost, user, exchange.
fn topic_key(vhost: &str, user: &str, exchange: &str) -> Bytes {
    let mut e = Enc::new();
    e.bytes(vhost.as_bytes())
        .bytes(user.as_bytes())
        .bytes(exchange.as_bytes());
    e.finish()
}

fn topic_permission_record(vhost: &str, user: &str, p: &TopicPermission) -> Op {
    let mut e = Enc::new();
    e.bytes(p.write.as_bytes()).bytes(p.read.as_bytes());
    Op::PutDefinition {
        kind: persist::KIND_TOPIC_PERMISSION,
        key: topic_key(vhost, user, &p.exchange),
        value: e.finish(),
    }
}

/// A stored topic permission back as a change; `None` if damaged.
pub(super) fn decode_topic_permission(key: Bytes, value: Bytes) -> Option<DefinitionChange> {
    let mut k = Dec::new(key);
    let (vhost, user, exchange) = (k.string()?, k.string()?, k.string()?);
    let mut v = Dec::new(value);
    let (write, read) = (v.string()?, v.string()?);
    (k.is_done() && v.is_done()).then_some(DefinitionChange::SetTopicPermission {
        vhost,
        user,
        permission: TopicPermission {
            exchange,
            write,
            read,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::broker::queue::spawn;
    use crate::broker::queue_args::{QueueArgs, QueueName};
    use crate::broker::registry::{ExchangeSpec, QueueSpec};
    use crate::broker::{AuthError, Broker, VhostAccessError};
    use crate::config::Config;
    use crate::protocol::FieldTable;
    use crate::store::{MemoryStore, RocksOptions, RocksStore};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// The in-memory store and RocksDB (with the directory that must outlive it).
    fn stores() -> Vec<(Arc<dyn Store>, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        vec![
            (Arc::new(MemoryStore::new()), None),
            (Arc::new(rocks), Some(dir)),
        ]
    }

    /// A broker booted over `store`, as after a restart.
    fn boot(store: &Arc<dyn Store>) -> Broker {
        let p = Arc::new(Persistence::new(Arc::clone(store)).unwrap());
        Broker::with_persistence(&Config::default(), p).unwrap()
    }

    fn put_user(name: &str) -> DefinitionChange {
        DefinitionChange::PutUser {
            name: name.into(),
            password: "pw".into(),
            tags: vec!["management".into()],
        }
    }

    fn grant(vhost: &str, user: &str) -> DefinitionChange {
        DefinitionChange::SetPermission {
            vhost: vhost.into(),
            user: user.into(),
            permission: Permission::full(),
        }
    }

    fn count(store: &Arc<dyn Store>, kind: crate::store::DefinitionKind) -> usize {
        store.scan_definitions(kind).unwrap().len()
    }

    async fn revoked(r: &mut Revocation) -> String {
        tokio::time::timeout(Duration::from_secs(5), r.revoked())
            .await
            .expect("revoked in time")
    }

    #[tokio::test]
    async fn users_and_permissions_change_at_run_time_and_survive_a_restart() {
        for (store, _dir) in stores() {
            let b = boot(&store);
            assert_eq!(b.apply(put_user("app")).await, Ok(Applied::Created));
            assert_eq!(b.authenticate("app", b"pw", LOCAL).unwrap().name, "app");
            assert!(matches!(
                b.open_vhost("app", "/"),
                Err(VhostAccessError::Refused { .. })
            ));
            assert_eq!(b.apply(grant("/", "app")).await, Ok(Applied::Created));
            assert_eq!(b.apply(grant("/", "app")).await, Ok(Applied::Updated));
            assert!(b.open_vhost("app", "/").is_ok());
            let topic = DefinitionChange::SetTopicPermission {
                vhost: "/".into(),
                user: "app".into(),
                permission: TopicPermission {
                    exchange: "amq.topic".into(),
                    write: "^a".into(),
                    read: "^b".into(),
                },
            };
            assert_eq!(b.apply(topic).await, Ok(Applied::Created));
            let staging = DefinitionChange::PutVhost {
                name: "staging".into(),
            };
            assert_eq!(b.apply(staging.clone()).await, Ok(Applied::Created));
            assert_eq!(b.apply(staging).await, Ok(Applied::Unchanged));
            assert!(b.registry("staging").is_some());
            drop(b);

            let b = boot(&store);
            assert!(b.authenticate("app", b"pw", LOCAL).is_ok());
            let opened = b.open_vhost("app", "/").unwrap();
            let p = opened.vhost.topic_permission("app", "amq.topic").unwrap();
            assert_eq!((p.write.as_str(), p.read.as_str()), ("^a", "^b"));
            assert_eq!(
                b.open_vhost("app", "staging").unwrap_err().to_string(),
                "access to vhost 'staging' refused for user 'app'"
            );

            let mut revocation = opened.revoked;
            let delete = DefinitionChange::DeleteUser { name: "app".into() };
            assert_eq!(b.apply(delete).await, Ok(Applied::Deleted));
            assert_eq!(revoked(&mut revocation).await, "user 'app' is deleted");
            assert_eq!(
                b.authenticate("app", b"pw", LOCAL).unwrap_err(),
                AuthError::InvalidCredentials("app".into())
            );
            drop(b);

            let b = boot(&store);
            assert!(b.authenticate("app", b"pw", LOCAL).is_err());
            assert!(b.authenticate("guest", b"guest", LOCAL).is_ok());
            // guest's on `/` is the only permission left, and no topic permission.
            assert_eq!(count(&store, persist::KIND_PERMISSION), 1);
            assert_eq!(count(&store, persist::KIND_TOPIC_PERMISSION), 0);
        }
    }

    /// The management API will run changes in spawned handlers: no lock guard may live across
    /// an `.await` in `apply`.
    #[test]
    fn apply_is_send() {
        fn send<T: Send>(_: &T) {}
        let b = Broker::from_config(&Config::default()).unwrap();
        send(&b.apply(put_user("app")));
    }

    #[tokio::test]
    async fn invalid_changes_are_refused_and_write_nothing() {
        for (store, _dir) in stores() {
            let b = boot(&store);
            let before = (
                count(&store, persist::KIND_USER),
                count(&store, persist::KIND_PERMISSION),
            );
            let err = b.apply(grant("/", "ghost")).await.unwrap_err();
            assert_eq!(err, DefinitionError::NoSuchUser("ghost".into()));
            assert_eq!(err.to_string(), "User ghost does not exist");
            let err = b.apply(grant("nope", "guest")).await.unwrap_err();
            assert_eq!(err.to_string(), "Virtual host nope does not exist");
            let delete = DefinitionChange::DeleteUser {
                name: "ghost".into(),
            };
            assert_eq!(
                b.apply(delete).await,
                Err(DefinitionError::NoSuchUser("ghost".into()))
            );
            let delete = DefinitionChange::DeleteVhost {
                name: "nope".into(),
            };
            assert_eq!(
                b.apply(delete).await,
                Err(DefinitionError::NoSuchVhost("nope".into()))
            );
            assert_eq!(
                before,
                (
                    count(&store, persist::KIND_USER),
                    count(&store, persist::KIND_PERMISSION)
                )
            );
            let clear = DefinitionChange::ClearPermission {
                vhost: "/".into(),
                user: "guest".into(),
            };
            assert_eq!(b.apply(clear.clone()).await, Ok(Applied::Deleted));
            assert_eq!(b.apply(clear).await, Ok(Applied::Unchanged));
            assert_eq!(count(&store, persist::KIND_PERMISSION), 0);
        }
    }

    /// A durable exchange and a durable queue (with its task) in `registry`.
    fn declare_durables(registry: &Arc<Registry>) {
        let x = ExchangeSpec {
            name: "defs.x".into(),
            kind: "direct".into(),
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        };
        registry.declare_exchange(&x, false).unwrap();
        let spec = QueueSpec {
            name: "defs.q".into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        let args = QueueArgs::parse(&QueueName::new("v", "defs.q"), &spec.arguments).unwrap();
        let weak = Arc::downgrade(registry);
        registry
            .declare_queue(&spec, 1, || Ok(spawn(&spec, args, None, weak)))
            .unwrap();
    }

    #[tokio::test]
    async fn deleting_a_vhost_revokes_it_and_deletes_what_it_held() {
        for (store, _dir) in stores() {
            let b = boot(&store);
            let v = DefinitionChange::PutVhost { name: "v".into() };
            assert_eq!(b.apply(v).await, Ok(Applied::Created));
            b.apply(grant("v", "guest")).await.unwrap();
            let opened = b.open_vhost("guest", "v").unwrap();
            declare_durables(&opened.registry);
            opened
                .registry
                .persistence()
                .unwrap()
                .barrier()
                .await
                .unwrap();
            assert_eq!(count(&store, persist::KIND_EXCHANGE), 1);
            assert_eq!(count(&store, persist::KIND_QUEUE), 1);

            let mut revocation = opened.revoked;
            let delete = DefinitionChange::DeleteVhost { name: "v".into() };
            assert_eq!(b.apply(delete.clone()).await, Ok(Applied::Deleted));
            assert_eq!(revoked(&mut revocation).await, "vhost 'v' is deleted");
            assert_eq!(
                b.open_vhost("guest", "v").unwrap_err(),
                VhostAccessError::NotFound("v".into())
            );
            assert!(b.registry("v").is_none());
            opened
                .registry
                .persistence()
                .unwrap()
                .barrier()
                .await
                .unwrap();
            assert_eq!(count(&store, persist::KIND_EXCHANGE), 0);
            assert_eq!(count(&store, persist::KIND_QUEUE), 0);
            assert_eq!(count(&store, persist::KIND_VHOST), 1);
            assert_eq!(count(&store, persist::KIND_PERMISSION), 1);
            assert_eq!(
                b.apply(delete).await,
                Err(DefinitionError::NoSuchVhost("v".into()))
            );
            drop(b);
            let b = boot(&store);
            assert!(b.registry("v").is_none());
        }
    }

    /// RabbitMQ lets `/` and guest be deleted, and recreates them only in a store that has no
    /// vhost or no user left.
    #[tokio::test]
    async fn deleted_defaults_stay_deleted_until_the_store_is_empty() {
        for (store, _dir) in stores() {
            let b = boot(&store);
            b.apply(put_user("admin")).await.unwrap();
            let guest = DefinitionChange::DeleteUser {
                name: "guest".into(),
            };
            assert_eq!(b.apply(guest).await, Ok(Applied::Deleted));
            drop(b);
            let b = boot(&store);
            assert!(b.authenticate("guest", b"guest", LOCAL).is_err());
            let root = DefinitionChange::DeleteVhost { name: "/".into() };
            assert_eq!(b.apply(root).await, Ok(Applied::Deleted));
            assert!(b.registry("/").is_none());
            drop(b);
            // No vhost left: the defaults come back, and admin stays.
            let b = boot(&store);
            assert!(b.authenticate("guest", b"guest", LOCAL).is_ok());
            assert!(b.authenticate("admin", b"pw", LOCAL).is_ok());
            assert!(b.open_vhost("guest", "/").is_ok());
        }
    }
}
