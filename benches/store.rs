//! RocksStore costs: commits of 1 KiB persistent messages (batch of 1 and 100, with and without a
//! WAL sync) and queue scans. Each commit publishes a batch and acks the previous one, as a queue
//! whose consumer keeps up does (write once, delete soon), so the store stays small however long
//! criterion runs.
//!
//! Taken 2026-11-23 on 2 vCPU (x86_64), 24 GiB RAM, Linux, Rust 1.95, `cargo bench --bench store`
//! (release, RocksDB 10.4 via rocksdb 0.24, lz4 only), while a perf run and other builds shared
//! the machine (load average 4.5), so lower bounds. Per commit (publish N + ack the previous N):
//!
//! | durability | N = 1 | N = 100 |
//! |---|---|---|
//! | Sync (WAL fsync) | 4.3 ms (230 msg/s) | 5.1 ms (19.7k msg/s) |
//! | NoSync | 11.6 µs (86k msg/s) | 0.81 ms (124k msg/s) |
//!
//! A synced commit costs about one fsync whatever its size: that is why the broker commits
//! through `GroupCommitter`. Scanning 100 entries from a consumer position past 5,000 acked
//! entries: 19 µs; 1,000 entries: 195 µs (about 5M entries/s).

// A bench whose setup fails has nothing to measure: stopping loudly is the right response.
#![allow(clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use warren::store::{
    Batch, Durability, Op, QueueEntry, RocksOptions, RocksStore, Store, StoreError,
};

const QUEUE: u64 = 1;

/// Publishes `size` messages at `next..next + size` and acks the `size` before them.
fn publish_and_ack(
    store: &RocksStore,
    body: &Bytes,
    next: u64,
    size: u64,
    durability: Durability,
) -> Result<(), StoreError> {
    let mut batch = Batch::new();
    for id in next..next + size {
        batch.push(Op::PutMessage {
            id,
            body: body.clone(),
        });
        batch.push(Op::Enqueue {
            queue: QUEUE,
            position: id,
            entry: QueueEntry {
                message: id,
                meta: Bytes::new(),
            },
        });
    }
    if next >= size {
        for position in next - size..next {
            batch.push(Op::Dequeue {
                queue: QUEUE,
                position,
            });
        }
    }
    store.commit(batch, durability)
}

fn commit(c: &mut Criterion) {
    let body = Bytes::from(vec![0x5a; 1024]);
    let mut group = c.benchmark_group("store_commit_1KiB");
    for durability in [Durability::Sync, Durability::NoSync] {
        for size in [1u64, 100] {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
            let mut next = 0;
            group.throughput(Throughput::Elements(size));
            let name = format!("{durability:?}/batch");
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                b.iter(|| {
                    publish_and_ack(&store, &body, next, size, durability).expect("commit");
                    next += size;
                })
            });
        }
    }
    group.finish();
}

fn scan(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
    let body = Bytes::from(vec![0x5a; 1024]);
    // A 10k-message backlog whose first half has been acked one by one (tombstones at the head).
    for start in (0..10_000).step_by(1000) {
        let mut batch = Batch::new();
        for id in start..start + 1000 {
            batch.push(Op::PutMessage {
                id,
                body: body.clone(),
            });
            batch.push(Op::Enqueue {
                queue: QUEUE,
                position: id,
                entry: QueueEntry {
                    message: id,
                    meta: Bytes::new(),
                },
            });
        }
        store.commit(batch, Durability::NoSync).expect("fill");
    }
    let mut acks = Batch::new();
    for position in 0..5_000 {
        acks.push(Op::Dequeue {
            queue: QUEUE,
            position,
        });
    }
    store.commit(acks, Durability::NoSync).expect("ack");
    let mut group = c.benchmark_group("store_scan");
    for limit in [100usize, 1000] {
        group.throughput(Throughput::Elements(limit as u64));
        group.bench_with_input(BenchmarkId::new("from_head", limit), &limit, |b, &limit| {
            b.iter(|| store.scan_queue(QUEUE, 5_000, limit).expect("scan").len())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(20);
    targets = commit, scan
}
criterion_main!(benches);
