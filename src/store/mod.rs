//! The storage layer: opaque records (keys and bytes) that survive a restart.
//!
//! The store knows nothing of AMQP. The broker encodes vhosts, exchanges, queues, bindings, users,
//! permissions and messages into bytes; the store keeps them, in order, and gives them back. One
//! narrow API ([`Store`]), two implementations: [`RocksStore`] (RocksDB, the real one) and
//! [`MemoryStore`] (`BTreeMap`s behind a mutex, for tests and for a broker run without a data dir).
//! `tests/it/store_conformance.rs` runs one test body against both, and a property test checks that
//! random operation sequences leave both with the same contents.
//!
//! # Data model
//!
//! - **Definitions**: `(kind, key) -> value`. `kind` is a [`DefinitionKind`], a one-byte
//!   namespace the broker assigns (vhosts, exchanges, queues, bindings, users, permissions...);
//!   `key` and `value` are opaque. Scanned per kind, in key order.
//! - **Message bodies**: `message id -> bytes`, stored once however many queues hold the message.
//! - **Queue index**: `(queue id, position) -> (message id, meta)`, one entry per message per
//!   queue. `meta` is small per-queue state (redelivered flag, delivery count) owned by the broker;
//!   re-putting an entry at the same position updates it (requeue in place).
//! - **Transient pages**: `(queue id, position) -> bytes`, for transient messages paged out of
//!   memory. Written without the WAL and cleared when the store opens: after a restart a
//!   transient message is gone, as AMQP says.
//!
//! # Reference counting: who deletes a body
//!
//! A body's reference count is the number of queue index entries that point at it, and the store
//! maintains it itself inside [`Store::commit`], so the broker cannot get it wrong: `Enqueue` adds
//! one, `Dequeue` and `DeleteQueueRange` remove one per entry, and when a commit leaves a body
//! with no references it deletes the body in the same atomic write. A body put and fully
//! dequeued in one commit (publish and ack merged by group commit) is never written at all.
//! There is deliberately no `DeleteMessage` operation: a body goes with its last entry, so a
//! broker bug cannot delete a body that a queue still holds.
//!
//! The count is persisted, not rebuilt: the `refs` column family holds `message id -> u32` *only
//! for messages in more than one queue*; no record means one reference. The common case (one
//! queue) therefore costs no extra write, and memory stays bounded however deep the backlog
//! (RabbitMQ's message store keeps every count in RAM instead). We rejected a periodic GC scan
//! because its cost grows with the total stored, not with the work done, and a body would linger
//! after its last ack until the next scan.
//!
//! The price is reads inside a commit: `Dequeue` reads the index entry to learn its message id,
//! then the `refs` record (a bloom-filter miss for single-queue messages); `PutMessage` checks the
//! id is free (a bloom-filter miss too). Recent records sit in the memtable, so these are memory
//! lookups in the steady state. Commits are serialised so these read-modify-writes cannot race;
//! [`GroupCommitter`] is the single writer anyway.
//!
//! Contracts the broker keeps: a message id is not reused while its body is stored (the store
//! refuses such a `PutMessage`; [`Store::max_message_id`] lets the broker resume numbering after a
//! restart); positions are below `u64::MAX`; a queue id is not reused until its range has been
//! deleted.
//!
//! # Column families and key layout (RocksDB)
//!
//! | column family | key | value |
//! |---|---|---|
//! | `default` | `b"format_version"` | `u32` big-endian, [`FORMAT_VERSION`] |
//! | `definitions` | `kind: u8` + key bytes | value bytes |
//! | `messages` | `message id: u64 BE` | body bytes |
//! | `refs` | `message id: u64 BE` | `u32 BE` reference count, only when > 1 |
//! | `queue_index` | `queue id: u64 BE` + `position: u64 BE` | `message id: u64 BE` + meta bytes |
//! | `transient` | `queue id: u64 BE` + `position: u64 BE` | page bytes |
//!
//! Integers are big-endian so that byte order is numeric order: a queue's entries are contiguous
//! and scan in position order (256 after 255, not after 2), and `messages` scans in id order.
//! [`MemoryStore`] keeps the same keys in `BTreeMap`s, so both stores order identically.
//!
//! # Threads and durability
//!
//! RocksDB calls block (a synced commit waits for an fsync), so the API is synchronous and the
//! broker calls it from a blocking thread, never from a tokio worker. [`GroupCommitter`] is that
//! thread for writes: it merges every batch that arrived while the previous commit was syncing into
//! one write and one WAL sync, and answers each submitter; that is how publisher confirms are
//! batched. Reads ([`Store::scan_queue`] and friends) may be called from `spawn_blocking`.
//!
//! Locks: [`RocksStore`] has one (commits), [`MemoryStore`] one (its maps), and
//! [`GroupCommitter`] calls the store holding none, so no two locks are ever held together.
//!
//! A commit is atomic: all its durable operations are applied, or none. With
//! [`Durability::Sync`] it returns after the WAL is on disk; with [`Durability::NoSync`] a crash
//! may lose it (but never half of it).
//!
//! # Opening
//!
//! [`RocksStore::open`] refuses a data dir another process (or another store in this process)
//! has open ([`StoreError::Locked`], from RocksDB's own `LOCK` file) and a dir written with another
//! format version ([`StoreError::FormatVersion`]). After a crash it replays the WAL up to the last
//! complete write, with no manual step.

mod error;
mod group;
mod keys;
mod memory;
mod plan;
mod rocks;

use bytes::Bytes;

pub use error::StoreError;
pub use group::{CommitTicket, GroupCommitter, GroupStats};
pub use memory::{MemoryDisk, MemoryStore};
pub use rocks::{RocksOptions, RocksStore};

/// The on-disk format this build reads and writes. Bump it when the key layout or an encoding
/// changes; [`RocksStore::open`] refuses any other version rather than misread it.
pub const FORMAT_VERSION: u32 = 1;

/// A queue, as numbered by the broker (kept in the queue's definition). Fixed width so index keys
/// are `queue id + position`.
pub type QueueId = u64;

/// A message body, as numbered by the broker. Never reused.
pub type MessageId = u64;

/// A namespace for definitions: the broker assigns one per kind of definition. Opaque here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DefinitionKind(pub u8);

/// One message in one queue: which body, plus the queue's small per-message state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The body, in the `messages` column family.
    pub message: MessageId,
    /// Per-queue metadata (redelivered flag, delivery count...), encoded by the broker.
    pub meta: Bytes,
}

/// Whether a commit waits for its WAL write to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the WAL before returning: for persistent messages and definitions.
    Sync,
    /// Write the WAL but do not wait for the disk: a crash may lose the commit.
    NoSync,
}

/// One operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace a definition.
    PutDefinition {
        kind: DefinitionKind,
        key: Bytes,
        value: Bytes,
    },
    /// Remove a definition (absent is not an error).
    DeleteDefinition { kind: DefinitionKind, key: Bytes },
    /// Store a body under a new id. It lives while queue entries reference it; a body no entry
    /// references when the commit ends is not kept.
    PutMessage { id: MessageId, body: Bytes },
    /// Put an entry at a queue position (replacing any entry there) and count a reference to
    /// its message, which must exist.
    Enqueue {
        queue: QueueId,
        position: u64,
        entry: QueueEntry,
    },
    /// Remove the entry at a position (ack); its body goes with its last reference.
    Dequeue { queue: QueueId, position: u64 },
    /// Remove the entries at positions `from..to` (purge, queue delete), releasing their bodies.
    DeleteQueueRange { queue: QueueId, from: u64, to: u64 },
    /// Page a transient message out: never synced, cleared at open.
    PutTransient {
        queue: QueueId,
        position: u64,
        bytes: Bytes,
    },
    /// Drop a transient page (absent is not an error).
    DeleteTransient { queue: QueueId, position: u64 },
    /// Drop transient pages at positions `from..to`.
    DeleteTransientRange { queue: QueueId, from: u64, to: u64 },
}

/// An owned list of operations, applied in order and atomically by [`Store::commit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Appends all of `other`'s operations after this batch's (group commit).
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl From<Vec<Op>> for Batch {
    fn from(ops: Vec<Op>) -> Self {
        Self { ops }
    }
}

/// The storage API the broker uses. Synchronous: call it from a blocking thread.
pub trait Store: Send + Sync {
    /// Applies `batch` atomically (its transient operations excepted, which are best effort).
    /// On error nothing durable of the batch is applied.
    fn commit(&self, batch: Batch, durability: Durability) -> Result<(), StoreError>;

    /// All definitions of one kind, in key order.
    fn scan_definitions(&self, kind: DefinitionKind) -> Result<Vec<(Bytes, Bytes)>, StoreError>;

    /// Up to `limit` entries of `queue` at positions `>= from`, in position order.
    fn scan_queue(
        &self,
        queue: QueueId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueueEntry)>, StoreError>;

    /// The highest position in use in `queue`, to resume appending after a restart.
    fn last_position(&self, queue: QueueId) -> Result<Option<u64>, StoreError>;

    /// A message body, if some queue still references it.
    fn get_message(&self, id: MessageId) -> Result<Option<Bytes>, StoreError>;

    /// How many queue entries reference a message (0 once it is gone).
    fn message_refs(&self, id: MessageId) -> Result<u32, StoreError>;

    /// The highest message id stored, to resume numbering after a restart.
    fn max_message_id(&self) -> Result<Option<MessageId>, StoreError>;

    /// Up to `limit` transient pages of `queue` at positions `>= from`, in position order.
    fn scan_transient(
        &self,
        queue: QueueId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError>;

    /// Makes every commit so far durable (NoSync ones included): for an orderly shutdown.
    fn flush(&self) -> Result<(), StoreError>;
}
