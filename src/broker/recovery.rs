//! Boot from the store: users, vhosts and permissions (applied by
//! [`Broker::with_persistence`] through the definitions service); then every vhost's durable exchanges,
//! queues (with the counts of their stored messages) and bindings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::definitions::{self, DefinitionChange};
use super::persist::{
    self, decode_vhost_key, BindingRecord, Dec, ExchangeRecord, Persistence, QueueRecord,
};
use super::queue::paging;
use super::queue_args::{QueueArgs, QueueName};
use super::registry::{QueueSpec, Registry};
use super::{Broker, Permission};
use crate::store::{Batch, Durability, Op, Store, StoreError};

/// Users, vhosts, permissions and topic permissions as stored, as the changes that bring them
/// back (users first, then vhosts, then what names both).
#[derive(Debug, Default)]
pub struct StoredAccess {
    pub changes: Vec<DefinitionChange>,
    pub users: usize,
    pub vhosts: usize,
}

impl StoredAccess {
    /// RabbitMQ's `needs_default_data`: a store without users or without vhosts gets the
    /// default user and vhost. Otherwise a deleted guest or `/` stays deleted.
    pub fn needs_defaults(&self) -> bool {
        self.users == 0 || self.vhosts == 0
    }
}

pub fn load_access(store: &dyn Store) -> Result<StoredAccess, StoreError> {
    let mut out = StoredAccess::default();
    for (key, value) in store.scan_definitions(persist::KIND_USER)? {
        let mut d = Dec::new(value);
        let (Ok(name), Some(password), Some(tags)) =
            (String::from_utf8(key.to_vec()), d.string(), d.string())
        else {
            warn!("skipping a damaged user record");
            continue;
        };
        let tags = tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        out.users += 1;
        out.changes.push(DefinitionChange::PutUser {
            name,
            password,
            tags,
        });
    }
    for (key, _) in store.scan_definitions(persist::KIND_VHOST)? {
        match String::from_utf8(key.to_vec()) {
            Ok(name) => {
                out.vhosts += 1;
                out.changes.push(DefinitionChange::PutVhost { name });
            }
            Err(_) => warn!("skipping a damaged vhost record"),
        }
    }
    for (key, value) in store.scan_definitions(persist::KIND_PERMISSION)? {
        let mut d = Dec::new(value);
        let (Some((vhost, user)), Some(configure), Some(write), Some(read)) =
            (decode_vhost_key(key), d.string(), d.string(), d.string())
        else {
            warn!("skipping a damaged permission record");
            continue;
        };
        out.changes.push(DefinitionChange::SetPermission {
            vhost,
            user,
            permission: Permission {
                configure,
                write,
                read,
            },
        });
    }
    for (key, value) in store.scan_definitions(persist::KIND_TOPIC_PERMISSION)? {
        match definitions::decode_topic_permission(key, value) {
            Some(change) => out.changes.push(change),
            None => warn!("skipping a damaged topic permission record"),
        }
    }
    Ok(out)
}

/// Deletes the stored exchanges and queues (with their messages) of vhosts that are gone.
/// A vhost deletion deletes the vhost's record and its exchanges' and bindings' records in one
/// synced commit, then its queues through their tasks, unsynced: a crash in between leaves
/// queues whose vhost no longer exists, which would otherwise come back if the vhost were
/// created again.
fn finish_vhost_deletions(broker: &Broker, store: &dyn Store) -> Result<(), StoreError> {
    let mut gone = Batch::new();
    for (key, _) in store.scan_definitions(persist::KIND_EXCHANGE)? {
        if let Some((vhost, _)) = decode_vhost_key(key.clone()) {
            if broker.registry(&vhost).is_none() {
                gone.push(Op::DeleteDefinition {
                    kind: persist::KIND_EXCHANGE,
                    key,
                });
            }
        }
    }
    for (key, value) in store.scan_definitions(persist::KIND_QUEUE)? {
        let (Some((vhost, name)), Some(record)) =
            (decode_vhost_key(key.clone()), QueueRecord::decode(value))
        else {
            continue;
        };
        if broker.registry(&vhost).is_some() {
            continue;
        }
        warn!(%vhost, queue = %name, "deleting a queue of a deleted vhost");
        gone.push(Op::DeleteDefinition {
            kind: persist::KIND_QUEUE,
            key,
        })
        .push(Op::DeleteDefinition {
            kind: persist::KIND_DELIVERED,
            key: paging::delivered_key(record.id),
        })
        .push(Op::DeleteQueueRange {
            queue: record.id,
            from: 0,
            to: u64::MAX,
        });
    }
    if gone.is_empty() {
        return Ok(());
    }
    store.commit(gone, Durability::Sync)
}

/// What recovery brought back, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    pub exchanges: usize,
    pub queues: usize,
    pub bindings: usize,
    pub messages: u64,
    pub elapsed: Duration,
}

/// Brings back durable exchanges, queues and bindings into `broker`'s registries. Queue tasks
/// start with the counts of their stored messages and read them back as consumers need them.
/// Exchanges and queues of a vhost that no longer exists are deleted (a vhost deletion that a
/// crash interrupted), as are bindings left dangling; other records that cannot be decoded or
/// restored are skipped with a warning.
pub fn recover(broker: &Broker, p: &Persistence) -> Result<RecoveryReport, StoreError> {
    let started = Instant::now();
    let store = p.store().as_ref();
    let mut report = RecoveryReport::default();
    finish_vhost_deletions(broker, store)?;
    let registry = |vhost: &str| broker.registry(vhost);

    for (key, value) in store.scan_definitions(persist::KIND_EXCHANGE)? {
        let (Some((vhost, name)), Some(record)) =
            (decode_vhost_key(key), ExchangeRecord::decode(value))
        else {
            warn!("skipping a damaged exchange record");
            continue;
        };
        match registry(&vhost) {
            Some(r) if r.restore_exchange(&name, record) => report.exchanges += 1,
            _ => {
                warn!(%vhost, exchange = %name, "skipping an exchange of an unknown vhost or type")
            }
        }
    }

    let delivered = paging::delivered_marks(store)?;
    let mut max_id = 0;
    for (key, value) in store.scan_definitions(persist::KIND_QUEUE)? {
        let (Some((vhost, name)), Some(record)) =
            (decode_vhost_key(key), QueueRecord::decode(value))
        else {
            warn!("skipping a damaged queue record");
            continue;
        };
        max_id = max_id.max(record.id);
        let Some(r) = registry(&vhost) else {
            warn!(%vhost, queue = %name, "skipping a queue of an unknown vhost");
            continue;
        };
        let args = match QueueArgs::parse(
            &QueueName::new(vhost.as_str(), name.as_str()),
            &record.arguments,
        ) {
            Ok(args) => args,
            Err(e) => {
                warn!(%vhost, queue = %name, error = %e, "skipping a queue with invalid arguments");
                continue;
            }
        };
        let found = paging::recover(store, record.id, delivered.get(&record.id).copied())?;
        let spec = QueueSpec {
            name: name.clone(),
            durable: true,
            exclusive: false,
            auto_delete: record.auto_delete,
            arguments: record.arguments,
        };
        let q = super::queue::spawn_recovered(&spec, args, Arc::downgrade(&r), record.id, found);
        r.restore_queue(q);
        report.queues += 1;
        report.messages += found.count;
        info!(%vhost, queue = %name, messages = found.count, "recovered queue");
    }
    super::queue::reserve_ids_through(max_id);

    let mut dangling = Batch::new();
    for (key, _) in store.scan_definitions(persist::KIND_BINDING)? {
        let Some(record) = BindingRecord::decode(key.clone()) else {
            warn!("skipping a damaged binding record");
            continue;
        };
        let restored =
            registry(&record.vhost).is_some_and(|r: Arc<Registry>| r.restore_binding(record));
        if restored {
            report.bindings += 1;
        } else {
            dangling.push(Op::DeleteDefinition {
                kind: persist::KIND_BINDING,
                key,
            });
        }
    }
    if !dangling.is_empty() {
        warn!(
            count = dangling.len(),
            "deleting bindings whose source or destination is gone"
        );
        store.commit(dangling, Durability::Sync)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::broker::definitions::DefinitionChange;
    use crate::broker::queue::spawn;
    use crate::config::Config;
    use crate::protocol::FieldTable;
    use crate::store::{MemoryStore, QueueEntry, RocksOptions, RocksStore};

    fn boot(store: &Arc<dyn Store>) -> (Broker, Arc<Persistence>) {
        let p = Arc::new(Persistence::new(Arc::clone(store)).unwrap());
        let b = Broker::with_persistence(&Config::default(), Arc::clone(&p)).unwrap();
        (b, p)
    }

    /// A crash after a vhost deletion's synced commit, before its queues' tasks deleted them:
    /// the next boot deletes the orphaned queue and its messages, so re-creating the vhost
    /// does not bring them back.
    #[tokio::test]
    async fn queues_of_a_deleted_vhost_are_deleted_at_boot() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        let stores: [Arc<dyn Store>; 2] = [Arc::new(MemoryStore::new()), Arc::new(rocks)];
        for store in stores {
            let (b, p) = boot(&store);
            let v = DefinitionChange::PutVhost { name: "v".into() };
            b.apply(v).await.unwrap();
            let registry = b.registry("v").unwrap();
            let spec = QueueSpec {
                name: "defs.q".into(),
                durable: true,
                exclusive: false,
                auto_delete: false,
                arguments: FieldTable::new(),
            };
            let args = QueueArgs::parse(&QueueName::new("v", "defs.q"), &spec.arguments).unwrap();
            let weak = Arc::downgrade(&registry);
            let (q, _) = registry
                .declare_queue(&spec, 1, || Ok(spawn(&spec, args, None, weak)))
                .unwrap();
            p.barrier().await.unwrap();
            let mut batch = Batch::new();
            batch
                .push(Op::PutMessage {
                    id: 77,
                    body: bytes::Bytes::from_static(b"m"),
                })
                .push(Op::Enqueue {
                    queue: q.id,
                    position: 0,
                    entry: QueueEntry {
                        message: 77,
                        meta: bytes::Bytes::new(),
                    },
                });
            store.commit(batch, Durability::Sync).unwrap();
            let mut crash = Batch::new();
            crash.push(Op::DeleteDefinition {
                kind: persist::KIND_VHOST,
                key: bytes::Bytes::from_static(b"v"),
            });
            store.commit(crash, Durability::Sync).unwrap();
            let id = q.id;
            drop((q, registry, b, p));

            let (b, p) = boot(&store);
            assert!(b.registry("v").is_none());
            assert_eq!(recover(&b, &p).unwrap().queues, 0);
            assert!(store
                .scan_definitions(persist::KIND_QUEUE)
                .unwrap()
                .is_empty());
            assert_eq!(store.last_position(id).unwrap(), None);
            assert_eq!(store.get_message(77).unwrap(), None);
        }
    }
}
