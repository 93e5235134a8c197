//! [`MemoryStore`]: the same API over `BTreeMap`s, for tests and a broker run without a data dir.
//!
//! A [`MemoryDisk`] plays the data dir: it outlives the stores opened on it, so tests can
//! "restart" (drop the store, open again: durable data stays, transient pages are cleared) and
//! check the same refusals as RocksDB (a second open of a disk in use, a foreign format version).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::plan::{plan, Reader, Write};
use super::{
    Batch, DefinitionKind, Durability, MessageId, QueueEntry, QueueId, Store, StoreError,
    FORMAT_VERSION,
};

/// The in-memory "data dir" that [`MemoryStore`]s open. Cloning shares it.
#[derive(Debug, Clone)]
pub struct MemoryDisk {
    inner: Arc<Mutex<Disk>>,
}

#[derive(Debug)]
struct Disk {
    open: bool,
    format_version: u32,
    data: Data,
}

/// Keyed like RocksDB's column families: tuple keys order as the big-endian byte keys do.
#[derive(Debug, Default)]
struct Data {
    definitions: BTreeMap<Vec<u8>, Bytes>,
    messages: BTreeMap<MessageId, Bytes>,
    refs: BTreeMap<MessageId, u32>,
    index: BTreeMap<(QueueId, u64), QueueEntry>,
    transient: BTreeMap<(QueueId, u64), Bytes>,
}

impl Default for MemoryDisk {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDisk {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Disk {
                open: false,
                format_version: FORMAT_VERSION,
                data: Data::default(),
            })),
        }
    }

    /// Pretends the disk was written by a build with another format (for tests of the refusal).
    pub fn set_format_version(&self, version: u32) {
        lock(&self.inner).format_version = version;
    }

    /// The name errors report, in place of a path.
    fn path() -> PathBuf {
        PathBuf::from("<memory>")
    }
}

/// A poisoned lock only means another thread panicked; the maps are only mutated after a batch
/// is fully planned, so they are consistent and we carry on.
fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The in-memory [`Store`]. Every call takes one mutex; commits plan and apply under it.
#[derive(Debug)]
pub struct MemoryStore {
    disk: MemoryDisk,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store on a fresh disk of its own.
    pub fn new() -> Self {
        let disk = MemoryDisk::new();
        lock(&disk.inner).open = true;
        Self { disk }
    }

    /// Opens `disk` as [`super::RocksStore::open`] opens a dir: refused while another store has
    /// it open or when its format differs; transient pages are cleared.
    pub fn open(disk: &MemoryDisk) -> Result<Self, StoreError> {
        let mut guard = lock(&disk.inner);
        if guard.open {
            return Err(StoreError::Locked {
                path: MemoryDisk::path(),
                detail: "memory disk already open".to_owned(),
            });
        }
        if guard.format_version != FORMAT_VERSION {
            return Err(StoreError::FormatVersion {
                path: MemoryDisk::path(),
                found: guard.format_version,
                expected: FORMAT_VERSION,
            });
        }
        guard.open = true;
        guard.data.transient.clear();
        drop(guard);
        Ok(Self { disk: disk.clone() })
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        lock(&self.disk.inner)
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.disk().open = false;
    }
}

impl Reader for Data {
    fn entry(&self, queue: QueueId, position: u64) -> Result<Option<QueueEntry>, StoreError> {
        Ok(self.index.get(&(queue, position)).cloned())
    }

    fn entries(
        &self,
        queue: QueueId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, QueueEntry)>, StoreError> {
        Ok(self
            .index
            .range((queue, from)..(queue, to))
            .map(|(&(_, position), entry)| (position, entry.clone()))
            .collect())
    }

    fn refs_record(&self, id: MessageId) -> Result<Option<u32>, StoreError> {
        Ok(self.refs.get(&id).copied())
    }

    fn message_exists(&self, id: MessageId) -> Result<bool, StoreError> {
        Ok(self.messages.contains_key(&id))
    }
}

impl Data {
    fn apply(&mut self, write: Write) {
        match write {
            Write::PutDefinition(key, value) => {
                self.definitions.insert(key, value);
            }
            Write::DeleteDefinition(key) => {
                self.definitions.remove(&key);
            }
            Write::PutBody(id, body) => {
                self.messages.insert(id, body);
            }
            Write::DeleteBody(id) => {
                self.messages.remove(&id);
            }
            Write::PutRefs(id, refs) => {
                self.refs.insert(id, refs);
            }
            Write::DeleteRefs(id) => {
                self.refs.remove(&id);
            }
            Write::PutEntry(queue, position, entry) => {
                self.index.insert((queue, position), entry);
            }
            Write::DeleteEntry(queue, position) => {
                self.index.remove(&(queue, position));
            }
            Write::DeleteEntryRange(queue, from, to) => {
                remove_range(&mut self.index, queue, from, to);
            }
            Write::PutTransient(queue, position, bytes) => {
                self.transient.insert((queue, position), bytes);
            }
            Write::DeleteTransient(queue, position) => {
                self.transient.remove(&(queue, position));
            }
            Write::DeleteTransientRange(queue, from, to) => {
                remove_range(&mut self.transient, queue, from, to);
            }
        }
    }
}

fn remove_range<V>(map: &mut BTreeMap<(QueueId, u64), V>, queue: QueueId, from: u64, to: u64) {
    let keys: Vec<_> = map
        .range((queue, from)..(queue, to))
        .map(|(key, _)| *key)
        .collect();
    for key in keys {
        map.remove(&key);
    }
}

impl Store for MemoryStore {
    fn commit(&self, batch: Batch, _durability: Durability) -> Result<(), StoreError> {
        let mut disk = self.disk();
        let plan = plan(&disk.data, batch)?;
        for write in plan.durable.into_iter().chain(plan.transient) {
            disk.data.apply(write);
        }
        Ok(())
    }

    fn scan_definitions(&self, kind: DefinitionKind) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        let disk = self.disk();
        Ok(disk
            .data
            .definitions
            .range(vec![kind.0]..)
            .take_while(|(key, _)| key.first() == Some(&kind.0))
            .map(|(key, value)| (Bytes::copy_from_slice(&key[1..]), value.clone()))
            .collect())
    }

    fn scan_queue(
        &self,
        queue: QueueId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueueEntry)>, StoreError> {
        let disk = self.disk();
        Ok(disk
            .data
            .index
            .range((queue, from)..=(queue, u64::MAX))
            .take(limit)
            .map(|(&(_, position), entry)| (position, entry.clone()))
            .collect())
    }

    fn last_position(&self, queue: QueueId) -> Result<Option<u64>, StoreError> {
        let disk = self.disk();
        Ok(disk
            .data
            .index
            .range((queue, 0)..=(queue, u64::MAX))
            .next_back()
            .map(|(&(_, position), _)| position))
    }

    fn get_message(&self, id: MessageId) -> Result<Option<Bytes>, StoreError> {
        Ok(self.disk().data.messages.get(&id).cloned())
    }

    fn message_refs(&self, id: MessageId) -> Result<u32, StoreError> {
        let disk = self.disk();
        Ok(match disk.data.refs.get(&id) {
            Some(&refs) => refs,
            None => u32::from(disk.data.messages.contains_key(&id)),
        })
    }

    fn max_message_id(&self) -> Result<Option<MessageId>, StoreError> {
        Ok(self.disk().data.messages.keys().next_back().copied())
    }

    fn scan_transient(
        &self,
        queue: QueueId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let disk = self.disk();
        Ok(disk
            .data
            .transient
            .range((queue, from)..=(queue, u64::MAX))
            .take(limit)
            .map(|(&(_, position), bytes)| (position, bytes.clone()))
            .collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
