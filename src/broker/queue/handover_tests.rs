//! Who gets what, in which order, when a consumer's channel goes while another consumer waits:
//! the queue task driven through its mailbox, consumers being plain event channels.
//!
//! The rule (RabbitMQ's, checked against 3.10.8): a channel that closes (or whose connection
//! ends) without cancelling first has what it held requeued in place *before* the queue
//! dispatches again, in the same command, so the next consumer's first delivery is the oldest
//! requeued message, redelivered. A cancel, by contrast, hands a single-active-consumer queue
//! over at once (RabbitMQ 4.x): what the cancelled consumer's channel still holds comes back
//! only when that channel settles it or closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::task::Enqueued;
use super::{spawn, Command, ConnEvent, ConsumerSpec, QueueRef, Sink};
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
    let (events, rx) = mpsc::unbounded_channel();
    let spec = ConsumerSpec {
        id,
        owner: id,
        no_ack: false,
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
        })
        .collect();
    queue.tx.send(Command::Publish(batch)).await.unwrap();
}

/// The next `n` deliveries as (body, redelivered).
async fn next(rx: &mut mpsc::UnboundedReceiver<ConnEvent>, n: usize) -> Vec<(String, bool)> {
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
            got.push((body, o.redelivered));
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

#[tokio::test]
async fn a_cancel_hands_a_single_active_consumer_queue_over_at_once() {
    let registry = Registry::new("/");
    let queue = declare(&registry, "sac-cancel", true);
    let mut a = consume(&queue, 1, 1).await;
    let mut b = consume(&queue, 2, 10).await;
    publish(&queue, &["m1", "m2", "m3"]).await;
    assert_eq!(next(&mut a, 1).await, list(&[("m1", false)]));
    let (reply, done) = oneshot::channel();
    queue
        .tx
        .send(Command::Cancel { id: 1, reply })
        .await
        .unwrap();
    done.await.unwrap();
    assert_eq!(next(&mut b, 2).await, list(&[("m2", false), ("m3", false)]));
    queue.tx.send(Command::OwnerClosed(1)).await.unwrap();
    assert_eq!(next(&mut b, 1).await, list(&[("m1", true)]));
}
