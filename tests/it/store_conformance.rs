//! One test body per behaviour, run against both stores (`memory::*` and `rocks::*`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warren::store::{
    Batch, DefinitionKind, Durability, GroupCommitter, MemoryDisk, MemoryStore, MessageId, Op,
    QueueEntry, QueueId, RocksOptions, RocksStore, Store, StoreError, FORMAT_VERSION,
};

/// A place a store lives across "restarts": a temp dir, or a [`MemoryDisk`].
trait Fixture {
    type S: Store + std::fmt::Debug + 'static;
    fn open(&self) -> Result<Self::S, StoreError>;
    /// Rewrites the stored format version (the store must be closed).
    fn set_format_version(&self, version: u32);
}

struct Memory(MemoryDisk);

impl Fixture for Memory {
    type S = MemoryStore;
    fn open(&self) -> Result<MemoryStore, StoreError> {
        MemoryStore::open(&self.0)
    }
    fn set_format_version(&self, version: u32) {
        self.0.set_format_version(version);
    }
}

struct Rocks(tempfile::TempDir);

impl Fixture for Rocks {
    type S = RocksStore;
    fn open(&self) -> Result<RocksStore, StoreError> {
        RocksStore::open(self.0.path(), &RocksOptions::default())
    }
    fn set_format_version(&self, version: u32) {
        // Behind the store's back, as an older or newer Warren would have left the dir.
        let path = self.0.path();
        let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, families).unwrap();
        db.put(b"format_version", version.to_be_bytes()).unwrap();
    }
}

fn memory() -> Memory {
    Memory(MemoryDisk::new())
}

fn rocks() -> Rocks {
    Rocks(tempfile::tempdir().unwrap())
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put_message(id: MessageId) -> Op {
    Op::PutMessage {
        id,
        body: Bytes::from(format!("body {id}")),
    }
}

fn enqueue(queue: QueueId, position: u64, message: MessageId) -> Op {
    enqueue_meta(queue, position, message, "")
}

fn enqueue_meta(queue: QueueId, position: u64, message: MessageId, meta: &str) -> Op {
    Op::Enqueue {
        queue,
        position,
        entry: QueueEntry {
            message,
            meta: bytes(meta),
        },
    }
}

fn commit(store: &impl Store, ops: Vec<Op>) {
    store.commit(Batch::from(ops), Durability::Sync).unwrap();
}

/// `(position, message id)` of every entry of `queue`.
fn entries(store: &impl Store, queue: QueueId) -> Vec<(u64, MessageId)> {
    store
        .scan_queue(queue, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(position, entry)| (position, entry.message))
        .collect()
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $name() { super::$name(&super::memory()) })*
        }
        mod rocks {
            $(#[test] fn $name() { super::$name(&super::rocks()) })*
        }
    };
}

conformance!(
    definitions_put_delete_scan,
    queue_scans_in_position_order,
    requeue_in_place_updates_meta,
    range_delete_releases_bodies,
    body_stored_once_for_many_queues,
    failed_batch_changes_nothing,
    transient_pages,
    reopen_keeps_durable_data_and_clears_transient,
    format_version_mismatch_refused,
    second_open_refused,
    group_commit_merges_batches,
    group_commit_isolates_a_bad_batch,
);

fn definitions_put_delete_scan(fixture: &impl Fixture) {
    let store = fixture.open().unwrap();
    let (vhosts, queues, last) = (DefinitionKind(1), DefinitionKind(2), DefinitionKind(255));
    let put = |kind, key: &str, value: &str| Op::PutDefinition {
        kind,
        key: bytes(key),
        value: bytes(value),
    };
    commit(
        &store,
        vec![
            put(vhosts, "b", "vhost b"),
            put(vhosts, "a", "vhost a"),
            put(queues, "a", "queue a"),
            put(last, "z", "last kind"),
        ],
    );
    assert_eq!(
        store.scan_definitions(vhosts).unwrap(),
        vec![
            (bytes("a"), bytes("vhost a")),
            (bytes("b"), bytes("vhost b"))
        ]
    );
    assert_eq!(
        store.scan_definitions(last).unwrap(),
        vec![(bytes("z"), bytes("last kind"))]
    );
    commit(
        &store,
        vec![
            Op::DeleteDefinition {
                kind: vhosts,
                key: bytes("a"),
            },
            Op::DeleteDefinition {
                kind: vhosts,
                key: bytes("never existed"),
            },
            put(vhosts, "b", "vhost b v2"),
        ],
    );
    assert_eq!(
        store.scan_definitions(vhosts).unwrap(),
        vec![(bytes("b"), bytes("vhost b v2"))]
    );
    assert_eq!(
        store.scan_definitions(queues).unwrap(),
        vec![(bytes("a"), bytes("queue a"))]
    );
    assert!(store
        .scan_definitions(DefinitionKind(3))
        .unwrap()
        .is_empty());
}

fn queue_scans_in_position_order(fixture: &impl Fixture) {
    let store = fixture.open().unwrap();
    let mut ops = Vec::new();
    // Inserted out of order, and across the 255/256 byte boundary.
    for position in (0..600u64).rev() {
        ops.push(put_message(position));
        ops.push(enqueue(1, position, position));
    }
    ops.push(put_message(10_000));
    ops.push(enqueue(0, 5, 10_000));
    ops.push(enqueue(2, 0, 10_000));
    ops.push(enqueue(u64::MAX, u64::MAX - 1, 10_000));
    commit(&store, ops);

    let all = entries(&store, 1);
    assert_eq!(all.len(), 600);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, &(p, m))| p == i as u64 && m == p));
    let window = store.scan_queue(1, 250, 10).unwrap();
    let positions: Vec<u64> = window.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (250..260).collect::<Vec<_>>());
    assert!(store.scan_queue(1, 600, 10).unwrap().is_empty());
    assert_eq!(store.last_position(1).unwrap(), Some(599));
    assert_eq!(store.last_position(3).unwrap(), None);
    assert_eq!(entries(&store, 0), vec![(5, 10_000)]);
    assert_eq!(entries(&store, 2), vec![(0, 10_000)]);
    assert_eq!(entries(&store, u64::MAX), vec![(u64::MAX - 1, 10_000)]);
    assert_eq!(store.last_position(u64::MAX).unwrap(), Some(u64::MAX - 1));
    assert_eq!(store.max_message_id().unwrap(), Some(10_000));
}

fn requeue_in_place_updates_meta(fixture: &impl Fixture) {
    let store = fixture.open().unwrap();
    commit(&store, vec![put_message(1), enqueue_meta(1, 0, 1, "fresh")]);
    commit(&store, vec![enqueue_meta(1, 0, 1, "redelivered")]);
    let window = store.scan_queue(1, 0, 10).unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].1.meta, bytes("redelivered"));
    assert_eq!(store.message_refs(1).unwrap(), 1);
    // Replacing the entry with another message releases the first.
    commit(&store, vec![put_message(2), enqueue(1, 0, 2)]);
    assert_eq!(store.get_message(1).unwrap(), None);
    assert_eq!(store.message_refs(2).unwrap(), 1);
}

fn range_delete_releases_bodies(fixture: &impl Fixture) {
    let store = fixture.open().unwrap();
    let mut ops = Vec::new();
    for position in 0..10 {
        ops.push(put_message(position));
        ops.push(enqueue(1, position, position));
    }
    // Messages 4 and 5 are also in queue 2.
    ops.push(enqueue(2, 0, 4));
    ops.push(enqueue(2, 1, 5));
    commit(&store, ops);
    assert_eq!(store.message_refs(4).unwrap(), 2);

    commit(
        &store,
        vec![Op::DeleteQueueRange {
            queue: 1,
            from: 2,
            to: 8,
        }],
    );
    assert_eq!(entries(&store, 1), vec![(0, 0), (1, 1), (8, 8), (9, 9)]);
    for gone in [2, 3, 6, 7] {
        assert_eq!(store.get_message(gone).unwrap(), None, "message {gone}");
    }
    assert_eq!(store.message_refs(4).unwrap(), 1);
    assert_eq!(store.get_message(4).unwrap(), Some(bytes("body 4")));

    let err = store
        .commit(
            Batch::from(vec![Op::DeleteQueueRange {
                queue: 1,
                from: 5,
                to: 4,
            }]),
            Durability::Sync,
        )
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::InvalidRange {
            queue: 1,
            from: 5,
            to: 4
        }
    );

    // Queue delete: the whole range, then re-enqueue inside it in the same batch.
    commit(
        &store,
        vec![
            Op::DeleteQueueRange {
                queue: 2,
                from: 0,
                to: u64::MAX,
            },
            enqueue(2, 7, 0),
        ],
    );
    assert_eq!(entries(&store, 2), vec![(7, 0)]);
    assert_eq!(store.get_message(4).unwrap(), None);
    assert_eq!(store.message_refs(0).unwrap(), 2);
}

fn body_stored_once_for_many_queues(fixture: &impl Fixture) {
    let store = fixture.open().unwrap();
    commit(
        &store,
        vec![
            put_message(7),
            enqueue(1, 0, 7),
            enqueue(2, 0, 7),
            enqueue(3, 0, 7),
        ],
    );
    assert_eq!(store.message_refs(7).unwrap(), 3);
    assert_eq!(store.get_message(7).unwrap(), Some(bytes("body 7")));
    commit(
        &store,
        vec![Op::Dequeue {
            queue: 1,
            position: 0,
        }],
    );
    assert_eq!(store.message_refs(7).unwrap(), 2);
    commit(
        &store,
        vec![Op::Dequeue {
            queue: 2,
            position: 0,
        }],
    );
    assert_eq!(store.message_refs(7).unwrap(), 1);
    assert_eq!(store.get_message(7).unwrap(), Some(bytes("body 7")));
    commit(
        &store,
        vec![Op::Dequeue {
            queue: 3,
            position: 0,
        }],
    );
    assert_eq!(store.message_refs(7).unwrap(), 0);
    assert_eq!(store.get_message(7).unwrap(), None);

    // Published and acked within one (group) commit: the body is never written.
    commit(
        &store,
        vec![
            put_message(8),
            enqueue(1, 1, 8),
            Op::Dequeue {
                queue: 1,
                position: 1,
            },
        ],
    );
    assert_eq!(store.get_message(8).unwrap(), None);
    assert!(entries(&store, 1).is_empty());
    // A body no queue references is not kept.
    commit(&store, vec![put_message(9)]);
    assert_eq!(store.get_message(9).unwrap(), None);
}

fn failed_batch_changes_nothing(fixture: &impl Fixture) {
    let store = fixture.open().unwrap();
    commit(&store, vec![put_message(1), enqueue(1, 0, 1)]);
    let attempts = [
        (
            vec![put_message(2), enqueue(1, 1, 2), enqueue(1, 2, 99)],
            StoreError::UnknownMessage { id: 99 },
        ),
        (
            vec![put_message(2), enqueue(1, 1, 2), put_message(1)],
            StoreError::DuplicateMessage { id: 1 },
        ),
        (
            vec![
                Op::Dequeue {
                    queue: 1,
                    position: 0,
                },
                Op::Dequeue {
                    queue: 1,
                    position: 5,
                },
            ],
            StoreError::UnknownEntry {
                queue: 1,
                position: 5,
            },
        ),
    ];
    for (ops, expected) in attempts {
        let err = store
            .commit(Batch::from(ops), Durability::Sync)
            .unwrap_err();
        assert_eq!(err, expected);
        assert_eq!(entries(&store, 1), vec![(0, 1)]);
        assert_eq!(store.get_message(2).unwrap(), None);
        assert_eq!(store.message_refs(1).unwrap(), 1);
    }
}

fn transient_pages(fixture: &impl Fixture) {
    let store = fixture.open().unwrap();
    let page = |position| Op::PutTransient {
        queue: 4,
        position,
        bytes: Bytes::from(format!("page {position}")),
    };
    commit(&store, (0..300).map(page).collect());
    let window = store.scan_transient(4, 254, 3).unwrap();
    assert_eq!(
        window,
        vec![
            (254, bytes("page 254")),
            (255, bytes("page 255")),
            (256, bytes("page 256"))
        ]
    );
    commit(
        &store,
        vec![
            Op::DeleteTransient {
                queue: 4,
                position: 0,
            },
            Op::DeleteTransientRange {
                queue: 4,
                from: 1,
                to: 298,
            },
        ],
    );
    let left: Vec<u64> = store
        .scan_transient(4, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(left, vec![298, 299]);
}

fn reopen_keeps_durable_data_and_clears_transient(fixture: &impl Fixture) {
    let store = fixture.open().unwrap();
    commit(
        &store,
        vec![
            Op::PutDefinition {
                kind: DefinitionKind(3),
                key: bytes("orders"),
                value: bytes("durable queue 1"),
            },
            put_message(41),
            put_message(42),
            enqueue(1, 0, 41),
            enqueue(1, 1, 42),
            enqueue(2, 0, 42),
            Op::PutTransient {
                queue: 1,
                position: 2,
                bytes: bytes("transient"),
            },
        ],
    );
    store
        .commit(
            Batch::from(vec![put_message(43), enqueue(1, 2, 43)]),
            Durability::NoSync,
        )
        .unwrap();
    store.flush().unwrap();
    drop(store);

    let store = fixture.open().unwrap();
    assert_eq!(
        store.scan_definitions(DefinitionKind(3)).unwrap(),
        vec![(bytes("orders"), bytes("durable queue 1"))]
    );
    assert_eq!(entries(&store, 1), vec![(0, 41), (1, 42), (2, 43)]);
    assert_eq!(entries(&store, 2), vec![(0, 42)]);
    assert_eq!(store.message_refs(42).unwrap(), 2);
    assert_eq!(store.get_message(41).unwrap(), Some(bytes("body 41")));
    assert_eq!(store.max_message_id().unwrap(), Some(43));
    assert!(store.scan_transient(1, 0, usize::MAX).unwrap().is_empty());
    // Reference counts carry on correctly after the restart.
    commit(
        &store,
        vec![
            Op::Dequeue {
                queue: 1,
                position: 1,
            },
            Op::Dequeue {
                queue: 2,
                position: 0,
            },
        ],
    );
    assert_eq!(store.get_message(42).unwrap(), None);
}

fn format_version_mismatch_refused(fixture: &impl Fixture) {
    drop(fixture.open().unwrap());
    fixture.set_format_version(FORMAT_VERSION + 1);
    let err = fixture.open().unwrap_err();
    assert!(
        matches!(err, StoreError::FormatVersion { found, expected, .. }
            if found == FORMAT_VERSION + 1 && expected == FORMAT_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("format version"), "{err}");
    fixture.set_format_version(FORMAT_VERSION);
    drop(fixture.open().unwrap());
}

fn second_open_refused(fixture: &impl Fixture) {
    let store = fixture.open().unwrap();
    let err = fixture.open().unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another Warren"),
        "{err}"
    );
    drop(store);
    drop(fixture.open().unwrap());
}

/// Makes every commit take a while, as an fsync does, so that batches pile up behind it.
struct SlowCommits<S>(S);

impl<S: Store> Store for SlowCommits<S> {
    fn commit(&self, batch: Batch, durability: Durability) -> Result<(), StoreError> {
        std::thread::sleep(Duration::from_millis(2));
        self.0.commit(batch, durability)
    }
    fn scan_definitions(&self, kind: DefinitionKind) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.0.scan_definitions(kind)
    }
    fn scan_queue(
        &self,
        queue: QueueId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueueEntry)>, StoreError> {
        self.0.scan_queue(queue, from, limit)
    }
    fn last_position(&self, queue: QueueId) -> Result<Option<u64>, StoreError> {
        self.0.last_position(queue)
    }
    fn get_message(&self, id: MessageId) -> Result<Option<Bytes>, StoreError> {
        self.0.get_message(id)
    }
    fn message_refs(&self, id: MessageId) -> Result<u32, StoreError> {
        self.0.message_refs(id)
    }
    fn max_message_id(&self) -> Result<Option<MessageId>, StoreError> {
        self.0.max_message_id()
    }
    fn scan_transient(
        &self,
        queue: QueueId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.0.scan_transient(queue, from, limit)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.0.flush()
    }
}

fn group_commit_merges_batches(fixture: &impl Fixture) {
    const SUBMITTERS: u64 = 4;
    const PER_SUBMITTER: u64 = 50;
    let store = Arc::new(SlowCommits(fixture.open().unwrap()));
    let committer = Arc::new(GroupCommitter::spawn(Arc::clone(&store), 10_000).unwrap());
    let threads: Vec<_> = (0..SUBMITTERS)
        .map(|queue| {
            let committer = Arc::clone(&committer);
            std::thread::spawn(move || {
                let tickets: Vec<_> = (0..PER_SUBMITTER)
                    .map(|position| {
                        let id = queue * 1000 + position;
                        let batch =
                            Batch::from(vec![put_message(id), enqueue(queue, position, id)]);
                        committer.submit(batch, Durability::Sync)
                    })
                    .collect();
                for ticket in tickets {
                    ticket.wait().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = committer.stats();
    assert_eq!(stats.batches, SUBMITTERS * PER_SUBMITTER);
    assert!(
        stats.syncs < stats.batches / 4,
        "group commit should merge batches: {stats:?}"
    );
    for queue in 0..SUBMITTERS {
        let expected: Vec<_> = (0..PER_SUBMITTER)
            .map(|position| (position, queue * 1000 + position))
            .collect();
        assert_eq!(entries(&*store, queue), expected);
    }
}

fn group_commit_isolates_a_bad_batch(fixture: &impl Fixture) {
    let store = Arc::new(SlowCommits(fixture.open().unwrap()));
    let committer = GroupCommitter::spawn(Arc::clone(&store), 10_000).unwrap();
    // The first commit is slow, so the next three arrive together and are merged.
    let first = committer.submit(
        Batch::from(vec![put_message(1), enqueue(1, 0, 1)]),
        Durability::Sync,
    );
    let good = committer.submit(
        Batch::from(vec![put_message(2), enqueue(1, 1, 2)]),
        Durability::Sync,
    );
    let bad = committer.submit(
        Batch::from(vec![Op::Dequeue {
            queue: 9,
            position: 9,
        }]),
        Durability::Sync,
    );
    let also_good = committer.submit(Batch::from(vec![enqueue(2, 0, 1)]), Durability::NoSync);
    first.wait().unwrap();
    good.wait().unwrap();
    assert_eq!(
        bad.wait().unwrap_err(),
        StoreError::UnknownEntry {
            queue: 9,
            position: 9
        }
    );
    also_good.wait().unwrap();
    assert_eq!(entries(&*store, 1), vec![(0, 1), (1, 2)]);
    assert_eq!(store.message_refs(1).unwrap(), 2);
}

#[tokio::test]
async fn group_commit_ticket_is_a_future() {
    let store = Arc::new(MemoryStore::new());
    let committer = GroupCommitter::spawn(Arc::clone(&store), 100).unwrap();
    committer
        .submit(
            Batch::from(vec![put_message(1), enqueue(1, 0, 1)]),
            Durability::Sync,
        )
        .await
        .unwrap();
    assert_eq!(entries(&*store, 1), vec![(0, 1)]);
    drop(committer);
}

/// Damaged records (here written behind the store's back) are errors naming the record, never a
/// panic. Only RocksDB can hold undecodable bytes: the memory store keeps typed values.
#[test]
fn rocks_corrupt_records_are_errors() {
    let fixture = rocks();
    drop(fixture.open().unwrap());
    {
        let path = fixture.0.path();
        let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, families).unwrap();
        let index = db.cf_handle("queue_index").unwrap();
        let mut key = 1u64.to_be_bytes().to_vec();
        key.extend_from_slice(&0u64.to_be_bytes());
        db.put_cf(index, &key, b"short").unwrap();
        db.put_cf(db.cf_handle("refs").unwrap(), 5u64.to_be_bytes(), b"12345")
            .unwrap();
    }
    let store = fixture.open().unwrap();
    let err = store.scan_queue(1, 0, 10).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { column_family: "queue_index", key, .. } if key.len() == 16),
        "{err:?}"
    );
    assert!(err.to_string().contains("queue_index"), "{err}");
    let err = store
        .commit(
            Batch::from(vec![Op::Dequeue {
                queue: 1,
                position: 0,
            }]),
            Durability::Sync,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(matches!(
        store.message_refs(5),
        Err(StoreError::Corrupt {
            column_family: "refs",
            ..
        })
    ));
}

/// A newer Warren may add column families this build cannot open: the version check still
/// speaks first, instead of RocksDB's "column families not opened".
#[test]
fn rocks_newer_format_with_new_column_families_refused() {
    let fixture = rocks();
    drop(fixture.open().unwrap());
    {
        let path = fixture.0.path();
        let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
        let mut db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, families).unwrap();
        db.create_cf("from_the_future", &rocksdb::Options::default())
            .unwrap();
        db.put(b"format_version", (FORMAT_VERSION + 1).to_be_bytes())
            .unwrap();
    }
    let err = fixture.open().unwrap_err();
    assert!(
        matches!(err, StoreError::FormatVersion { found, .. } if found == FORMAT_VERSION + 1),
        "{err:?}"
    );
}
