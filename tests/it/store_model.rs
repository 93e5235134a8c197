//! Property test: random batches (valid or not) applied to both stores give the same results and
//! leave the same contents, and the reference counts match the queue entries.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use warren::store::{
    Batch, DefinitionKind, Durability, MemoryDisk, MemoryStore, MessageId, Op, QueueEntry,
    RocksOptions, RocksStore, Store,
};

const QUEUES: u64 = 3;
const POSITIONS: u64 = 8;
const MESSAGES: u64 = 10;
const KINDS: u8 = 2;

fn op() -> impl Strategy<Value = Op> {
    let queue = 0..QUEUES;
    let position = 0..POSITIONS;
    let message = 0..MESSAGES;
    let key = prop::sample::select(vec!["a", "b", "c"]);
    prop_oneof![
        1 => (0..KINDS, key.clone(), any::<u8>()).prop_map(|(kind, key, value)| Op::PutDefinition {
            kind: DefinitionKind(kind),
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from(vec![value]),
        }),
        1 => (0..KINDS, key).prop_map(|(kind, key)| Op::DeleteDefinition {
            kind: DefinitionKind(kind),
            key: Bytes::from_static(key.as_bytes()),
        }),
        3 => message.clone().prop_map(|id| Op::PutMessage {
            id,
            body: Bytes::from(format!("body {id}")),
        }),
        4 => (queue.clone(), position.clone(), message, any::<u8>()).prop_map(
            |(queue, position, message, meta)| Op::Enqueue {
                queue,
                position,
                entry: QueueEntry {
                    message,
                    meta: Bytes::from(vec![meta]),
                },
            }
        ),
        3 => (queue.clone(), position.clone())
            .prop_map(|(queue, position)| Op::Dequeue { queue, position }),
        1 => (queue.clone(), position.clone(), position.clone())
            .prop_map(|(queue, from, to)| Op::DeleteQueueRange { queue, from, to }),
        1 => (queue.clone(), position.clone(), any::<u8>()).prop_map(|(queue, position, b)| {
            Op::PutTransient {
                queue,
                position,
                bytes: Bytes::from(vec![b]),
            }
        }),
        1 => (queue.clone(), position.clone())
            .prop_map(|(queue, position)| Op::DeleteTransient { queue, position }),
        1 => (queue, position.clone(), position)
            .prop_map(|(queue, from, to)| Op::DeleteTransientRange { queue, from, to }),
    ]
}

/// A publish: a new body and its entries in one to three queues (fan-out shares the body).
fn publish() -> impl Strategy<Value = Vec<Op>> {
    (
        0..MESSAGES,
        prop::collection::btree_set(0..QUEUES, 1..=3),
        0..POSITIONS,
    )
        .prop_map(|(id, queues, position)| {
            let mut ops = vec![Op::PutMessage {
                id,
                body: Bytes::from(format!("body {id}")),
            }];
            ops.extend(queues.into_iter().map(|queue| Op::Enqueue {
                queue,
                position,
                entry: QueueEntry {
                    message: id,
                    meta: Bytes::new(),
                },
            }));
            ops
        })
}

/// A batch: a few publishes and single operations, in any order.
fn batch() -> impl Strategy<Value = Vec<Op>> {
    let unit = prop_oneof![
        3 => op().prop_map(|op| vec![op]),
        2 => publish(),
    ];
    prop::collection::vec(unit, 1..4).prop_map(|units| units.into_iter().flatten().collect())
}

/// Everything observable through the API, for the small domains the strategy draws from.
#[derive(Debug, PartialEq)]
struct Dump {
    definitions: Vec<Vec<(Bytes, Bytes)>>,
    queues: Vec<Vec<(u64, QueueEntry)>>,
    last_positions: Vec<Option<u64>>,
    messages: Vec<(Option<Bytes>, u32)>,
    max_message_id: Option<MessageId>,
    transient: Vec<Vec<(u64, Bytes)>>,
}

fn dump(store: &impl Store) -> Dump {
    Dump {
        definitions: (0..KINDS)
            .map(|kind| store.scan_definitions(DefinitionKind(kind)).unwrap())
            .collect(),
        queues: (0..QUEUES)
            .map(|queue| store.scan_queue(queue, 0, usize::MAX).unwrap())
            .collect(),
        last_positions: (0..QUEUES)
            .map(|queue| store.last_position(queue).unwrap())
            .collect(),
        messages: (0..MESSAGES)
            .map(|id| {
                (
                    store.get_message(id).unwrap(),
                    store.message_refs(id).unwrap(),
                )
            })
            .collect(),
        max_message_id: store.max_message_id().unwrap(),
        transient: (0..QUEUES)
            .map(|queue| store.scan_transient(queue, 0, usize::MAX).unwrap())
            .collect(),
    }
}

/// A body exists exactly while entries reference it, and its count is their number.
fn check_refcounts(dump: &Dump) {
    let mut counted: BTreeMap<MessageId, u32> = BTreeMap::new();
    for queue in &dump.queues {
        for (_, entry) in queue {
            *counted.entry(entry.message).or_default() += 1;
        }
    }
    for (id, (body, refs)) in dump.messages.iter().enumerate() {
        let expected = counted.get(&(id as u64)).copied().unwrap_or(0);
        assert_eq!(*refs, expected, "message {id}");
        assert_eq!(body.is_some(), expected > 0, "message {id}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn both_stores_agree(batches in prop::collection::vec(batch(), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        let disk = MemoryDisk::new();
        let memory = MemoryStore::open(&disk).unwrap();
        let rocks = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        for ops in batches {
            let batch = Batch::from(ops.clone());
            let in_memory = memory.commit(batch.clone(), Durability::NoSync);
            let in_rocks = rocks.commit(batch, Durability::NoSync);
            let failed = in_memory.is_err();
            prop_assert_eq!(in_memory, in_rocks);
            let dumped = dump(&memory);
            prop_assert_eq!(&dumped, &dump(&rocks));
            check_refcounts(&dumped);
            if failed {
                // The batch changed nothing (checked above); its valid operations alone still
                // move the state on, so that later batches meet a populated store.
                for op in ops {
                    let batch = Batch::from(vec![op]);
                    let in_memory = memory.commit(batch.clone(), Durability::NoSync);
                    prop_assert_eq!(in_memory, rocks.commit(batch, Durability::NoSync));
                }
                let dumped = dump(&memory);
                prop_assert_eq!(&dumped, &dump(&rocks));
                check_refcounts(&dumped);
            }
        }
        drop(memory);
        drop(rocks);
        let memory = MemoryStore::open(&disk).unwrap();
        let rocks = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        let dumped = dump(&memory);
        prop_assert!(dumped.transient.iter().all(Vec::is_empty));
        prop_assert_eq!(dumped, dump(&rocks));
    }
}
