//! The consumer (delivery acknowledgement) timeout: a delivery left unacknowledged longer than
//! `consumer_timeout` (or the queue's `x-consumer-timeout`) closes its channel with RabbitMQ's
//! 406, and what the channel held is redelivered.

use std::time::Duration;

use crate::common::*;
use warren::protocol::*;

fn timed_out(channel: u16, ms: u64) -> Close {
    Close::new(
        406,
        &format!(
            "PRECONDITION_FAILED - delivery acknowledgement on channel {channel} timed out. \
             Timeout value used: {ms} ms. This timeout value can be configured, see consumers \
             doc guide to learn more"
        ),
        0,
        0,
    )
}

fn declare_with_timeout(name: &str, ms: i32) -> Method {
    let mut arguments = FieldTable::new();
    arguments.insert("x-consumer-timeout", ms);
    Method::QueueDeclare(QueueDeclare {
        queue: name.into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments,
    })
}

#[tokio::test]
async fn an_unacked_delivery_closes_the_channel_and_is_redelivered() {
    let server = start_server(|c| c.consumer_timeout = 300).await;
    let mut c = RawClient::open(server.addr, "timeout", 0).await;
    c.open_channel(1).await;
    c.open_channel(2).await;
    c.declare_queue(1, "slow").await;
    c.publish(1, "", "slow", b"late").await;
    c.consume(1, "slow", "sleepy", false).await;
    let (_, _, redelivered, body) = c.next_delivery().await;
    assert!(!redelivered);
    assert_eq!(&body[..], b"late");
    assert_eq!(c.expect_channel_close(1).await, timed_out(1, 300));

    c.consume(2, "slow", "awake", false).await;
    let (tag, delivery_tag, redelivered, body) = c.next_delivery().await;
    assert_eq!(tag, "awake");
    assert!(redelivered);
    assert_eq!(&body[..], b"late");
    c.send_method(2, &ack(delivery_tag, false)).await;
    c.expect_quiet(Duration::from_millis(700)).await;
    c.ping(2).await;
}

#[tokio::test]
async fn basic_get_with_ack_times_out_too() {
    let server = start_server(|c| c.consumer_timeout = 300).await;
    let mut c = RawClient::open(server.addr, "timeout-get", 0).await;
    c.open_channel(3).await;
    c.declare_queue(3, "got").await;
    c.publish(3, "", "got", b"held").await;
    c.send_method(3, &get("got", false)).await;
    let content = c.next_content().await;
    assert!(matches!(content.method, Method::BasicGetOk(_)));
    assert_eq!(c.expect_channel_close(3).await, timed_out(3, 300));
    c.open_channel(4).await;
    c.send_method(4, &get("got", true)).await;
    let content = c.next_content().await;
    let Method::BasicGetOk(ok) = content.method else {
        panic!("expected get-ok")
    };
    assert!(ok.redelivered);
}

#[tokio::test]
async fn acks_in_time_and_no_ack_consumers_never_trip_it() {
    let server = start_server(|c| c.consumer_timeout = 300).await;
    let mut c = RawClient::open(server.addr, "prompt", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "prompt").await;
    c.consume(1, "prompt", "p", false).await;
    for _ in 0..4 {
        c.publish(1, "", "prompt", b"m").await;
        let (_, delivery_tag, _, _) = c.next_delivery().await;
        c.send_method(1, &ack(delivery_tag, false)).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    c.expect_quiet(Duration::from_millis(700)).await;
    c.ping(1).await;

    c.open_channel(2).await;
    c.declare_queue(2, "free").await;
    c.consume(2, "free", "f", true).await;
    c.publish(2, "", "free", b"m").await;
    let (_, _, _, body) = c.next_delivery().await;
    assert_eq!(&body[..], b"m");
    c.expect_quiet(Duration::from_millis(1000)).await;
    c.ping(2).await;
}

#[tokio::test]
async fn the_queue_argument_overrides_the_server_default() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "per-queue", 0).await;
    c.open_channel(1).await;
    c.ok(1, declare_with_timeout("short", 300), "queue.declare-ok")
        .await;
    c.declare_queue(1, "long").await;
    c.publish(1, "", "long", b"patient").await;
    c.consume(1, "long", "l", false).await;
    let _ = c.next_delivery().await;
    c.open_channel(2).await;
    c.publish(2, "", "short", b"hurried").await;
    c.consume(2, "short", "s", false).await;
    let _ = c.next_delivery().await;
    assert_eq!(c.expect_channel_close(2).await, timed_out(2, 300));
    c.ping(1).await;

    c.open_channel(3).await;
    c.consume(3, "short", "again", false).await;
    let (_, _, redelivered, body) = c.next_delivery().await;
    assert!(redelivered);
    assert_eq!(&body[..], b"hurried");
}
