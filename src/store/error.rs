//! The store's typed error. Each variant carries the value or path at fault.

use std::fmt;
use std::path::PathBuf;

use super::{MessageId, QueueId};

/// Why a store operation failed. `Clone` because [`super::GroupCommitter`] hands the same error
/// to every submitter whose batch was merged into the failed commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Another Warren (or another store in this process) has this data dir open.
    Locked { path: PathBuf, detail: String },
    /// The data dir was written by a build with another on-disk format.
    FormatVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// A record could not be decoded: the data dir is damaged or was written by other software.
    Corrupt {
        column_family: &'static str,
        key: Vec<u8>,
        reason: String,
    },
    /// `Enqueue` named a message that is not stored (and not put earlier in the batch).
    UnknownMessage { id: MessageId },
    /// `PutMessage` reused the id of a message that is still stored.
    DuplicateMessage { id: MessageId },
    /// `Dequeue` named a position holding no entry.
    UnknownEntry { queue: QueueId, position: u64 },
    /// A range with `from > to`.
    InvalidRange { queue: QueueId, from: u64, to: u64 },
    /// A message would gain more references than a `u32` counts.
    TooManyReferences { id: MessageId },
    /// RocksDB reported an error (I/O, corruption it detected itself...).
    Rocks { path: PathBuf, detail: String },
    /// The group committer's thread is gone (the store was shut down).
    CommitterStopped,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked { path, detail } => write!(
                f,
                "data dir {} is in use by another Warren (or another store in this process); \
                 stop it or choose another data dir ({detail})",
                path.display()
            ),
            StoreError::FormatVersion {
                path,
                found,
                expected,
            } => write!(
                f,
                "data dir {} has store format version {found}, this build reads version \
                 {expected}; use a matching Warren build or another data dir",
                path.display()
            ),
            StoreError::Corrupt {
                column_family,
                key,
                reason,
            } => write!(
                f,
                "corrupt record in {column_family} at key {}: {reason}",
                hex(key)
            ),
            StoreError::UnknownMessage { id } => {
                write!(f, "enqueue of message {id}, which is not stored")
            }
            StoreError::DuplicateMessage { id } => {
                write!(f, "message id {id} is already stored; ids are never reused")
            }
            StoreError::UnknownEntry { queue, position } => {
                write!(f, "no entry at position {position} of queue {queue}")
            }
            StoreError::InvalidRange { queue, from, to } => {
                write!(f, "invalid range {from}..{to} for queue {queue}")
            }
            StoreError::TooManyReferences { id } => {
                write!(f, "message {id} has more than u32::MAX references")
            }
            StoreError::Rocks { path, detail } => {
                write!(f, "RocksDB error in {}: {detail}", path.display())
            }
            StoreError::CommitterStopped => write!(f, "the store's commit thread has stopped"),
        }
    }
}

impl std::error::Error for StoreError {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
