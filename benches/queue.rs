//! The queue's publish -> deliver -> ack path: the state machine alone, and the queue task
//! driven through its mailbox as a connection drives it (publishes, a delivery batch to the
//! consumer's connection, acks grouped per queue).
#![allow(clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::sync::{mpsc, oneshot};
use warren::broker::message::Message;
use warren::broker::queue::{self, Command, ConnEvent, ConsumerSpec, Enqueued, QueueState, Sink};
use warren::broker::queue_args::QueueArgs;
use warren::broker::registry::{QueueSpec, Registry};
use warren::protocol::{BasicProperties, FieldTable};

const BATCH: usize = 1_000;

fn message(size: usize) -> Arc<Message> {
    Arc::new(Message {
        exchange: "".into(),
        routing_key: "q".into(),
        properties: BasicProperties::default(),
        body: Bytes::from(vec![0u8; size]),
        ttl: None,
        deaths: None,
    })
}

fn consumer(prefetch: u32) -> ConsumerSpec {
    ConsumerSpec {
        id: 1,
        owner: 1,
        no_ack: false,
        prefetch,
        priority: 0,
        channel_limit: None,
        backlog: None,
    }
}

fn state_machine(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_state");
    group.throughput(Throughput::Elements(BATCH as u64));
    let msg = message(16);
    group.bench_function("publish_dispatch_ack", |b| {
        let mut q = QueueState::new();
        q.add_consumer(consumer(0));
        let mut out = Vec::with_capacity(BATCH);
        b.iter(|| {
            for _ in 0..BATCH {
                q.publish(Arc::clone(&msg));
            }
            out.clear();
            q.dispatch(BATCH, &mut out);
            for d in &out {
                q.ack(1, d.position);
            }
            out.len()
        })
    });
    group.finish();
}

fn task(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_task");
    group.throughput(Throughput::Elements(BATCH as u64));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    for prefetch in [0u32, 100] {
        let registry = Registry::new("/");
        let spec = QueueSpec {
            name: "q".into(),
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let q = rt.block_on(async {
            let q = queue::spawn(&spec, QueueArgs::default(), None, Arc::downgrade(&registry));
            let (reply, done) = oneshot::channel();
            let sink = Sink {
                events: events_tx,
                channel: 1,
                owner: 1,
                tag: "c".into(),
            };
            let consume = Command::Consume {
                spec: consumer(prefetch),
                sink,
                exclusive: false,
                reply,
            };
            let _ = q.tx.send(consume).await;
            let _ = done.await;
            q
        });
        let msg = message(16);
        group.bench_with_input(
            BenchmarkId::new("publish_deliver_ack", format!("prefetch_{prefetch}")),
            &prefetch,
            |b, _| {
                b.iter(|| {
                    rt.block_on(async {
                        let publisher = {
                            let q = Arc::clone(&q);
                            let msg = Arc::clone(&msg);
                            tokio::spawn(async move {
                                // As a connection sends a burst: a few batches per wake-up.
                                for _ in 0..BATCH / 50 {
                                    let batch = (0..50)
                                        .map(|_| Enqueued {
                                            position: q.take_position(),
                                            message: Arc::clone(&msg),
                                            stored: false,
                                            admitted: false,
                                        })
                                        .collect();
                                    let _ = q.tx.send(Command::Publish(batch)).await;
                                }
                            })
                        };
                        let mut received = 0;
                        while received < BATCH {
                            let Some(ConnEvent::Deliver(batch)) = events.recv().await else {
                                break;
                            };
                            received += batch.len();
                            let positions = batch
                                .iter()
                                .filter_map(|o| o.ack.as_ref().map(|(_, p)| *p))
                                .collect();
                            let _ =
                                q.tx.send(Command::Ack {
                                    owner: 1,
                                    positions,
                                })
                                .await;
                        }
                        let _ = publisher.await;
                        received
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, state_machine, task);
criterion_main!(benches);
