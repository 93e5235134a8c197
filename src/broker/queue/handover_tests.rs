//! Who gets what, in which order, when a consumer's channel goes while another consumer waits:
//! the queue task driven through its mailbox, consumers being plain event channels.
//!
//! The rule (RabbitMQ's, checked against 3.10.8): a channel that closes (or whose connection
//! ends) without cancelling first has what it held requeued in place *before* the queue
//! dispatches again, in the same command, so the next consumer's first delivery is the oldest
//! requeued message, redelivered. A single-active-consumer queue keeps that order across a
//! cancel too: the next consumer takes over only once everything the cancelled one was sent is
//! settled (acked, rejected, requeued, or returned by its channel's close), and starts at the
//! head. RabbitMQ 3.10.8 gives the same order after cancel + close (it does not dispatch on a
//! cancel); RabbitMQ 4.x hands over at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::task::Enqueued;
use super::{spawn, Command, ConnEvent, ConsumerSpec, Position, QueueRef, Sink};
use crate::broker::message::Message;
use crate::broker::queue_args::{QueueArgs, QueueName};
use crate::broker::registry::{QueueSpec, Registry};
use crate::protocol::{BasicProperties, FieldTable};

fn declare(registry: &Arc<Registry>, name: &str, sac: bool) -> QueueRef {
    let mut arguments = FieldTable::new();
    if sac {
        arguments.insert("x-single-active-consumer", true);
    }
    let spec = QueueSpec {
        name: name.into(),
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments,
    };
    let args = QueueArgs::parse(&QueueName::new("/", name), &spec.arguments).unwrap();
    let weak = Arc::downgrade(registry);
    let (queue, _) = registry
        .declare_queue(&spec, 1, || Ok(spawn(&spec, args, None, weak)))
        .unwrap();
    queue
}

/// A consumer with id and channel (owner) `id`, and the receiving end of its connection.
async fn consume(queue: &QueueRef, id: u64, prefetch: u32) -> mpsc::UnboundedReceiver<ConnEvent> {
    consume_spec(queue, id, prefetch, false).await
}

async fn consume_spec(
    queue: &QueueRef,
    id: u64,
    prefetch: u32,
    no_ack: bool,
) -> mpsc::UnboundedReceiver<ConnEvent> {
    let (events, rx) = mpsc::unbounded_channel();
    let spec = ConsumerSpec {
        id,
        owner: id,
        no_ack,
        prefetch,
        priority: 0,
        channel_limit: None,
        backlog: None,
    };
    let sink = Sink {
        events,
        channel: 1,
        owner: id,
        tag: format!("c{id}").into(),
    };
    let (reply, done) = oneshot::channel();
    queue
        .tx
        .send(Command::Consume {
            spec,
            sink,
            exclusive: false,
            reply,
        })
        .await
        .unwrap();
    done.await.unwrap().unwrap();
    rx
}

/// Like [`consume`], with a no-ack consumer.
async fn consume_no_ack(queue: &QueueRef, id: u64) -> mpsc::UnboundedReceiver<ConnEvent> {
    consume_spec(queue, id, 0, true).await
}

async fn publish(queue: &QueueRef, bodies: &[&'static str]) {
    let batch = bodies
        .iter()
        .map(|body| Enqueued {
            position: queue.take_position(),
            message: Arc::new(Message {
                exchange: "".into(),
                routing_key: "q".into(),
                properties: BasicProperties::default(),
                body: Bytes::from_static(body.as_bytes()),
                ttl: None,
                deaths: None,
            }),
            stored: false,
            admitted: false,
        })
        .collect();
    queue.tx.send(Command::Publish(batch)).await.unwrap();
}

/// The next `n` deliveries as (body, redelivered).
async fn next(rx: &mut mpsc::UnboundedReceiver<ConnEvent>, n: usize) -> Vec<(String, bool)> {
    next_with_positions(rx, n)
        .await
        .into_iter()
        .map(|(body, redelivered, _)| (body, redelivered))
        .collect()
}

/// The next `n` deliveries as (body, redelivered, position to settle).
async fn next_with_positions(
    rx: &mut mpsc::UnboundedReceiver<ConnEvent>,
    n: usize,
) -> Vec<(String, bool, Position)> {
    let mut got = Vec::new();
    while got.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no delivery")
            .expect("queue gone");
        let ConnEvent::Deliver(batch) = event else {
            panic!("expected deliveries, got {event:?}");
        };
        for o in batch {
            let body = String::from_utf8_lossy(&o.message.body).into_owned();
            let position = o.ack.as_ref().map_or(Position::MAX, |(_, p)| *p);
            got.push((body, o.redelivered, position));
        }
    }
    got
}

fn list(items: &[(&str, bool)]) -> Vec<(String, bool)> {
    items.iter().map(|(b, r)| ((*b).to_owned(), *r)).collect()
}

/// Waits until the queue has handled everything sent before.
async fn settled(queue: &QueueRef) {
    let (tx, rx) = oneshot::channel();
    queue.tx.send(Command::Stats(tx)).await.unwrap();
    rx.await.unwrap();
}

#[tokio::test]
async fn single_active_consumer_closed_channel_requeues_before_the_next_one_gets_anything() {
    let registry = Registry::new("/");
    let queue = declare(&registry, "sac", true);
    let mut a = consume(&queue, 1, 1).await;
    let mut b = consume(&queue, 2, 10).await;
    publish(&queue, &["m1", "m2", "m3"]).await;
    assert_eq!(next(&mut a, 1).await, list(&[("m1", false)]));
    settled(&queue).await;
    assert!(b.try_recv().is_err(), "the waiting consumer got a message");
    queue.tx.send(Command::OwnerClosed(1)).await.unwrap();
    assert_eq!(
        next(&mut b, 3).await,
        list(&[("m1", true), ("m2", false), ("m3", false)])
    );
}

#[tokio::test]
async fn a_waiting_consumer_gets_a_closed_channels_messages_in_their_order() {
    let registry = Registry::new("/");
    let queue = declare(&registry, "plain", false);
    let mut a = consume(&queue, 1, 3).await;
    publish(&queue, &["m1", "m2", "m3"]).await;
    assert_eq!(next(&mut a, 3).await.len(), 3);
    let mut b = consume(&queue, 2, 10).await;
    queue.tx.send(Command::OwnerClosed(1)).await.unwrap();
    publish(&queue, &["m4"]).await;
    assert_eq!(
        next(&mut b, 4).await,
        list(&[("m1", true), ("m2", true), ("m3", true), ("m4", false)])
    );
}

/// Cancels consumer `id` and waits for the queue's answer.
async fn cancel(queue: &QueueRef, id: u64) {
    let (reply, done) = oneshot::channel();
    queue.tx.send(Command::Cancel { id, reply }).await.unwrap();
    done.await.unwrap();
}

/// The queue's consumer count, as `queue.declare-ok` reports it.
async fn consumer_count(queue: &QueueRef) -> u32 {
    let (tx, rx) = oneshot::channel();
    queue.tx.send(Command::Stats(tx)).await.unwrap();
    rx.await.unwrap().1
}

/// Nothing has reached `rx` once the queue handled everything sent before.
async fn assert_quiet(queue: &QueueRef, rx: &mut mpsc::UnboundedReceiver<ConnEvent>, who: &str) {
    settled(queue).await;
    assert!(rx.try_recv().is_err(), "{who} got something");
}

/// How the cancelled consumer's channel settles the message it holds.
#[derive(Debug, Clone, Copy)]
enum Settlement {
    Ack,
    Reject,
    Requeue,
    Close,
}

impl Settlement {
    fn command(self, owner: u64, position: Position) -> Command {
        let positions = vec![position];
        match self {
            Self::Ack => Command::Ack { owner, positions },
            Self::Reject => Command::Reject { owner, positions },
            Self::Requeue => Command::Requeue { owner, positions },
            Self::Close => Command::OwnerClosed(owner),
        }
    }
}

/// A (prefetch 1) holds m1 when it is cancelled; b waits. b gets nothing, a publish meanwhile
/// included, until A's channel settles m1, then b starts at the head: m1 again if it came back
/// (requeue, close), else m2.
#[tokio::test]
async fn after_a_cancel_the_next_consumer_waits_until_the_cancelled_ones_deliveries_settle() {
    use Settlement::*;
    for how in [Ack, Reject, Requeue, Close] {
        let registry = Registry::new("/");
        let queue = declare(&registry, &format!("sac-{how:?}"), true);
        let mut a = consume(&queue, 1, 1).await;
        let mut b = consume(&queue, 2, 10).await;
        publish(&queue, &["m1", "m2", "m3"]).await;
        let held = next_with_positions(&mut a, 1).await;
        assert_eq!((held[0].0.as_str(), held[0].1), ("m1", false));
        cancel(&queue, 1).await;
        publish(&queue, &["m4"]).await;
        assert_quiet(&queue, &mut b, "b, before m1 was settled").await;
        assert_eq!(consumer_count(&queue).await, 1, "{how:?}: b is waiting");
        queue.tx.send(how.command(1, held[0].2)).await.unwrap();
        let want: &[(&str, bool)] = match how {
            Ack | Reject => &[("m2", false), ("m3", false), ("m4", false)],
            Requeue | Close => &[("m1", true), ("m2", false), ("m3", false), ("m4", false)],
        };
        assert_eq!(next(&mut b, want.len()).await, list(want), "{how:?}");
        assert_quiet(&queue, &mut a, "a, after its cancel").await;
    }
}

/// Several held: the handover waits for the last of them, and the acks in between neither
/// hand over nor deliver.
#[tokio::test]
async fn the_handover_waits_for_the_last_held_delivery() {
    let registry = Registry::new("/");
    let queue = declare(&registry, "sac-three", true);
    let mut a = consume(&queue, 1, 3).await;
    let mut b = consume(&queue, 2, 10).await;
    publish(&queue, &["m1", "m2", "m3", "m4"]).await;
    let held = next_with_positions(&mut a, 3).await;
    cancel(&queue, 1).await;
    for (_, _, position) in [&held[0], &held[2]] {
        let positions = vec![*position];
        queue
            .tx
            .send(Command::Ack {
                owner: 1,
                positions,
            })
            .await
            .unwrap();
    }
    assert_quiet(&queue, &mut b, "b, while m2 was out").await;
    queue.tx.send(Command::OwnerClosed(1)).await.unwrap();
    assert_eq!(next(&mut b, 2).await, list(&[("m2", true), ("m4", false)]));
}

/// A consumer that comes while the handover waits queues behind the one already waiting, and
/// one that comes when nobody waits still waits for the cancelled consumer's deliveries.
#[tokio::test]
async fn consumers_arriving_during_a_handover_wait_their_turn() {
    let registry = Registry::new("/");
    let queue = declare(&registry, "sac-line", true);
    let mut a = consume(&queue, 1, 1).await;
    publish(&queue, &["m1", "m2"]).await;
    let held = next_with_positions(&mut a, 1).await;
    cancel(&queue, 1).await;
    assert_eq!(consumer_count(&queue).await, 0);
    let mut b = consume(&queue, 2, 10).await;
    let mut c = consume(&queue, 3, 10).await;
    assert_eq!(consumer_count(&queue).await, 2);
    assert_quiet(&queue, &mut b, "b, while m1 was out").await;
    let positions = vec![held[0].2];
    queue
        .tx
        .send(Command::Requeue {
            owner: 1,
            positions,
        })
        .await
        .unwrap();
    assert_eq!(next(&mut b, 2).await, list(&[("m1", true), ("m2", false)]));
    assert_quiet(&queue, &mut c, "c, behind b").await;
}

/// With nothing unacknowledged (all acked, or a no-ack consumer), a cancel hands over at once.
#[tokio::test]
async fn a_cancel_with_nothing_held_hands_over_at_once() {
    for no_ack_a in [false, true] {
        let registry = Registry::new("/");
        let queue = declare(&registry, "sac-free", true);
        let mut a = if no_ack_a {
            consume_no_ack(&queue, 1).await
        } else {
            consume(&queue, 1, 1).await
        };
        let mut b = consume(&queue, 2, 10).await;
        publish(&queue, &["m1"]).await;
        let held = next_with_positions(&mut a, 1).await;
        if !no_ack_a {
            let positions = vec![held[0].2];
            queue
                .tx
                .send(Command::Ack {
                    owner: 1,
                    positions,
                })
                .await
                .unwrap();
        }
        cancel(&queue, 1).await;
        publish(&queue, &["m2", "m3"]).await;
        assert_eq!(next(&mut b, 2).await, list(&[("m2", false), ("m3", false)]));
    }
}

/// A plain queue is not held up: after a cancel the other consumers keep getting messages
/// while the cancelled one's deliveries are out.
#[tokio::test]
async fn a_plain_queue_does_not_wait_for_a_cancelled_consumers_deliveries() {
    let registry = Registry::new("/");
    let queue = declare(&registry, "plain-cancel", false);
    let mut a = consume(&queue, 1, 1).await;
    publish(&queue, &["m1"]).await;
    assert_eq!(next(&mut a, 1).await, list(&[("m1", false)]));
    let mut b = consume(&queue, 2, 10).await;
    cancel(&queue, 1).await;
    publish(&queue, &["m2"]).await;
    assert_eq!(next(&mut b, 1).await, list(&[("m2", false)]));
}
