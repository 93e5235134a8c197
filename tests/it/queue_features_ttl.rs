//! Message TTL: `x-message-ttl` and the `expiration` property (the lower applies), expiry on
//! an idle queue, TTL 0, requeue keeping the original expiry, invalid expirations.

use std::time::Duration;

use crate::common::*;
use warren::protocol::*;

fn declare_ttl(name: &str, ttl: Option<i32>) -> Method {
    let mut arguments = FieldTable::new();
    if let Some(ttl) = ttl {
        arguments.insert("x-message-ttl", ttl);
    }
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

fn expiring(expiration: &str) -> BasicProperties {
    BasicProperties {
        expiration: Some(expiration.into()),
        ..BasicProperties::default()
    }
}

async fn publish_exp(c: &mut RawClient, queue: &str, expiration: Option<&str>, body: &[u8]) {
    let props = expiration.map(expiring).unwrap_or_default();
    c.publish_with(1, publish("", queue, false), props, body)
        .await;
}

/// The ready count from a passive declare.
async fn message_count(c: &mut RawClient, queue: &str) -> u32 {
    let passive = Method::QueueDeclare(QueueDeclare {
        queue: queue.into(),
        passive: true,
        durable: false,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments: FieldTable::new(),
    });
    let Method::QueueDeclareOk(ok) = c.ok(1, passive, "queue.declare-ok").await else {
        unreachable!()
    };
    ok.message_count
}

#[tokio::test]
async fn queue_ttl_expires_messages_on_an_idle_queue() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "ttl", 0).await;
    c.open_channel(1).await;
    c.ok(1, declare_ttl("q", Some(150)), "queue.declare-ok")
        .await;
    c.declare_queue(1, "plain").await;
    publish_exp(&mut c, "plain", None, b"stays").await;
    publish_exp(&mut c, "q", None, b"a").await;
    publish_exp(&mut c, "q", None, b"b").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Removed by the queue's timer, with no consumer or get involved.
    assert_eq!(message_count(&mut c, "q").await, 0);
    assert_eq!(c.get_body(1, "q").await, None);
    assert_eq!(message_count(&mut c, "plain").await, 1);
}
#[tokio::test]
async fn the_lower_of_queue_and_message_ttl_applies() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "lower", 0).await;
    c.open_channel(1).await;
    c.ok(1, declare_ttl("long", Some(60_000)), "queue.declare-ok")
        .await;
    c.ok(1, declare_ttl("short", Some(150)), "queue.declare-ok")
        .await;
    c.declare_queue(1, "none").await;
    publish_exp(&mut c, "long", Some("150"), b"message ttl wins").await;
    publish_exp(&mut c, "long", None, b"kept").await;
    publish_exp(&mut c, "short", Some("60000"), b"queue ttl wins").await;
    publish_exp(&mut c, "none", Some("+150"), b"message ttl alone").await;
    publish_exp(&mut c, "none", Some("60000"), b"kept too").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.get_body(1, "long").await.as_deref(), Some(&b"kept"[..]));
    assert_eq!(c.get_body(1, "short").await, None);
    assert_eq!(
        c.get_body(1, "none").await.as_deref(),
        Some(&b"kept too"[..])
    );
}

#[tokio::test]
async fn ttl_zero_delivers_now_or_expires() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "zero", 0).await;
    c.open_channel(1).await;
    c.ok(1, declare_ttl("q0", Some(0)), "queue.declare-ok")
        .await;
    c.declare_queue(1, "m0").await;
    // Nobody consuming: gone.
    publish_exp(&mut c, "q0", None, b"lost").await;
    publish_exp(&mut c, "m0", Some("0"), b"lost").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.get_body(1, "q0").await, None);
    assert_eq!(c.get_body(1, "m0").await, None);
    // A consumer waiting: delivered.
    c.consume(1, "q0", "c0", true).await;
    publish_exp(&mut c, "q0", None, b"now").await;
    let (tag, _, redelivered, body) = c.next_delivery().await;
    assert_eq!(
        (tag.as_str(), redelivered, &body[..]),
        ("c0", false, &b"now"[..])
    );
}

#[tokio::test]
async fn requeued_messages_keep_their_expiry_and_expired_ones_are_never_delivered() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "requeue", 0).await;
    c.open_channel(1).await;
    c.ok(1, declare_ttl("q", Some(200)), "queue.declare-ok")
        .await;
    publish_exp(&mut c, "q", None, b"held").await;
    c.consume(1, "q", "c", false).await;
    let (_, tag, _, body) = c.next_delivery().await;
    assert_eq!(&body[..], b"held");
    // Unacked messages do not expire; once requeued past their expiry they do.
    tokio::time::sleep(Duration::from_millis(350)).await;
    c.send_method(
        1,
        &Method::BasicNack(BasicNack {
            delivery_tag: tag,
            multiple: false,
            requeue: true,
        }),
    )
    .await;
    c.expect_quiet(Duration::from_millis(300)).await;
    assert_eq!(message_count(&mut c, "q").await, 0);
}

#[tokio::test]
async fn an_invalid_expiration_closes_the_publishing_channel() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "invalid", 0).await;
    let cases = [
        ("-1", "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}"),
        ("abc", "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"),
        ("10x", "PRECONDITION_FAILED - invalid expiration '10x': {leftover_string,\"x\"}"),
        (
            "315360000001",
            "PRECONDITION_FAILED - invalid expiration '315360000001': {value_too_large,315360000001}",
        ),
    ];
    for (expiration, text) in cases {
        c.open_channel(1).await;
        c.declare_queue(1, "q").await;
        publish_exp(&mut c, "q", Some(expiration), b"x").await;
        let close = c.expect_channel_close(1).await;
        assert_eq!(close, Close::new(406, text, 60, 40));
    }
    c.open_channel(1).await;
    assert_eq!(message_count(&mut c, "q").await, 0);
}
