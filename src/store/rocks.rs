//! [`RocksStore`]: the durable [`Store`] on RocksDB (column families in the module doc).
//!
//! # Why these options
//!
//! A queue's records are written once and deleted soon: in the steady state a message is acked
//! before its memtable is flushed, so its put and its delete meet in memory and the flush drops
//! the put. What must be tuned is (1) the WAL and its sync, the cost every confirm pays, (2)
//! memory, which must stay bounded whatever the backlog, and (3) tombstones, which pile up at the
//! head of a queue and slow every scan that has to step over them.
//!
//! - **WAL on, synced per commit only when asked** ([`super::Durability`]); group commit
//!   ([`super::GroupCommitter`]) turns many confirms into one fsync. Point-in-time recovery
//!   replays the WAL up to the last complete write after a crash, with no manual step (a torn
//!   tail is what a crash leaves). `max_total_wal_size` forces a flush of column families that
//!   pin old WAL files (rarely written definitions would otherwise keep every WAL alive).
//! - **Transient pages skip the WAL** and their column family is dropped and recreated at open:
//!   dropping a column family removes its files without writing a tombstone per record.
//! - **Memtable budget**: one `db_write_buffer_size` caps all column families together;
//!   per-family buffers are sized so bodies get the most room (the longer a body stays in a
//!   memtable, the likelier its ack arrives before any flush, and it never reaches disk).
//! - **Block cache**: one small shared LRU cache, with index and filter blocks inside it so that
//!   memory stays bounded however many SST files a backlog makes. Queue scans do not fill it
//!   (`fill_cache(false)`): a backlog is read once, front to back, and would only evict the hot
//!   index and filter blocks.
//! - **Bloom filters** on `messages`, `refs` and `queue_index` (SSTs and memtables): commits look
//!   up keys that mostly do not exist (a new message id, the `refs` record of a single-queue
//!   message, a new position), and a filter answers those without I/O. Scans do not use them.
//! - **Tombstones**: RocksDB's guidance for queue workloads is range deletes and compaction
//!   triggered by deletions. A purge or queue delete is one range tombstone
//!   (`delete_range_cf`), not one per message. Scans start at the consumer's position with an
//!   iterator lower bound, so tombstones of acked messages below it are not stepped over, and
//!   the compact-on-deletion collector marks an SST file for compaction once a sliding window of
//!   its entries is mostly tombstones, so dead records do not linger at the head of a queue.
//!   (`SingleDelete` would cancel a put without leaving a tombstone, but the Rust binding does not
//!   expose it in a write batch, and requeue-in-place rewrites index entries, which it forbids.)
//! - **Compaction**: levelled with dynamic level sizes (RocksDB's default) and two background
//!   jobs for this machine's two cores; LZ4 only (cheap, and the only codec compiled in), for the
//!   bodies of a backlog that do reach SST files; small index and refs values are not compressed.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType,
    DBRecoveryMode, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

use super::keys::{
    decode_entry, decode_message_key, decode_position_key, decode_refs, encode_entry, encode_refs,
    message_key, position_key, queue_end_key, CF_DEFAULT, CF_DEFINITIONS, CF_MESSAGES,
    CF_QUEUE_INDEX, CF_REFS, CF_TRANSIENT, FORMAT_VERSION_KEY,
};
use super::plan::{plan, Reader, Write};
use super::{
    Batch, DefinitionKind, Durability, MessageId, QueueEntry, QueueId, Store, StoreError,
    FORMAT_VERSION,
};

/// Memory knobs of a [`RocksStore`]; the defaults suit a small broker.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// The shared block cache (data, index and filter blocks).
    pub block_cache_bytes: usize,
    /// All memtables of all column families together.
    pub memtable_budget_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            block_cache_bytes: 32 << 20,
            memtable_budget_bytes: 128 << 20,
        }
    }
}

/// The RocksDB [`Store`]. Commits are serialised by a mutex (planning reads, then writes);
/// reads run concurrently with them.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    commit_lock: Mutex<()>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn db_options(options: &RocksOptions) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    opts.set_max_total_wal_size(64 << 20);
    opts.set_db_write_buffer_size(options.memtable_budget_bytes);
    opts.set_max_background_jobs(2);
    // Spread SST writes out instead of one large fsync stall at the end of a flush.
    opts.set_bytes_per_sync(1 << 20);
    // RocksDB's own info log: enough to diagnose, not a disk leak.
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(8 << 20);
    opts
}

fn cf_options(name: &str, options: &RocksOptions, cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut opts = Options::default();
    let budget = options.memtable_budget_bytes;
    let (write_buffer, compression) = match name {
        CF_MESSAGES => (budget / 4, DBCompressionType::Lz4),
        CF_TRANSIENT => (budget / 8, DBCompressionType::Lz4),
        CF_QUEUE_INDEX => (budget / 8, DBCompressionType::None),
        _ => (budget / 32, DBCompressionType::None),
    };
    opts.set_write_buffer_size(write_buffer.max(1 << 20));
    opts.set_compression_type(compression);
    // Point lookups that usually miss: a new message id (PutMessage), a refs record for a
    // single-queue message, a new position (Enqueue checks for an entry to replace).
    if matches!(name, CF_MESSAGES | CF_REFS | CF_QUEUE_INDEX) {
        table.set_bloom_filter(10.0, false);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.02);
    }
    if matches!(name, CF_MESSAGES | CF_REFS | CF_QUEUE_INDEX | CF_TRANSIENT) {
        // Compact an SST once 512 of any 1024 consecutive entries (or half of all) are deletes.
        opts.add_compact_on_deletion_collector_factory(1024, 512, 0.5);
    }
    opts.set_block_based_table_factory(&table);
    opts
}

const FAMILIES: [&str; 5] = [
    CF_DEFINITIONS,
    CF_MESSAGES,
    CF_REFS,
    CF_QUEUE_INDEX,
    CF_TRANSIENT,
];

impl RocksStore {
    /// Opens (creating if needed) the store in `path`. Refuses a dir another store has open
    /// ([`StoreError::Locked`]) or one of another format ([`StoreError::FormatVersion`]), and
    /// clears transient pages.
    pub fn open(path: impl AsRef<Path>, options: &RocksOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let descriptors = FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, options, &cache)));
        let mut db = match DB::open_cf_descriptors(&db_options(options), &path, descriptors) {
            Ok(db) => db,
            Err(e) => return Err(foreign_version(&path).unwrap_or_else(|| open_error(&path, e))),
        };
        let default = db
            .cf_handle(CF_DEFAULT)
            .ok_or_else(|| missing_family(&path, CF_DEFAULT))?;
        match db
            .get_cf(default, FORMAT_VERSION_KEY)
            .map_err(|e| rocks_error(&path, e))?
        {
            Some(value) => {
                let found = decode_version(&value)?;
                if found != FORMAT_VERSION {
                    return Err(StoreError::FormatVersion {
                        path,
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
            }
            None => {
                let mut write = WriteOptions::default();
                write.set_sync(true);
                db.put_cf_opt(
                    default,
                    FORMAT_VERSION_KEY,
                    FORMAT_VERSION.to_be_bytes(),
                    &write,
                )
                .map_err(|e| rocks_error(&path, e))?;
            }
        }
        // Transient pages do not survive a restart: drop the whole family (no tombstones).
        db.drop_cf(CF_TRANSIENT)
            .map_err(|e| rocks_error(&path, e))?;
        db.create_cf(CF_TRANSIENT, &cf_options(CF_TRANSIENT, options, &cache))
            .map_err(|e| rocks_error(&path, e))?;
        Ok(Self {
            db,
            path,
            commit_lock: Mutex::new(()),
        })
    }

    /// The data dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| missing_family(&self.path, name))
    }

    fn err(&self) -> impl Fn(rocksdb::Error) -> StoreError + '_ {
        |e| rocks_error(&self.path, e)
    }

    /// Iterates `family` over `[lower, upper)` from the front (or the back), decoding each record
    /// with `decode` and stopping after `limit`.
    fn range<T>(
        &self,
        family: &'static str,
        lower: Vec<u8>,
        upper: Option<Vec<u8>>,
        reverse: bool,
        limit: usize,
        mut decode: impl FnMut(&[u8], &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let cf = self.cf(family)?;
        let mut read = ReadOptions::default();
        read.fill_cache(false);
        read.set_iterate_lower_bound(lower);
        if let Some(upper) = upper {
            read.set_iterate_upper_bound(upper);
        }
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::Start
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(cf, read, mode) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(self.err())?;
            out.push(decode(&key, &value)?);
        }
        Ok(out)
    }

    fn apply(&self, batch: &mut WriteBatch, write: &Write) -> Result<(), StoreError> {
        match write {
            Write::PutDefinition(key, value) => batch.put_cf(self.cf(CF_DEFINITIONS)?, key, value),
            Write::DeleteDefinition(key) => batch.delete_cf(self.cf(CF_DEFINITIONS)?, key),
            Write::PutBody(id, body) => batch.put_cf(self.cf(CF_MESSAGES)?, message_key(*id), body),
            Write::DeleteBody(id) => batch.delete_cf(self.cf(CF_MESSAGES)?, message_key(*id)),
            Write::PutRefs(id, refs) => {
                batch.put_cf(self.cf(CF_REFS)?, message_key(*id), encode_refs(*refs))
            }
            Write::DeleteRefs(id) => batch.delete_cf(self.cf(CF_REFS)?, message_key(*id)),
            Write::PutEntry(queue, position, entry) => batch.put_cf(
                self.cf(CF_QUEUE_INDEX)?,
                position_key(*queue, *position),
                encode_entry(entry),
            ),
            Write::DeleteEntry(queue, position) => {
                batch.delete_cf(self.cf(CF_QUEUE_INDEX)?, position_key(*queue, *position))
            }
            Write::DeleteEntryRange(queue, from, to) => batch.delete_range_cf(
                self.cf(CF_QUEUE_INDEX)?,
                position_key(*queue, *from),
                position_key(*queue, *to),
            ),
            Write::PutTransient(queue, position, bytes) => batch.put_cf(
                self.cf(CF_TRANSIENT)?,
                position_key(*queue, *position),
                bytes,
            ),
            Write::DeleteTransient(queue, position) => {
                batch.delete_cf(self.cf(CF_TRANSIENT)?, position_key(*queue, *position))
            }
            Write::DeleteTransientRange(queue, from, to) => batch.delete_range_cf(
                self.cf(CF_TRANSIENT)?,
                position_key(*queue, *from),
                position_key(*queue, *to),
            ),
        }
        Ok(())
    }
}

fn decode_version(value: &[u8]) -> Result<u32, StoreError> {
    <[u8; 4]>::try_from(value)
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            column_family: CF_DEFAULT,
            key: FORMAT_VERSION_KEY.to_vec(),
            reason: format!("format version must be 4 bytes, found {}", value.len()),
        })
}

/// When RocksDB cannot open a dir as this build describes it (a newer Warren may have added
/// column families), read its format version read-only: a version mismatch is the error that
/// tells the operator what to do. `None` when that is not the problem.
fn foreign_version(path: &Path) -> Option<StoreError> {
    let families = DB::list_cf(&Options::default(), path).ok()?;
    let db = DB::open_cf_for_read_only(&Options::default(), path, families, false).ok()?;
    let found = decode_version(&db.get(FORMAT_VERSION_KEY).ok()??).ok()?;
    (found != FORMAT_VERSION).then(|| StoreError::FormatVersion {
        path: path.to_path_buf(),
        found,
        expected: FORMAT_VERSION,
    })
}

fn rocks_error(path: &Path, e: rocksdb::Error) -> StoreError {
    StoreError::Rocks {
        path: path.to_path_buf(),
        detail: e.into_string(),
    }
}

/// RocksDB reports its `LOCK` file held (by another process, or by this one) as an I/O error
/// whose text names the lock; give that case its own, actionable error.
fn open_error(path: &Path, e: rocksdb::Error) -> StoreError {
    let detail = e.into_string();
    if detail.to_ascii_lowercase().contains("lock") {
        StoreError::Locked {
            path: path.to_path_buf(),
            detail,
        }
    } else {
        StoreError::Rocks {
            path: path.to_path_buf(),
            detail,
        }
    }
}

fn missing_family(path: &Path, name: &str) -> StoreError {
    StoreError::Rocks {
        path: path.to_path_buf(),
        detail: format!("column family {name} is missing"),
    }
}

impl Reader for RocksStore {
    fn entry(&self, queue: QueueId, position: u64) -> Result<Option<QueueEntry>, StoreError> {
        let key = position_key(queue, position);
        match self
            .db
            .get_pinned_cf(self.cf(CF_QUEUE_INDEX)?, key)
            .map_err(self.err())?
        {
            Some(value) => decode_entry(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn entries(
        &self,
        queue: QueueId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, QueueEntry)>, StoreError> {
        self.range(
            CF_QUEUE_INDEX,
            position_key(queue, from).to_vec(),
            Some(position_key(queue, to).to_vec()),
            false,
            usize::MAX,
            decode_index_record,
        )
    }

    fn refs_record(&self, id: MessageId) -> Result<Option<u32>, StoreError> {
        let key = message_key(id);
        let cf = self.cf(CF_REFS)?;
        // The bloom filters answer most lookups (single-queue messages have no record).
        if !self.db.key_may_exist_cf(cf, key) {
            return Ok(None);
        }
        match self.db.get_pinned_cf(cf, key).map_err(self.err())? {
            Some(value) => decode_refs(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn message_exists(&self, id: MessageId) -> Result<bool, StoreError> {
        let key = message_key(id);
        let cf = self.cf(CF_MESSAGES)?;
        if !self.db.key_may_exist_cf(cf, key) {
            return Ok(false);
        }
        Ok(self
            .db
            .get_pinned_cf(cf, key)
            .map_err(self.err())?
            .is_some())
    }
}

fn decode_index_record(key: &[u8], value: &[u8]) -> Result<(u64, QueueEntry), StoreError> {
    let (_, position) = decode_position_key(CF_QUEUE_INDEX, key)?;
    Ok((position, decode_entry(key, value)?))
}

impl Store for RocksStore {
    fn commit(&self, batch: Batch, durability: Durability) -> Result<(), StoreError> {
        // Planning reads what the write then changes: one commit at a time.
        let _guard = self
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let plan = plan(self, batch)?;
        if !plan.transient.is_empty() {
            let mut batch = WriteBatch::default();
            for write in &plan.transient {
                self.apply(&mut batch, write)?;
            }
            // Discarded at open anyway, so the WAL would be pure cost. Written before the
            // durable part: if that then fails, a retry re-applies these idempotent writes.
            let mut options = WriteOptions::default();
            options.disable_wal(true);
            self.db.write_opt(batch, &options).map_err(self.err())?;
        }
        if !plan.durable.is_empty() {
            let mut batch = WriteBatch::default();
            for write in &plan.durable {
                self.apply(&mut batch, write)?;
            }
            let mut options = WriteOptions::default();
            options.set_sync(durability == Durability::Sync);
            self.db.write_opt(batch, &options).map_err(self.err())?;
        }
        Ok(())
    }

    fn scan_definitions(&self, kind: DefinitionKind) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        // Kind 255 is the last namespace: no upper bound needed.
        let upper = kind.0.checked_add(1).map(|next| vec![next]);
        self.range(
            CF_DEFINITIONS,
            vec![kind.0],
            upper,
            false,
            usize::MAX,
            |key, value| {
                Ok((
                    Bytes::copy_from_slice(key.get(1..).unwrap_or_default()),
                    Bytes::copy_from_slice(value),
                ))
            },
        )
    }

    fn scan_queue(
        &self,
        queue: QueueId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueueEntry)>, StoreError> {
        self.range(
            CF_QUEUE_INDEX,
            position_key(queue, from).to_vec(),
            Some(queue_end_key(queue)),
            false,
            limit,
            decode_index_record,
        )
    }

    fn last_position(&self, queue: QueueId) -> Result<Option<u64>, StoreError> {
        let last = self.range(
            CF_QUEUE_INDEX,
            position_key(queue, 0).to_vec(),
            Some(queue_end_key(queue)),
            true,
            1,
            |key, _| decode_position_key(CF_QUEUE_INDEX, key),
        )?;
        Ok(last.first().map(|&(_, position)| position))
    }

    fn get_message(&self, id: MessageId) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_MESSAGES)?, message_key(id))
            .map_err(self.err())?
            .map(|value| Bytes::copy_from_slice(&value)))
    }

    fn message_refs(&self, id: MessageId) -> Result<u32, StoreError> {
        match self.refs_record(id)? {
            Some(refs) => Ok(refs),
            None => Ok(u32::from(self.message_exists(id)?)),
        }
    }

    fn max_message_id(&self) -> Result<Option<MessageId>, StoreError> {
        let cf = self.cf(CF_MESSAGES)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => {
                let (key, _) = item.map_err(self.err())?;
                decode_message_key(&key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn scan_transient(
        &self,
        queue: QueueId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.range(
            CF_TRANSIENT,
            position_key(queue, from).to_vec(),
            Some(queue_end_key(queue)),
            false,
            limit,
            |key, value| {
                let (_, position) = decode_position_key(CF_TRANSIENT, key)?;
                Ok((position, Bytes::copy_from_slice(value)))
            },
        )
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(self.err())
    }
}
