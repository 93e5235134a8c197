//! Turns a [`Batch`] into primitive writes, maintaining reference counts (see the module doc of
//! `store`). Both stores run this same code, reading through [`Reader`], and only differ in how
//! they apply the resulting [`Write`]s: that is what keeps their behaviour identical.
//!
//! Planning reads the store but writes nothing, so a batch that fails (unknown entry, unknown
//! message, ...) leaves the store untouched: atomicity comes for free.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::keys::definition_key;
use super::{Batch, MessageId, Op, QueueEntry, QueueId, StoreError};

/// What planning needs to read from the store as it was before the batch.
pub(crate) trait Reader {
    fn entry(&self, queue: QueueId, position: u64) -> Result<Option<QueueEntry>, StoreError>;
    /// Entries at positions `from..to`, in order.
    fn entries(
        &self,
        queue: QueueId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, QueueEntry)>, StoreError>;
    /// The `refs` record: `None` when the message has no record (one reference, or not stored).
    fn refs_record(&self, id: MessageId) -> Result<Option<u32>, StoreError>;
    fn message_exists(&self, id: MessageId) -> Result<bool, StoreError>;
}

/// A primitive write, in the column-family vocabulary of the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    PutDefinition(Vec<u8>, Bytes),
    DeleteDefinition(Vec<u8>),
    PutBody(MessageId, Bytes),
    DeleteBody(MessageId),
    PutRefs(MessageId, u32),
    DeleteRefs(MessageId),
    PutEntry(QueueId, u64, QueueEntry),
    DeleteEntry(QueueId, u64),
    /// Positions `from..to`.
    DeleteEntryRange(QueueId, u64, u64),
    PutTransient(QueueId, u64, Bytes),
    DeleteTransient(QueueId, u64),
    DeleteTransientRange(QueueId, u64, u64),
}

/// The writes of one batch: `durable` must be applied atomically; `transient` is best effort
/// (RocksDB writes it without the WAL).
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) durable: Vec<Write>,
    pub(crate) transient: Vec<Write>,
}

#[derive(Debug)]
enum Body {
    /// In the store before this batch.
    Stored,
    /// Put by this batch: written at the end only if still referenced.
    Pending(Bytes),
    Absent,
}

#[derive(Debug)]
struct MessageState {
    refs: u32,
    /// The count as loaded, and whether it came from a `refs` record.
    loaded: Option<u32>,
    body: Body,
}

struct Planner<'r, R: Reader> {
    reader: &'r R,
    /// Index entries this batch has put (`Some`) or removed (`None`), overriding the reader.
    entries: BTreeMap<(QueueId, u64), Option<QueueEntry>>,
    /// Ranges removed by this batch, for positions not in `entries`.
    ranges: Vec<(QueueId, u64, u64)>,
    /// Ordered so that the writes (and hence both stores) are deterministic.
    messages: BTreeMap<MessageId, MessageState>,
    plan: Plan,
}

pub(crate) fn plan<R: Reader>(reader: &R, batch: Batch) -> Result<Plan, StoreError> {
    let mut planner = Planner {
        reader,
        entries: BTreeMap::new(),
        ranges: Vec::new(),
        messages: BTreeMap::new(),
        plan: Plan::default(),
    };
    for op in batch.ops {
        planner.apply(op)?;
    }
    planner.finish()
}

fn check_range(queue: QueueId, from: u64, to: u64) -> Result<(), StoreError> {
    if from > to {
        return Err(StoreError::InvalidRange { queue, from, to });
    }
    Ok(())
}

impl<R: Reader> Planner<'_, R> {
    fn apply(&mut self, op: Op) -> Result<(), StoreError> {
        match op {
            Op::PutDefinition { kind, key, value } => self
                .plan
                .durable
                .push(Write::PutDefinition(definition_key(kind, &key), value)),
            Op::DeleteDefinition { kind, key } => self
                .plan
                .durable
                .push(Write::DeleteDefinition(definition_key(kind, &key))),
            Op::PutMessage { id, body } => {
                let state = self.message(id, false)?;
                if !matches!(state.body, Body::Absent) {
                    return Err(StoreError::DuplicateMessage { id });
                }
                state.body = Body::Pending(body);
            }
            Op::Enqueue {
                queue,
                position,
                entry,
            } => {
                // Count the new reference before releasing the old one, so that re-putting an
                // entry with the same message never sees its count touch zero.
                self.add_ref(entry.message)?;
                if let Some(old) = self.entry(queue, position)? {
                    self.release(old.message)?;
                }
                self.entries.insert((queue, position), Some(entry.clone()));
                self.plan
                    .durable
                    .push(Write::PutEntry(queue, position, entry));
            }
            Op::Dequeue { queue, position } => {
                let old = self
                    .entry(queue, position)?
                    .ok_or(StoreError::UnknownEntry { queue, position })?;
                self.release(old.message)?;
                self.entries.insert((queue, position), None);
                self.plan.durable.push(Write::DeleteEntry(queue, position));
            }
            Op::DeleteQueueRange { queue, from, to } => self.delete_range(queue, from, to)?,
            Op::PutTransient {
                queue,
                position,
                bytes,
            } => self
                .plan
                .transient
                .push(Write::PutTransient(queue, position, bytes)),
            Op::DeleteTransient { queue, position } => self
                .plan
                .transient
                .push(Write::DeleteTransient(queue, position)),
            Op::DeleteTransientRange { queue, from, to } => {
                check_range(queue, from, to)?;
                if from < to {
                    self.plan
                        .transient
                        .push(Write::DeleteTransientRange(queue, from, to));
                }
            }
        }
        Ok(())
    }

    fn in_deleted_range(&self, queue: QueueId, position: u64) -> bool {
        self.ranges
            .iter()
            .any(|&(q, from, to)| q == queue && from <= position && position < to)
    }

    fn entry(&self, queue: QueueId, position: u64) -> Result<Option<QueueEntry>, StoreError> {
        if let Some(entry) = self.entries.get(&(queue, position)) {
            return Ok(entry.clone());
        }
        if self.in_deleted_range(queue, position) {
            return Ok(None);
        }
        self.reader.entry(queue, position)
    }

    fn delete_range(&mut self, queue: QueueId, from: u64, to: u64) -> Result<(), StoreError> {
        check_range(queue, from, to)?;
        if from == to {
            return Ok(());
        }
        // Entries this batch touched in the range: the batch's view wins over the reader's.
        let touched: Vec<(u64, Option<QueueEntry>)> = self
            .entries
            .range((queue, from)..(queue, to))
            .map(|(&(_, position), entry)| (position, entry.clone()))
            .collect();
        let mut released = Vec::new();
        for (position, entry) in &touched {
            self.entries.remove(&(queue, *position));
            if let Some(entry) = entry {
                released.push(entry.message);
            }
        }
        for (position, entry) in self.reader.entries(queue, from, to)? {
            let seen = touched.iter().any(|(p, _)| *p == position);
            if !seen && !self.in_deleted_range(queue, position) {
                released.push(entry.message);
            }
        }
        for id in released {
            self.release(id)?;
        }
        self.ranges.push((queue, from, to));
        self.plan
            .durable
            .push(Write::DeleteEntryRange(queue, from, to));
        Ok(())
    }

    /// The batch's view of a message, loaded on first use. `referenced` says an index entry
    /// points at it, so with no `refs` record it has exactly one reference and its body need not
    /// be looked up (an ack then costs no body read).
    fn message(
        &mut self,
        id: MessageId,
        referenced: bool,
    ) -> Result<&mut MessageState, StoreError> {
        if !self.messages.contains_key(&id) {
            let state = match self.reader.refs_record(id)? {
                Some(refs) => MessageState {
                    refs,
                    loaded: Some(refs),
                    body: Body::Stored,
                },
                None if referenced || self.reader.message_exists(id)? => MessageState {
                    refs: 1,
                    loaded: None,
                    body: Body::Stored,
                },
                None => MessageState {
                    refs: 0,
                    loaded: None,
                    body: Body::Absent,
                },
            };
            self.messages.insert(id, state);
        }
        // Inserted just above when missing; the fallback cannot happen but must not panic.
        self.messages
            .get_mut(&id)
            .ok_or(StoreError::UnknownMessage { id })
    }

    fn add_ref(&mut self, id: MessageId) -> Result<(), StoreError> {
        let state = self.message(id, false)?;
        if matches!(state.body, Body::Absent) {
            return Err(StoreError::UnknownMessage { id });
        }
        state.refs = state
            .refs
            .checked_add(1)
            .ok_or(StoreError::TooManyReferences { id })?;
        Ok(())
    }

    fn release(&mut self, id: MessageId) -> Result<(), StoreError> {
        // Saturating: an entry whose body is already gone (damage) can still be removed.
        let state = self.message(id, true)?;
        state.refs = state.refs.saturating_sub(1);
        Ok(())
    }

    fn finish(mut self) -> Result<Plan, StoreError> {
        for (id, state) in std::mem::take(&mut self.messages) {
            if state.refs == 0 {
                match state.body {
                    Body::Stored => self.plan.durable.push(Write::DeleteBody(id)),
                    // Put and released within this batch: never written.
                    Body::Pending(_) | Body::Absent => {}
                }
                if state.loaded.is_some() {
                    self.plan.durable.push(Write::DeleteRefs(id));
                }
                continue;
            }
            if let Body::Pending(body) = state.body {
                self.plan.durable.push(Write::PutBody(id, body));
            }
            // No record means one reference, so a message in one queue costs no refs write.
            match (state.refs, state.loaded) {
                (1, Some(_)) => self.plan.durable.push(Write::DeleteRefs(id)),
                (1, None) => {}
                (refs, loaded) if loaded != Some(refs) => {
                    self.plan.durable.push(Write::PutRefs(id, refs))
                }
                _ => {}
            }
        }
        Ok(self.plan)
    }
}
