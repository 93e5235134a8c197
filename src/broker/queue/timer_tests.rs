//! The queue task's timers on tokio's paused clock: minutes of virtual time pass instantly and
//! exactly, so expiry deadlines are checked to the second without sleeping or flaking.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::task::Enqueued;
use super::{spawn, Command, QueueRef};
use crate::broker::message::Message;
use crate::broker::queue_args::{QueueArgs, QueueName};
use crate::broker::registry::{QueueSpec, Registry};
use crate::protocol::{BasicProperties, FieldTable, FieldValue};

fn declare(registry: &Arc<Registry>, name: &str, arguments: FieldTable) -> QueueRef {
    let spec = QueueSpec {
        name: name.into(),
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments,
    };
    let args = QueueArgs::parse(&QueueName::new("/", name), &spec.arguments).unwrap();
    let weak = Arc::downgrade(registry);
    let (queue, created) = registry
        .declare_queue(&spec, 1, || Ok(spawn(&spec, args, None, weak)))
        .unwrap();
    assert!(created);
    queue
}

async fn ready_count(queue: &QueueRef) -> u32 {
    let (tx, rx) = oneshot::channel();
    queue.tx.send(Command::Stats(tx)).await.unwrap();
    rx.await.unwrap().0
}

#[tokio::test(start_paused = true)]
async fn an_unused_queue_expires_after_x_expires() {
    let registry = Registry::new("/");
    let mut arguments = FieldTable::new();
    arguments.insert("x-expires", FieldValue::I32(60_000));
    declare(&registry, "idle", arguments);
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(registry.queue("idle").is_some(), "expired before x-expires");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        registry.queue("idle").is_none(),
        "still there 61 s after its last use"
    );
}

#[tokio::test(start_paused = true)]
async fn messages_of_an_idle_queue_expire_on_the_timer() {
    let registry = Registry::new("/");
    let mut arguments = FieldTable::new();
    arguments.insert("x-message-ttl", FieldValue::I32(30_000));
    let queue = declare(&registry, "ttl", arguments);
    let message = Arc::new(Message {
        exchange: "".into(),
        routing_key: "ttl".into(),
        properties: BasicProperties::default(),
        body: Bytes::from_static(b"m"),
        ttl: None,
        deaths: None,
    });
    queue
        .tx
        .send(Command::Publish(
            (0..3)
                .map(|_| Enqueued {
                    position: queue.take_position(),
                    message: Arc::clone(&message),
                    stored: false,
                    admitted: false,
                })
                .collect(),
        ))
        .await
        .unwrap();
    assert_eq!(ready_count(&queue).await, 3);
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(ready_count(&queue).await, 3, "expired before the TTL");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ready_count(&queue).await,
        0,
        "not removed by the idle-queue timer"
    );
}
