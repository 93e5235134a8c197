//! `x-single-active-consumer`: one consumer gets everything; on its cancel or disconnect the
//! longest-waiting consumer takes over (with what the gone one left unacknowledged).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use warren::protocol::*;

fn declare_sac(name: &str) -> Method {
    let mut arguments = FieldTable::new();
    arguments.insert("x-single-active-consumer", true);
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
async fn one_active_consumer_and_failover() {
    let server = start_server(|_| {}).await;
    let mut a = RawClient::open(server.addr, "a", 0).await;
    let mut b = RawClient::open(server.addr, "b", 0).await;
    a.open_channel(1).await;
    b.open_channel(1).await;
    a.ok(1, declare_sac("sac"), "queue.declare-ok").await;
    a.consume(1, "sac", "a1", true).await;
    b.consume(1, "sac", "b1", false).await;
    let Method::QueueDeclareOk(ok) = a.ok(1, declare_sac("sac"), "queue.declare-ok").await else {
        unreachable!()
    };
    assert_eq!(ok.consumer_count, 2);
    for body in [&b"1"[..], b"2", b"3"] {
        a.publish(1, "", "sac", body).await;
    }
    for body in [&b"1"[..], b"2", b"3"] {
        let (tag, _, _, got) = a.next_delivery().await;
        assert_eq!((tag.as_str(), &got[..]), ("a1", body));
    }
    b.expect_quiet(Duration::from_millis(200)).await;
    // Cancel: b takes over.
    a.ok(
        1,
        Method::BasicCancel(BasicCancel {
            consumer_tag: "a1".into(),
            no_wait: false,
        }),
        "basic.cancel-ok",
    )
    .await;
    a.consume(1, "sac", "a2", true).await;
    a.publish(1, "", "sac", b"4").await;
    let (tag, _, redelivered, got) = b.next_delivery().await;
    assert_eq!(
        (tag.as_str(), redelivered, &got[..]),
        ("b1", false, &b"4"[..])
    );
    // Disconnect: a takes over, with b's unacknowledged message redelivered.
    drop(b);
    let (tag, _, redelivered, got) = a.next_delivery().await;
    assert_eq!(
        (tag.as_str(), redelivered, &got[..]),
        ("a2", true, &b"4"[..])
    );
    a.publish(1, "", "sac", b"5").await;
    let (tag, _, _, got) = a.next_delivery().await;
    assert_eq!((tag.as_str(), &got[..]), ("a2", &b"5"[..]));
}

/// How the active consumer's channel goes away without cancelling its consumer first.
#[derive(Debug, Clone, Copy)]
enum Gone {
    ChannelClose,
    ConnectionClose,
    TcpDrop,
}

const GONE: [Gone; 3] = [Gone::ChannelClose, Gone::ConnectionClose, Gone::TcpDrop];

/// Ends channel 1 of `a` (its only channel) the way `how` says.
async fn go_away(mut a: RawClient, how: Gone) {
    match how {
        Gone::ChannelClose => {
            a.ok(
                1,
                Method::ChannelClose(ChannelClose {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    class_id: 0,
                    method_id: 0,
                }),
                "channel.close-ok",
            )
            .await;
        }
        Gone::ConnectionClose => {
            a.ok(
                0,
                Method::ConnectionClose(ConnectionClose {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    class_id: 0,
                    method_id: 0,
                }),
                "connection.close-ok",
            )
            .await;
        }
        Gone::TcpDrop => drop(a),
    }
}

/// The next `n` deliveries as (body, redelivered), then nothing more.
async fn deliveries(c: &mut RawClient, n: usize) -> Vec<(String, bool)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let (_, _, redelivered, body) = c.next_delivery().await;
        got.push((String::from_utf8_lossy(&body).into_owned(), redelivered));
    }
    c.expect_quiet(Duration::from_millis(200)).await;
    got
}

fn expected(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(b, r)| ((*b).to_owned(), *r)).collect()
}

/// The active consumer holds m1 (prefetch 1) or m1..m3 (prefetch 3) unacknowledged, m4 and m5
/// wait, and so does consumer b. When the active consumer's channel goes (close, connection
/// close or a dropped socket, no cancel first) what it held goes back to its place before b
/// gets anything: b sees m1 (redelivered) first. RabbitMQ 3.10.8 gave b exactly these lists.
#[tokio::test]
async fn failover_redelivers_what_the_gone_consumer_held_first() {
    let server = start_server(|_| {}).await;
    let mut admin = RawClient::open(server.addr, "sac/failover-order/admin", 0).await;
    admin.open_channel(1).await;
    for how in GONE {
        for prefetch in [1u16, 3] {
            let q = format!("sac-order-{how:?}-{prefetch}");
            admin.ok(1, declare_sac(&q), "queue.declare-ok").await;
            let name = format!("sac/failover-order/{how:?}");
            let mut a = RawClient::open(server.addr, &name, 0).await;
            a.open_channel(1).await;
            a.ok(1, qos(prefetch, false), "basic.qos-ok").await;
            a.consume(1, &q, "a", false).await;
            let mut b = RawClient::open(server.addr, &name, 0).await;
            b.open_channel(1).await;
            b.ok(1, qos(10, false), "basic.qos-ok").await;
            b.consume(1, &q, "b", false).await;
            for i in 1..=5 {
                admin.publish(1, "", &q, format!("m{i}").as_bytes()).await;
            }
            for i in 1..=prefetch {
                let (tag, _, _, body) = a.next_delivery().await;
                assert_eq!((tag.as_str(), &body[..]), ("a", format!("m{i}").as_bytes()));
            }
            b.expect_quiet(Duration::from_millis(100)).await;
            go_away(a, how).await;
            let want = if prefetch == 1 {
                expected(&[
                    ("m1", true),
                    ("m2", false),
                    ("m3", false),
                    ("m4", false),
                    ("m5", false),
                ])
            } else {
                expected(&[
                    ("m1", true),
                    ("m2", true),
                    ("m3", true),
                    ("m4", false),
                    ("m5", false),
                ])
            };
            assert_eq!(
                deliveries(&mut b, 5).await,
                want,
                "{how:?}, prefetch {prefetch}"
            );
        }
    }
    server.handle.shutdown().await;
}

/// The waiting consumer on another channel of the same connection: closing the active
/// consumer's channel hands it the held message first, as RabbitMQ 3.10.8 does.
#[tokio::test]
async fn failover_to_a_consumer_on_the_same_connection() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "sac/failover-same-connection", 0).await;
    c.open_channel(1).await;
    c.open_channel(2).await;
    c.ok(1, declare_sac("sac-same"), "queue.declare-ok").await;
    c.ok(1, qos(1, false), "basic.qos-ok").await;
    c.consume(1, "sac-same", "a", false).await;
    c.consume(2, "sac-same", "b", false).await;
    for body in ["m1", "m2", "m3"] {
        c.publish(2, "", "sac-same", body.as_bytes()).await;
    }
    let (tag, _, _, body) = c.next_delivery().await;
    assert_eq!((tag.as_str(), &body[..]), ("a", &b"m1"[..]));
    c.send_method(
        1,
        &Method::ChannelClose(ChannelClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        }),
    )
    .await;
    c.expect_method("channel.close-ok").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let content = c.next_content().await;
        let Method::BasicDeliver(d) = content.method else {
            panic!("expected basic.deliver, got {:?}", content.method)
        };
        assert_eq!((content.channel, d.consumer_tag.as_str()), (2, "b"));
        got.push((
            String::from_utf8_lossy(&content.body).into_owned(),
            d.redelivered,
        ));
    }
    assert_eq!(got, expected(&[("m1", true), ("m2", false), ("m3", false)]));
    server.handle.shutdown().await;
}

/// A cancel hands over at once, as in RabbitMQ 4.x (`stop_consumer` runs the queue): the next
/// consumer gets the ready messages, and what the cancelled consumer's channel still held
/// comes back in its place when that channel closes. pika cancels its consumers before every
/// channel or connection close. RabbitMQ 3.x gives m1 first here only because it does not
/// dispatch after a cancel at all (and its queue process then crashes on the next publish,
/// rabbitmq-server#5460; reproduced on 3.10.8).
#[tokio::test]
async fn a_cancel_hands_over_at_once_and_a_later_close_requeues_in_place() {
    let server = start_server(|_| {}).await;
    let mut admin = RawClient::open(server.addr, "sac/cancel-then-close/admin", 0).await;
    admin.open_channel(1).await;
    admin
        .ok(1, declare_sac("sac-cancel"), "queue.declare-ok")
        .await;
    let mut a = RawClient::open(server.addr, "sac/cancel-then-close/a", 0).await;
    a.open_channel(1).await;
    a.ok(1, qos(1, false), "basic.qos-ok").await;
    a.consume(1, "sac-cancel", "a", false).await;
    let mut b = RawClient::open(server.addr, "sac/cancel-then-close/b", 0).await;
    b.open_channel(1).await;
    b.ok(1, qos(2, false), "basic.qos-ok").await;
    b.consume(1, "sac-cancel", "b", false).await;
    for body in ["m1", "m2", "m3", "m4"] {
        admin.publish(1, "", "sac-cancel", body.as_bytes()).await;
    }
    let (_, _, _, body) = a.next_delivery().await;
    assert_eq!(&body[..], b"m1");
    a.ok(
        1,
        Method::BasicCancel(BasicCancel {
            consumer_tag: "a".into(),
            no_wait: false,
        }),
        "basic.cancel-ok",
    )
    .await;
    // b's prefetch of 2 is full with m2 and m3; m1 comes back ahead of m4.
    assert_eq!(
        deliveries(&mut b, 2).await,
        expected(&[("m2", false), ("m3", false)])
    );
    go_away(a, Gone::ChannelClose).await;
    b.send_method(1, &ack(2, true)).await;
    assert_eq!(
        deliveries(&mut b, 2).await,
        expected(&[("m1", true), ("m4", false)])
    );
    server.handle.shutdown().await;
}
