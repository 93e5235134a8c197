//! `x-single-active-consumer`: one consumer gets everything; on its cancel or disconnect the
//! longest-waiting consumer takes over (with what the gone one left unacknowledged). After a
//! cancel the takeover waits until the cancelled consumer's deliveries are settled, so that one
//! consumer at a time processes the queue, in order.

use std::time::Duration;

use crate::common::*;
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

/// How the cancelled consumer's channel settles m1, the one message it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// channel.close (what pika's `channel.close()` sends after its basic.cancel).
    Close,
    /// basic.ack, the channel staying open.
    Ack,
    /// basic.reject requeue=true, after a publish made while the handover waited.
    PublishThenRequeue,
    /// Nothing: the consumer timeout (`x-consumer-timeout` 300 ms) closes the channel.
    TimeOut,
}

/// Consumer a (prefetch 1) holds m1 of m1..m5 when it cancels; b waits. b gets nothing until
/// a's channel settles m1; then b starts at the head, so after a close (or a requeue, or the
/// consumer timeout) it gets m1 redelivered first, then m2..m5, and after an ack m2..m5.
/// RabbitMQ 3.10.8 gave m1 (redelivered), m2, m3, m4, m5 after cancel + close (checked with
/// pika); RabbitMQ 4.x hands over at the cancel and gives m2, m3, m4, m5, m1.
#[tokio::test]
async fn after_a_cancel_the_next_consumer_takes_over_once_the_cancelled_ones_deliveries_settle() {
    let server = start_server(|_| {}).await;
    let mut admin = RawClient::open(server.addr, "sac/cancel-handover/admin", 0).await;
    admin.open_channel(1).await;
    for then in [
        Then::Close,
        Then::Ack,
        Then::PublishThenRequeue,
        Then::TimeOut,
    ] {
        let q = format!("sac-cancel-{then:?}");
        let mut arguments = FieldTable::new();
        arguments.insert("x-single-active-consumer", true);
        if then == Then::TimeOut {
            arguments.insert("x-consumer-timeout", 300i32);
        }
        let Method::QueueDeclare(mut declare) = declare_sac(&q) else {
            unreachable!()
        };
        declare.arguments = arguments;
        admin
            .ok(1, Method::QueueDeclare(declare), "queue.declare-ok")
            .await;
        let name = format!("sac/cancel-handover/{then:?}");
        let mut a = RawClient::open(server.addr, &name, 0).await;
        a.open_channel(1).await;
        a.ok(1, qos(1, false), "basic.qos-ok").await;
        a.consume(1, &q, "a", false).await;
        let mut b = RawClient::open(server.addr, &name, 0).await;
        b.open_channel(1).await;
        b.ok(1, qos(10, false), "basic.qos-ok").await;
        b.consume(1, &q, "b", false).await;
        for i in 1..=5 {
            admin.publish(1, "", &q, format!("m{i}").as_bytes()).await;
        }
        let (_, m1, _, body) = a.next_delivery().await;
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
        let mut want = vec![("m2", false), ("m3", false), ("m4", false), ("m5", false)];
        if then != Then::Close {
            // (After a close, b's first delivery being m1 says the same.)
            b.expect_quiet(Duration::from_millis(100)).await;
        }
        match then {
            Then::Close => {
                go_away(a, Gone::ChannelClose).await;
                want.insert(0, ("m1", true));
            }
            Then::Ack => {
                a.send_method(1, &ack(m1, false)).await;
                assert_eq!(deliveries(&mut b, 4).await, expected(&want), "{then:?}");
                // a keeps its channel and is no consumer any more.
                a.expect_quiet(Duration::from_millis(100)).await;
                continue;
            }
            Then::PublishThenRequeue => {
                admin.publish(1, "", &q, b"m6").await;
                b.expect_quiet(Duration::from_millis(100)).await;
                let Method::QueueDeclareOk(ok) =
                    admin.ok(1, declare_sac(&q), "queue.declare-ok").await
                else {
                    unreachable!()
                };
                assert_eq!((ok.message_count, ok.consumer_count), (5, 1));
                let reject = BasicReject {
                    delivery_tag: m1,
                    requeue: true,
                };
                a.send_method(1, &Method::BasicReject(reject)).await;
                want.insert(0, ("m1", true));
                want.push(("m6", false));
            }
            Then::TimeOut => {
                assert_eq!(a.expect_channel_close(1).await.code, 406);
                want.insert(0, ("m1", true));
            }
        }
        let n = want.len();
        assert_eq!(deliveries(&mut b, n).await, expected(&want), "{then:?}");
    }
    server.handle.shutdown().await;
}

/// A cancel with nothing unacknowledged hands over at once: b gets the next messages while
/// a's channel stays open.
#[tokio::test]
async fn a_cancel_with_nothing_unacked_hands_over_at_once() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "sac/cancel-nothing-held", 0).await;
    c.open_channel(1).await;
    c.open_channel(2).await;
    c.ok(1, declare_sac("sac-free"), "queue.declare-ok").await;
    c.ok(1, qos(1, false), "basic.qos-ok").await;
    c.consume(1, "sac-free", "a", false).await;
    c.consume(2, "sac-free", "b", false).await;
    c.publish(1, "", "sac-free", b"m1").await;
    let (tag, m1, _, _) = c.next_delivery().await;
    assert_eq!(tag, "a");
    c.send_method(1, &ack(m1, false)).await;
    c.ok(
        1,
        Method::BasicCancel(BasicCancel {
            consumer_tag: "a".into(),
            no_wait: false,
        }),
        "basic.cancel-ok",
    )
    .await;
    for body in ["m2", "m3"] {
        c.publish(1, "", "sac-free", body.as_bytes()).await;
    }
    for body in ["m2", "m3"] {
        let (tag, _, redelivered, got) = c.next_delivery().await;
        assert_eq!(
            (tag.as_str(), redelivered, &got[..]),
            ("b", false, body.as_bytes())
        );
    }
    server.handle.shutdown().await;
}
