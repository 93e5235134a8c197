//! A queue's side of the store: the entries it removes (acks, purges, deletion), the pages it
//! writes so that memory stays bounded, and reading its tail back.
//!
//! # Bounded memory
//!
//! A queue keeps at most about [`PAGE_HIGH_COUNT`] ready messages (or [`PAGE_HIGH_BYTES`]) in
//! memory. Past that it starts *paging*: every message arriving at a position at or after the
//! `cursor` goes to disk only (a persistent one is already in the queue index, written by its
//! publisher; a transient one is written as a page, unsynced), and the queue keeps just a count
//! and a byte total of that tail. When fewer than [`PAGE_LOW`] ready messages are left in
//! memory, the next chunk is read back, in position order, from both the index and the pages.
//!
//! Invariant while paging: every message of the tail is at a position `>= cursor`, and every
//! message in memory at a position `< cursor`. A message that arrives late (its publisher took
//! its position before others that arrived first) below the cursor simply stays in memory.
//!
//! Publishers write their entries through the committer, and the queue reads the store
//! directly; before each read the queue waits for a barrier (an empty commit queued behind
//! everything submitted so far), so an entry counted in the tail is always there to read.
//!
//! Priority queues and length-limited queues do not page: their order (by priority) and
//! their drop-head need every message at hand. They are bounded by their own limits, or not at
//! all (docs/compatibility.md says so).

use std::sync::Arc;

use bytes::Bytes;
use tracing::error;

use super::state::{Entry, Position, QueueState};
use super::task::{Enqueued, QueueShared};
use crate::broker::dead_letter::effective_ttl;
use crate::broker::message::Message;
use crate::broker::persist::{
    self, decode_message, decode_page, encode_message, encode_page, DefinitionChanges, Meta,
    Persistence, PublishWrites,
};
use crate::broker::settings::QueueSettings;
use crate::store::{
    Batch, DefinitionKind, Durability, MessageId, Op, QueueEntry, QueueId, Store, StoreError,
};

/// Start paging past this many ready messages in memory...
pub const PAGE_HIGH_COUNT: usize = 4096;
/// ...or this many bytes of ready bodies.
pub const PAGE_HIGH_BYTES: u64 = 64 << 20;
/// Read the tail back when fewer ready messages than this are in memory.
pub const PAGE_LOW: usize = 1024;
/// Most entries read back at once.
const CHUNK: usize = 2048;
/// Positions per `DeleteQueueRange` when a queue goes, so that no single commit reads a
/// whole backlog's index into memory.
const DELETE_CHUNK: u64 = 64 * 1024;

/// What a queue's recovery found in the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recovered {
    pub count: u64,
    pub bytes: u64,
    pub next_position: Position,
    /// The highest position delivered before the restart.
    pub delivered: Option<Position>,
}

/// Scans a durable queue's index once at boot: how many messages, how many bytes, where to
/// continue numbering. Only counts are kept: the messages are read back as consumers need them.
pub fn recover(
    store: &dyn Store,
    queue: QueueId,
    delivered: Option<Position>,
) -> Result<Recovered, StoreError> {
    let mut out = Recovered {
        delivered,
        ..Recovered::default()
    };
    let mut from = 0;
    loop {
        let entries = store.scan_queue(queue, from, 64 * 1024)?;
        let Some((last, _)) = entries.last() else {
            break;
        };
        from = last + 1;
        out.next_position = from;
        for (_, entry) in &entries {
            out.count += 1;
            out.bytes += Meta::decode(&entry.meta).map_or(0, |m| m.body_size);
        }
    }
    // Numbering continues past the delivered mark too (the entries above it may all have
    // been acked), so no new message is ever taken for one delivered before the restart.
    if let Some(d) = delivered {
        out.next_position = out.next_position.max(d.saturating_add(1));
    }
    Ok(out)
}

/// The store entry of a message going to `q`, if it is to be stored (persistent message,
/// durable queue): the body once per message (`id` remembers it across the queues of one
/// publish), an index entry per queue. Takes the message's position in `q` either way.
/// `settings` are `q`'s current ones (the stored expiry and priority follow them).
pub fn enqueue_for(
    persistence: Option<&Persistence>,
    q: &QueueShared,
    settings: &QueueSettings,
    message: &Arc<Message>,
    writes: &mut PublishWrites,
    id: &mut Option<MessageId>,
) -> Enqueued {
    let position = q.take_position();
    let stored = match persistence {
        Some(p) if q.persistent() && message.properties.delivery_mode == Some(2) => {
            let message_id = *id.get_or_insert_with(|| {
                let new = p.next_message_id();
                writes.push(Op::PutMessage {
                    id: new,
                    body: encode_message(message),
                });
                new
            });
            let ttl = effective_ttl(settings.message_ttl, message.ttl);
            let meta = Meta {
                redelivered: false,
                deliveries: 0,
                expires_unix_ms: ttl.map(|t| persist::now_unix_ms().saturating_add(t)),
                priority: settings
                    .max_priority
                    .map_or(0, |max| message.properties.priority.unwrap_or(0).min(max)),
                body_size: message.body_size(),
            };
            writes.push(Op::Enqueue {
                queue: q.id,
                position,
                entry: QueueEntry {
                    message: message_id,
                    meta: meta.to_bytes(),
                },
            });
            true
        }
        _ => false,
    };
    Enqueued {
        position,
        message: Arc::clone(message),
        stored,
        admitted: false,
    }
}

/// A queue's store state.
pub struct Disk {
    persistence: Arc<Persistence>,
    queue: QueueId,
    durable: bool,
    can_page: bool,
    /// Removals and pages of this wake-up, committed (unsynced) at its end.
    ops: Batch,
    paging: bool,
    cursor: Position,
    tail_count: u64,
    tail_bytes: u64,
    /// The highest stored position handed out, and the last value written.
    delivered: Option<Position>,
    delivered_saved: Option<Position>,
    /// Recovered messages at or below this were delivered before the restart.
    recovered_delivered: Option<Position>,
}

/// One message read back from the tail.
struct Loaded {
    position: Position,
    meta: Meta,
    message: Message,
    stored: bool,
}

impl Disk {
    pub fn new(
        persistence: Arc<Persistence>,
        queue: QueueId,
        durable: bool,
        can_page: bool,
        recovered: Option<Recovered>,
    ) -> Disk {
        let r = recovered.unwrap_or_default();
        Disk {
            persistence,
            queue,
            durable,
            can_page,
            ops: Batch::new(),
            paging: r.count > 0,
            cursor: 0,
            tail_count: r.count,
            tail_bytes: r.bytes,
            delivered: r.delivered,
            delivered_saved: r.delivered,
            recovered_delivered: r.delivered,
        }
    }

    /// The queue's settings changed: a queue that gained a length limit (or lost its last one)
    /// stops (or may start) paging. One that stops reads its tail back before the next
    /// command, since [`Disk::needs_refill`] then asks for all of it.
    pub fn set_can_page(&mut self, can_page: bool) {
        self.can_page = can_page;
    }

    /// Ready messages on disk only.
    pub fn tail(&self) -> (u64, u64) {
        (self.tail_count, self.tail_bytes)
    }

    /// The entry left the queue (ack, reject, expiry, drop, no-ack delivery).
    pub fn removed(&mut self, entry: &Entry) {
        if entry.stored {
            self.ops.push(Op::Dequeue {
                queue: self.queue,
                position: entry.position,
            });
        }
    }

    /// A no-ack delivery left the queue at `position`.
    pub fn removed_at(&mut self, position: Position, stored: bool) {
        if stored {
            self.ops.push(Op::Dequeue {
                queue: self.queue,
                position,
            });
        }
    }

    /// A stored message was handed out: after a restart it comes back redelivered.
    pub fn delivered(&mut self, position: Position) {
        self.delivered = Some(self.delivered.map_or(position, |d| d.max(position)));
    }

    /// Takes the message to disk instead of memory when the queue is paging (or must start
    /// now); `false` means it belongs in memory.
    pub fn page_out(
        &mut self,
        state: &QueueState,
        e: &Enqueued,
        expires_at: Option<tokio::time::Instant>,
    ) -> bool {
        if !self.paging {
            let full =
                state.ready_count() >= PAGE_HIGH_COUNT || state.ready_bytes() >= PAGE_HIGH_BYTES;
            if !(self.can_page && full && e.position >= state.next_position()) {
                return false;
            }
            self.paging = true;
            self.cursor = state.next_position();
        }
        if e.position < self.cursor {
            return false;
        }
        if !e.stored {
            let meta = Meta {
                redelivered: false,
                deliveries: 0,
                expires_unix_ms: expires_at.map(persist::instant_to_unix_ms),
                priority: 0,
                body_size: e.message.body_size(),
            };
            self.ops.push(Op::PutTransient {
                queue: self.queue,
                position: e.position,
                bytes: encode_page(&meta, &e.message),
            });
        }
        self.tail_count += 1;
        self.tail_bytes += e.message.body_size();
        true
    }

    /// Whether memory should be topped up from the tail now.
    pub fn needs_refill(&self, state: &QueueState) -> bool {
        self.paging && (!self.can_page || state.ready_count() < PAGE_LOW)
    }

    /// Reads the next chunk of the tail into `state`.
    pub async fn refill(&mut self, state: &mut QueueState) {
        self.flush();
        // Every entry counted in the tail was submitted before this barrier.
        if let Err(e) = self.persistence.barrier().await {
            error!(queue = self.queue, error = %e, "store barrier failed; tail not read");
            return;
        }
        let store = Arc::clone(self.persistence.store());
        let (queue, cursor) = (self.queue, self.cursor);
        let read = tokio::task::spawn_blocking(move || load(&*store, queue, cursor, CHUNK)).await;
        let (loaded, skipped, next_cursor) = match read {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => {
                error!(queue, error = %e, "cannot read the queue's tail from the store");
                return;
            }
            Err(e) => {
                error!(queue, error = %e, "store read task failed");
                return;
            }
        };
        // Damaged records were logged and are gone from the count.
        self.tail_count = self.tail_count.saturating_sub(skipped);
        if next_cursor == self.cursor {
            // The counts promised more than the store holds: trust the store.
            if self.tail_count > 0 {
                error!(
                    queue,
                    missing = self.tail_count,
                    "queue tail shorter than counted; resetting the count"
                );
            }
            self.tail_count = 0;
            self.tail_bytes = 0;
            self.paging = false;
            return;
        }
        // Damaged pages go with the range too.
        let mut transient = skipped > 0;
        for l in loaded {
            self.tail_count = self.tail_count.saturating_sub(1);
            self.tail_bytes = self.tail_bytes.saturating_sub(l.meta.body_size);
            transient |= !l.stored;
            let message = Arc::new(l.message);
            let was_delivered = self
                .recovered_delivered
                .is_some_and(|d| l.stored && l.position <= d);
            state.insert_loaded(Entry {
                priority: state.priority_of(&message),
                message,
                redelivered: l.meta.redelivered || was_delivered,
                deliveries: l.meta.deliveries,
                expires_at: l.meta.expires_unix_ms.map(persist::unix_ms_to_instant),
                position: l.position,
                stored: l.stored,
            });
        }
        if transient {
            self.ops.push(Op::DeleteTransientRange {
                queue: self.queue,
                from: self.cursor,
                to: next_cursor,
            });
        }
        self.cursor = next_cursor;
        if self.tail_count == 0 {
            self.paging = false;
        }
    }

    /// Purge: the tail goes; `entries` are the ready messages purged from memory.
    pub fn purge(&mut self, entries: &[Entry], end: Position) {
        for e in entries {
            self.removed(e);
        }
        if self.paging {
            self.delete_range(self.cursor, end);
            self.tail_count = 0;
            self.tail_bytes = 0;
            self.paging = false;
        }
    }

    fn delete_range(&mut self, from: Position, end: Position) {
        self.flush();
        self.ops.push(Op::DeleteTransientRange {
            queue: self.queue,
            from,
            to: u64::MAX,
        });
        if self.durable {
            let mut at = from;
            while at < end {
                let to = end.min(at.saturating_add(DELETE_CHUNK));
                self.ops.push(Op::DeleteQueueRange {
                    queue: self.queue,
                    from: at,
                    to,
                });
                // One commit per chunk: each reads its range's entries to release bodies.
                self.flush();
                at = to;
            }
        }
        self.flush();
    }

    /// The queue is deleted: its definitions (from the registry) and every entry and page.
    pub fn delete_all(&mut self, definitions: DefinitionChanges, end: Position) {
        // Pending removals are covered by the range deletes; the definitions go first.
        self.ops = definitions.batch;
        self.ops.push(Op::DeleteDefinition {
            kind: persist::KIND_DELIVERED,
            key: delivered_key(self.queue),
        });
        self.delivered = self.delivered_saved;
        self.delete_range(0, end);
        self.paging = false;
        self.tail_count = 0;
        self.tail_bytes = 0;
    }

    /// Commits this wake-up's removals and pages, unsynced (a lost ack redelivers).
    pub fn flush(&mut self) {
        if self.delivered != self.delivered_saved {
            if let Some(d) = self.delivered {
                self.ops.push(Op::PutDefinition {
                    kind: persist::KIND_DELIVERED,
                    key: delivered_key(self.queue),
                    value: Bytes::copy_from_slice(&d.to_be_bytes()),
                });
            }
            self.delivered_saved = self.delivered;
        }
        if !self.ops.is_empty() {
            let ops = std::mem::take(&mut self.ops);
            drop(self.persistence.submit(ops, Durability::NoSync));
        }
    }
}

pub fn delivered_key(queue: QueueId) -> Bytes {
    Bytes::copy_from_slice(&queue.to_be_bytes())
}

/// The delivered watermarks of every queue, read once at boot.
pub fn delivered_marks(
    store: &dyn Store,
) -> Result<std::collections::HashMap<QueueId, Position>, StoreError> {
    let kind: DefinitionKind = persist::KIND_DELIVERED;
    Ok(store
        .scan_definitions(kind)?
        .into_iter()
        .filter_map(|(k, v)| {
            let q = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
            let d = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
            Some((q, d))
        })
        .collect())
}

/// Reads up to `limit` tail messages at positions `>= cursor` from the index and the pages,
/// merged in position order; returns them, how many damaged ones were skipped, and the next
/// cursor.
fn load(
    store: &dyn Store,
    queue: QueueId,
    cursor: Position,
    limit: usize,
) -> Result<(Vec<Loaded>, u64, Position), StoreError> {
    let index = store.scan_queue(queue, cursor, limit)?;
    let pages = store.scan_transient(queue, cursor, limit)?;
    // A full list may continue past its last position: only positions up to the smaller
    // such bound are complete in both.
    let bound = [
        (index.len() == limit)
            .then(|| index.last().map(|(p, _)| *p))
            .flatten(),
        (pages.len() == limit)
            .then(|| pages.last().map(|(p, _)| *p))
            .flatten(),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(index.len() + pages.len());
    let mut last = None;
    let mut skipped = 0;
    for (position, entry) in index.into_iter().filter(|(p, _)| *p <= bound) {
        last = Some(last.map_or(position, |l: Position| l.max(position)));
        let meta = Meta::decode(&entry.meta);
        let body = store.get_message(entry.message)?;
        match (meta, body.and_then(decode_message)) {
            (Some(meta), Some(message)) => out.push(Loaded {
                position,
                meta,
                message,
                stored: true,
            }),
            _ => {
                skipped += 1;
                error!(
                    queue,
                    position,
                    message = entry.message,
                    "damaged or missing stored message skipped"
                );
            }
        }
    }
    for (position, page) in pages.into_iter().filter(|(p, _)| *p <= bound) {
        last = Some(last.map_or(position, |l: Position| l.max(position)));
        match decode_page(page) {
            Some((meta, message)) => out.push(Loaded {
                position,
                meta,
                message,
                stored: false,
            }),
            None => {
                skipped += 1;
                error!(queue, position, "damaged page skipped");
            }
        }
    }
    out.sort_by_key(|l| l.position);
    Ok((out, skipped, last.map_or(cursor, |l| l + 1)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicU64;

    use tokio::sync::mpsc;

    use super::*;
    use crate::protocol::BasicProperties;
    use crate::store::MemoryStore;

    fn queue(id: u64, durable: bool) -> QueueShared {
        let (tx, _) = mpsc::channel(1);
        QueueShared {
            name: format!("q{id}"),
            id,
            durable,
            auto_delete: false,
            exclusive_owner: None,
            declared: Default::default(),
            settings: Default::default(),
            admission: Default::default(),
            tx,
            positions: AtomicU64::new(10),
        }
    }

    fn message(delivery_mode: u8) -> Arc<Message> {
        Arc::new(Message {
            exchange: "x".into(),
            routing_key: "k".into(),
            properties: BasicProperties {
                delivery_mode: Some(delivery_mode),
                ..Default::default()
            },
            body: Bytes::from_static(b"body"),
            ttl: None,
            deaths: None,
        })
    }

    #[test]
    fn a_message_routed_to_many_durable_queues_stores_its_body_once() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let p = Persistence::new(Arc::clone(&store)).unwrap();
        let queues = [
            queue(1, true),
            queue(2, true),
            queue(3, true),
            queue(4, false),
        ];
        let m = message(2);
        let none = QueueSettings::default();
        let mut writes = PublishWrites::new();
        let mut id = None;
        let sent: Vec<Enqueued> = queues
            .iter()
            .map(|q| enqueue_for(Some(&p), q, &none, &m, &mut writes, &mut id))
            .collect();
        let batch = writes.into_batch();
        let puts = batch
            .ops()
            .iter()
            .filter(|op| matches!(op, Op::PutMessage { .. }))
            .count();
        let enqueues = batch
            .ops()
            .iter()
            .filter(|op| matches!(op, Op::Enqueue { .. }))
            .count();
        assert_eq!((puts, enqueues), (1, 3));
        let stored: Vec<bool> = sent.iter().map(|e| e.stored).collect();
        assert_eq!(stored, [true, true, true, false]);
        assert!(sent.iter().all(|e| e.position == 10));
        store.commit(batch, Durability::Sync).unwrap();
        assert_eq!(store.message_refs(id.unwrap()).unwrap(), 3);
        let (_, meta) = store.scan_queue(2, 0, 10).unwrap().pop().unwrap();
        assert_eq!(Meta::decode(&meta.meta).unwrap().body_size, 4);

        // Transient messages are never written by the publisher, nor is anything without a
        // store.
        let mut batch = PublishWrites::new();
        let mut id = None;
        let e = enqueue_for(
            Some(&p),
            &queues[0],
            &none,
            &message(1),
            &mut batch,
            &mut id,
        );
        assert!(!e.stored && batch.is_empty() && id.is_none());
        let e = enqueue_for(None, &queues[0], &none, &m, &mut batch, &mut id);
        assert!(!e.stored && batch.is_empty());
        assert_eq!(
            queues[0].take_position(),
            13,
            "every publish takes a position"
        );
    }
}
