//! Memory and disk alarms against the in-process server: a publishing connection is blocked
//! (connection.blocked once, then no more reads) until every alarm clears; consumers and
//! connections that never published keep working. Thresholds are changed through the
//! server handle, so the alarms set and clear at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{self, publish, start_server, RawClient, WAIT};
use amqprs::callbacks::ConnectionCallback;
use amqprs::channel::ConsumerMessage as AmqprsMessage;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{BasicProperties as AmqprsProps, Close};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;
use warren::alarm::Watermark;
use warren::protocol::{BasicProperties, Method};

/// Long enough for a held message to have arrived if it were going to.
const QUIET: Duration = Duration::from_millis(500);

/// A raw client that advertises the `connection.blocked` capability, as RabbitMQ's own
/// clients do.
async fn open_blockable(addr: SocketAddr, name: &str, heartbeat: u16) -> RawClient {
    let mut c =
        RawClient::open_with_caps(addr, name, &[("connection.blocked", true)], heartbeat).await;
    c.open_channel(1).await;
    c
}

/// Reads until the confirm of sequence number `seq`, skipping nothing else.
async fn expect_confirmed(c: &mut RawClient, seq: u64) {
    loop {
        match c.next_method().await {
            (1, Method::BasicAck(ack)) if ack.delivery_tag >= seq => return,
            (1, Method::BasicAck(_)) => continue,
            other => panic!("expected confirms up to {seq}, got {other:?}"),
        }
    }
}

/// Publishes `body` to the queue `queue` through the default exchange, on channel 1.
async fn send(c: &mut RawClient, queue: &str, body: &str) {
    c.publish_with(
        1,
        publish("", queue, false),
        BasicProperties::default(),
        body.as_bytes(),
    )
    .await;
}

/// An amqprs connection and channel.
async fn amqprs_open(addr: SocketAddr, name: &str) -> (Connection, Channel) {
    let mut args = OpenConnectionArguments::new("127.0.0.1", addr.port(), "guest", "guest");
    args.connection_name(name);
    let conn = Connection::open(&args).await.unwrap();
    let ch = conn.open_channel(None).await.unwrap();
    (conn, ch)
}

/// An amqprs consumer on `queue`, one unacknowledged message at a time.
async fn amqprs_consumer(
    addr: SocketAddr,
    name: &str,
    queue: &str,
) -> (Connection, Channel, UnboundedReceiver<AmqprsMessage>) {
    let (conn, ch) = amqprs_open(addr, name).await;
    ch.queue_declare(QueueDeclareArguments::new(queue))
        .await
        .unwrap();
    ch.basic_qos(BasicQosArguments::new(0, 1, false))
        .await
        .unwrap();
    let (_, rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new(queue, name))
        .await
        .unwrap();
    (conn, ch, rx)
}

/// The next delivery's body, acknowledged.
async fn receive_and_ack(ch: &Channel, rx: &mut UnboundedReceiver<AmqprsMessage>) -> String {
    let msg = timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a delivery")
        .expect("consumer ended");
    let tag = msg.deliver.unwrap().delivery_tag();
    ch.basic_ack(BasicAckArguments::new(tag, false))
        .await
        .unwrap();
    String::from_utf8(msg.content.unwrap()).unwrap()
}

async fn expect_no_delivery(rx: &mut UnboundedReceiver<AmqprsMessage>) {
    if let Ok(msg) = timeout(QUIET, rx.recv()).await {
        panic!("expected no delivery, got {:?}", msg.map(|m| m.content));
    }
}

/// Messages ready in `queue` (a passive declare).
async fn ready(ch: &Channel, queue: &str) -> u32 {
    let (_, count, _) = ch
        .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish())
        .await
        .unwrap()
        .unwrap();
    count
}

/// Reads the publisher's frames until `connection.unblocked`, failing on a second
/// `connection.blocked`; confirms on the way are fine.
async fn expect_unblocked(c: &mut RawClient) {
    loop {
        match c.next_method().await {
            (0, Method::ConnectionUnblocked(_)) => return,
            (1, Method::BasicAck(_)) => continue,
            other => panic!("expected connection.unblocked, got {other:?}"),
        }
    }
}

fn no_memory_alarm() -> Watermark {
    Watermark::Relative(1.0)
}

#[tokio::test]
async fn memory_alarm_blocks_the_publisher_and_consumers_keep_draining() {
    let server = start_server(|_| {}).await;
    let alarms = server.handle.alarms();
    assert!(!alarms.state().any(), "{:?}", alarms.sample());
    let queue = "alarms.memory";
    let (consumer_conn, ch, mut rx) =
        amqprs_consumer(server.addr, "alarms/memory-consumer", queue).await;
    let mut publisher = open_blockable(server.addr, "alarms/memory-publisher", 0).await;
    publisher.confirm_select(1).await;
    for i in 0..5 {
        send(&mut publisher, queue, &format!("before-{i}")).await;
    }
    expect_confirmed(&mut publisher, 5).await;

    alarms
        .set_memory_high_watermark(Watermark::Absolute(1))
        .unwrap();
    assert!(alarms.state().memory);
    // Blocked at its next publish, told once why.
    send(&mut publisher, queue, "held-0").await;
    let (channel, method) = publisher.expect_method("connection.blocked").await;
    assert_eq!(channel, 0);
    let Method::ConnectionBlocked(blocked) = method else {
        unreachable!()
    };
    assert_eq!(blocked.reason.as_str(), "low on memory");
    send(&mut publisher, queue, "held-1").await;
    send(&mut publisher, queue, "held-2").await;

    // The consumer drains what was queued before the alarm, acking as it goes.
    for i in 0..5 {
        assert_eq!(receive_and_ack(&ch, &mut rx).await, format!("before-{i}"));
    }
    expect_no_delivery(&mut rx).await;
    assert_eq!(ready(&ch, queue).await, 0);
    publisher.expect_quiet(QUIET).await;

    alarms.set_memory_high_watermark(no_memory_alarm()).unwrap();
    expect_unblocked(&mut publisher).await;
    for i in 0..3 {
        assert_eq!(receive_and_ack(&ch, &mut rx).await, format!("held-{i}"));
    }
    expect_confirmed(&mut publisher, 8).await;
    // Publishing works again, without a new block.
    send(&mut publisher, queue, "after").await;
    expect_confirmed(&mut publisher, 9).await;
    assert_eq!(receive_and_ack(&ch, &mut rx).await, "after");

    consumer_conn.close().await.unwrap();
    server.handle.shutdown().await;
}

#[tokio::test]
async fn disk_alarm_blocks_until_every_alarm_has_cleared() {
    let server = start_server(|_| {}).await;
    let alarms = server.handle.alarms();
    let queue = "alarms.disk";
    let mut publisher = open_blockable(server.addr, "alarms/disk-publisher", 0).await;
    publisher.declare_queue(1, queue).await;

    alarms.set_disk_free_limit(u64::MAX);
    assert!(alarms.state().disk);
    send(&mut publisher, queue, "held").await;
    let (_, Method::ConnectionBlocked(blocked)) =
        publisher.expect_method("connection.blocked").await
    else {
        unreachable!()
    };
    assert_eq!(blocked.reason.as_str(), "low on disk");

    // A second alarm sends no second notification; clearing one of two unblocks nothing.
    alarms
        .set_memory_high_watermark(Watermark::Absolute(1))
        .unwrap();
    publisher.expect_quiet(QUIET).await;
    alarms.set_disk_free_limit(0);
    assert!(alarms.state().memory && !alarms.state().disk);
    publisher.expect_quiet(QUIET).await;

    let (checker_conn, checker) = amqprs_open(server.addr, "alarms/disk-checker").await;
    assert_eq!(ready(&checker, queue).await, 0);

    alarms.set_memory_high_watermark(no_memory_alarm()).unwrap();
    publisher.expect_method("connection.unblocked").await;
    publisher.ping(1).await;
    assert_eq!(ready(&checker, queue).await, 1);

    checker_conn.close().await.unwrap();
    server.handle.shutdown().await;
}

#[tokio::test]
async fn connections_that_do_not_publish_are_not_blocked() {
    let server = start_server(|_| {}).await;
    let alarms = server.handle.alarms();
    let queue = "alarms.readers";
    // Published before the alarm, idle during it.
    let mut earlier = open_blockable(server.addr, "alarms/earlier-publisher", 0).await;
    earlier.declare_queue(1, queue).await;
    for i in 0..3 {
        send(&mut earlier, queue, &format!("m{i}")).await;
    }
    earlier.ping(1).await;

    alarms
        .set_memory_high_watermark(Watermark::Absolute(1))
        .unwrap();
    alarms.set_disk_free_limit(u64::MAX);

    // A consumer with the capability consumes, acks, declares and gets without being blocked
    // or told anything.
    let mut consumer = open_blockable(server.addr, "alarms/consumer-only", 0).await;
    consumer.declare_queue(1, queue).await;
    let tag = consumer.consume(1, queue, "reader", false).await;
    for i in 0..3 {
        let (got_tag, delivery_tag, _, body) = consumer.next_delivery().await;
        assert_eq!(got_tag, tag);
        assert_eq!(body, Bytes::from(format!("m{i}")));
        consumer
            .send_method(1, &common::ack(delivery_tag, false))
            .await;
    }
    consumer.declare_queue(1, "alarms.another").await;
    consumer.ping(1).await;
    consumer.expect_quiet(QUIET).await;

    // The earlier publisher is not blocked either until it publishes again.
    earlier.ping(1).await;
    earlier.declare_queue(1, queue).await;
    send(&mut earlier, queue, "late").await;
    let (_, Method::ConnectionBlocked(blocked)) = earlier.expect_method("connection.blocked").await
    else {
        unreachable!()
    };
    assert_eq!(blocked.reason.as_str(), "low on memory & disk");

    consumer.ping(1).await;
    consumer.expect_quiet(QUIET).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_blocked_connection_is_not_dropped_for_missed_heartbeats() {
    let server = start_server(|_| {}).await;
    let alarms = server.handle.alarms();
    let mut publisher = open_blockable(server.addr, "alarms/heartbeat-publisher", 1).await;
    publisher.declare_queue(1, "alarms.heartbeat").await;
    alarms.set_disk_free_limit(u64::MAX);
    send(&mut publisher, "alarms.heartbeat", "held").await;
    publisher.expect_method("connection.blocked").await;
    // We send nothing for well over two heartbeat intervals: only the server's heartbeats.
    publisher.expect_open_for(Duration::from_millis(3500)).await;
    alarms.set_disk_free_limit(0);
    publisher.expect_method("connection.unblocked").await;
    publisher.ping(1).await;
    server.handle.shutdown().await;
}

/// Records what amqprs's connection callback is told.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl ConnectionCallback for Recorder {
    async fn close(&mut self, _: &Connection, close: Close) -> Result<(), amqprs::error::Error> {
        self.0.lock().unwrap().push(format!("close {close}"));
        Ok(())
    }
    async fn blocked(&mut self, _: &Connection, reason: String) {
        self.0.lock().unwrap().push(format!("blocked {reason}"));
    }
    async fn unblocked(&mut self, _: &Connection) {
        self.0.lock().unwrap().push("unblocked".to_owned());
    }
    async fn secret_updated(&mut self, _: &Connection) {}
}

/// amqprs does not advertise the `connection.blocked` capability: RabbitMQ blocks it all the
/// same, silently, and so do we.
#[tokio::test]
async fn amqprs_is_blocked_silently_and_its_publishes_are_held() {
    let server = start_server(|_| {}).await;
    let alarms = server.handle.alarms();
    let queue = "alarms.amqprs";
    let (pub_conn, pub_ch) = amqprs_open(server.addr, "alarms/amqprs-publisher").await;
    assert!(pub_conn
        .server_properties()
        .capabilities()
        .connection_blocked());
    let recorder = Recorder::default();
    pub_conn.register_callback(recorder.clone()).await.unwrap();
    let (consumer_conn, ch, mut rx) =
        amqprs_consumer(server.addr, "alarms/amqprs-consumer", queue).await;
    let send_amqprs = |body: &str| {
        pub_ch.basic_publish(
            AmqprsProps::default(),
            body.as_bytes().to_vec(),
            BasicPublishArguments::new("", queue),
        )
    };
    send_amqprs("before").await.unwrap();
    assert_eq!(receive_and_ack(&ch, &mut rx).await, "before");

    alarms
        .set_memory_high_watermark(Watermark::Absolute(1))
        .unwrap();
    send_amqprs("held-0").await.unwrap();
    send_amqprs("held-1").await.unwrap();
    expect_no_delivery(&mut rx).await;
    assert_eq!(ready(&ch, queue).await, 0);

    alarms.set_memory_high_watermark(no_memory_alarm()).unwrap();
    assert_eq!(receive_and_ack(&ch, &mut rx).await, "held-0");
    assert_eq!(receive_and_ack(&ch, &mut rx).await, "held-1");
    assert!(recorder.0.lock().unwrap().is_empty());

    pub_conn.close().await.unwrap();
    consumer_conn.close().await.unwrap();
    server.handle.shutdown().await;
}
