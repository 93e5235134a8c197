//! Queues end to end over TCP: declare, get, consume, ack/nack/reject, requeue order, prefetch,
//! round-robin and priorities, auto-delete, deletion notices, purge.

use std::time::Duration;

use crate::common::*;
use warren::protocol::*;

const QUIET: Duration = Duration::from_millis(300);

fn nack(tag: u64, multiple: bool, requeue: bool) -> Method {
    Method::BasicNack(BasicNack {
        delivery_tag: tag,
        multiple,
        requeue,
    })
}

#[tokio::test]
async fn declare_counts_get_and_server_names() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/get", 0).await;
    c.open_channel(1).await;
    let ok = c.declare_queue(1, "").await;
    assert!(ok.queue.as_str().starts_with("amq.gen-"), "{ok:?}");
    assert_eq!(ok.queue.as_str().len(), 30);
    c.declare_queue(1, "q").await;
    for body in [b"a", b"b", b"c"] {
        c.publish(1, "", "q", body).await;
    }
    let ok = c.declare_queue(1, "q").await;
    assert_eq!((ok.message_count, ok.consumer_count), (3, 0));
    c.send_method(1, &get("q", false)).await;
    let got = c.next_content().await;
    let Method::BasicGetOk(g) = got.method else {
        panic!("{:?}", got.method)
    };
    assert_eq!(
        (g.delivery_tag, g.message_count, g.redelivered),
        (1, 2, false)
    );
    assert_eq!(&got.body[..], b"a");
    // The empty name is the last declared queue.
    c.send_method(1, &get("", true)).await;
    let got = c.next_content().await;
    assert_eq!(&got.body[..], b"b");
    c.send_method(1, &ack(1, false)).await;
    let Method::QueuePurgeOk(p) = c
        .ok(
            1,
            Method::QueuePurge(QueuePurge {
                queue: "q".into(),
                no_wait: false,
            }),
            "queue.purge-ok",
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(p.message_count, 1);
    c.ok(1, get("q", false), "basic.get-empty").await;
    let Method::QueueDeleteOk(d) = c
        .ok(
            1,
            Method::QueueDelete(QueueDelete {
                queue: "q".into(),
                if_unused: false,
                if_empty: false,
                no_wait: false,
            }),
            "queue.delete-ok",
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(d.message_count, 0);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn requeue_keeps_the_original_position_and_marks_redelivered() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/requeue", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    for body in [b"1", b"2", b"3", b"4"] {
        c.publish(1, "", "q", body).await;
    }
    c.consume(1, "q", "c", false).await;
    for expected in 1..=4u64 {
        let (_, tag, redelivered, body) = c.next_delivery().await;
        assert_eq!((tag, redelivered), (expected, false));
        assert_eq!(body[0], b'0' + expected as u8);
    }
    // Nack 2 (requeue), reject 3 (drop), nack 1 (requeue): they come back as 1 then 2.
    c.send_method(1, &nack(2, false, true)).await;
    c.send_method(
        1,
        &Method::BasicReject(BasicReject {
            delivery_tag: 3,
            requeue: false,
        }),
    )
    .await;
    c.send_method(1, &nack(1, false, true)).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let (_, _, redelivered, body) = c.next_delivery().await;
        assert!(redelivered);
        got.push(body[0]);
    }
    got.sort_unstable();
    assert_eq!(got, b"12");
    // Everything outstanding (4 and the two redeliveries) acked at once.
    c.send_method(1, &ack(0, true)).await;
    c.expect_quiet(QUIET).await;
    let ok = c.declare_queue(1, "q").await;
    assert_eq!(ok.message_count, 0);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn closing_a_channel_or_recovering_requeues_what_it_held() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/close_requeue", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    c.publish(1, "", "q", b"m").await;
    c.open_channel(2).await;
    c.consume(2, "q", "c", false).await;
    let (_, tag, redelivered, _) = c.next_delivery().await;
    assert_eq!((tag, redelivered), (1, false));
    c.ok(
        2,
        Method::BasicRecover(BasicRecover { requeue: true }),
        "basic.recover-ok",
    )
    .await;
    let (_, tag, redelivered, _) = c.next_delivery().await;
    assert_eq!((tag, redelivered), (2, true));
    c.ok(
        2,
        Method::ChannelClose(ChannelClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        }),
        "channel.close-ok",
    )
    .await;
    c.send_method(1, &get("q", true)).await;
    let got = c.next_content().await;
    let Method::BasicGetOk(g) = got.method else {
        panic!()
    };
    assert!(g.redelivered);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn consumers_share_round_robin_and_priority_wins() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/round_robin", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    c.consume(1, "q", "a", true).await;
    c.consume(1, "q", "b", true).await;
    for _ in 0..4 {
        c.publish(1, "", "q", b"x").await;
    }
    let mut tags = Vec::new();
    for _ in 0..4 {
        tags.push(c.next_delivery().await.0);
    }
    assert_eq!(tags, ["a", "b", "a", "b"]);
    // A consumer with a higher x-priority gets everything while it has credit.
    c.declare_queue(1, "p").await;
    let mut args = FieldTable::new();
    args.insert("x-priority", FieldValue::I32(10));
    c.consume(1, "p", "low", true).await;
    c.ok(
        1,
        Method::BasicConsume(BasicConsume {
            queue: "p".into(),
            consumer_tag: "high".into(),
            no_local: false,
            no_ack: true,
            exclusive: false,
            no_wait: false,
            arguments: args,
        }),
        "basic.consume-ok",
    )
    .await;
    for _ in 0..3 {
        c.publish(1, "", "p", b"x").await;
    }
    for _ in 0..3 {
        assert_eq!(c.next_delivery().await.0, "high");
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn per_consumer_prefetch() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/prefetch", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    for _ in 0..5 {
        c.publish(1, "", "q", b"x").await;
    }
    c.ok(1, qos(2, false), "basic.qos-ok").await;
    c.consume(1, "q", "c", false).await;
    assert_eq!(c.next_delivery().await.1, 1);
    assert_eq!(c.next_delivery().await.1, 2);
    c.expect_quiet(QUIET).await;
    c.send_method(1, &ack(2, true)).await;
    assert_eq!(c.next_delivery().await.1, 3);
    assert_eq!(c.next_delivery().await.1, 4);
    c.expect_quiet(QUIET).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn global_prefetch_spans_queues_and_freed_credit_wakes_the_others() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/global_prefetch", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q1").await;
    c.declare_queue(1, "q2").await;
    c.ok(1, qos(1, true), "basic.qos-ok").await;
    c.consume(1, "q1", "c1", false).await;
    c.consume(1, "q2", "c2", false).await;
    c.publish(1, "", "q1", b"1").await;
    let (tag_name, tag, _, _) = c.next_delivery().await;
    assert_eq!(tag_name, "c1");
    c.publish(1, "", "q2", b"2").await;
    c.expect_quiet(QUIET).await;
    // Acking the q1 message frees the channel's credit: q2 must deliver now.
    c.send_method(1, &ack(tag, false)).await;
    let (tag_name, _, _, body) = c.next_delivery().await;
    assert_eq!((tag_name.as_str(), &body[..]), ("c2", &b"2"[..]));
    server.handle.shutdown().await;
}

#[tokio::test]
async fn auto_delete_queue_and_exchange() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/auto_delete", 0).await;
    c.open_channel(1).await;
    c.ok(
        1,
        Method::QueueDeclare(QueueDeclare {
            queue: "ad".into(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: true,
            no_wait: false,
            arguments: FieldTable::new(),
        }),
        "queue.declare-ok",
    )
    .await;
    c.ok(
        1,
        Method::ExchangeDeclare(ExchangeDeclare {
            exchange: "adx".into(),
            kind: "fanout".into(),
            passive: false,
            durable: false,
            auto_delete: true,
            internal: false,
            no_wait: false,
            arguments: FieldTable::new(),
        }),
        "exchange.declare-ok",
    )
    .await;
    c.ok(1, queue_bind("ad", "adx", ""), "queue.bind-ok").await;
    c.consume(1, "ad", "c", true).await;
    c.ok(
        1,
        Method::BasicCancel(BasicCancel {
            consumer_tag: "c".into(),
            no_wait: false,
        }),
        "basic.cancel-ok",
    )
    .await;
    // The queue went with its last consumer (before cancel-ok), and the exchange with its
    // last binding.
    let close = c
        .fails(
            1,
            Method::QueueDeclare(QueueDeclare {
                queue: "ad".into(),
                passive: true,
                durable: false,
                exclusive: false,
                auto_delete: false,
                no_wait: false,
                arguments: FieldTable::new(),
            }),
        )
        .await;
    assert_eq!(close.code, 404);
    c.open_channel(2).await;
    let close = c
        .fails(
            2,
            Method::ExchangeDeclare(ExchangeDeclare {
                exchange: "adx".into(),
                kind: "fanout".into(),
                passive: true,
                durable: false,
                auto_delete: false,
                internal: false,
                no_wait: false,
                arguments: FieldTable::new(),
            }),
        )
        .await;
    assert_eq!(close.text, "NOT_FOUND - no exchange 'adx' in vhost '/'");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let server = start_server(|_| {}).await;
    let mut notified =
        RawClient::open_caps(server.addr, "messaging_queues/cancel_notify", true).await;
    let mut silent = RawClient::open_caps(server.addr, "messaging_queues/no_notify", false).await;
    notified.open_channel(1).await;
    silent.open_channel(1).await;
    notified.declare_queue(1, "q").await;
    notified.consume(1, "q", "n", true).await;
    silent.consume(1, "q", "s", true).await;
    let mut admin = RawClient::open(server.addr, "messaging_queues/admin", 0).await;
    admin.open_channel(1).await;
    admin
        .ok(
            1,
            Method::QueueDelete(QueueDelete {
                queue: "q".into(),
                if_unused: false,
                if_empty: false,
                no_wait: false,
            }),
            "queue.delete-ok",
        )
        .await;
    let (_, m) = notified.expect_method("basic.cancel").await;
    let Method::BasicCancel(cancel) = m else {
        unreachable!()
    };
    assert_eq!(cancel.consumer_tag.as_str(), "n");
    silent.expect_quiet(QUIET).await;
    // The tag is free again on the notified channel.
    notified.declare_queue(1, "q").await;
    notified.consume(1, "q", "n", true).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn exclusive_consumer() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/exclusive_consumer", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    c.ok(
        1,
        Method::BasicConsume(BasicConsume {
            queue: "q".into(),
            consumer_tag: "only".into(),
            no_local: false,
            no_ack: true,
            exclusive: true,
            no_wait: false,
            arguments: FieldTable::new(),
        }),
        "basic.consume-ok",
    )
    .await;
    c.open_channel(2).await;
    let close = c.fails(2, consume("q", "second", true)).await;
    assert_eq!(
        close,
        Close::new(
            403,
            "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use",
            60,
            20
        )
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn large_bodies_are_split_at_frame_max() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/frame_max", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    let body: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    c.publish(1, "", "q", &body).await;
    c.send_method(1, &get("q", true)).await;
    let got = c.next_content().await;
    assert_eq!(&got.body[..], &body[..]);
    assert_eq!(got.body_frames, 3);
    server.handle.shutdown().await;
}

/// Whatever the queue sent a consumer before it was cancelled arrives before cancel-ok; nothing
/// after it, and nothing is lost.
#[tokio::test]
async fn cancel_ok_follows_the_deliveries_already_made() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_queues/cancel_race", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    const N: u32 = 2_000;
    for _ in 0..N {
        c.publish(1, "", "q", b"x").await;
    }
    c.consume(1, "q", "c", true).await;
    c.send_method(
        1,
        &Method::BasicCancel(BasicCancel {
            consumer_tag: "c".into(),
            no_wait: false,
        }),
    )
    .await;
    let mut delivered = 0;
    loop {
        let (_, m) = c.next_method().await;
        match m {
            Method::BasicCancelOk(_) => break,
            Method::BasicDeliver(_) => {
                let Some(Frame::Header { .. }) = c.next_frame().await else {
                    panic!()
                };
                let Some(Frame::Body { .. }) = c.next_frame().await else {
                    panic!()
                };
                delivered += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    c.expect_quiet(QUIET).await;
    let left = c.declare_queue(1, "q").await.message_count;
    assert_eq!(delivered + left, N, "delivered {delivered}, left {left}");
    server.handle.shutdown().await;
}

/// Consumer a (prefetch 3) holds m1..m3 unacknowledged while b waits on the same queue with
/// nothing to do. However a's channel goes (channel.close, connection.close or a dropped
/// socket), b gets m1, m2, m3 redelivered, in order, then m4 published afterwards; with gaps
/// (a acked m2 and m4 of m1..m5) b gets m1, m3, m5. RabbitMQ 3.10.8 gave exactly these.
#[tokio::test]
async fn a_waiting_consumer_gets_what_a_gone_channel_held_in_order() {
    let server = start_server(|_| {}).await;
    let mut admin = RawClient::open(server.addr, "messaging_queues/gone_order/admin", 0).await;
    admin.open_channel(1).await;
    for how in ["channel.close", "connection.close", "tcp drop"] {
        for gaps in [false, true] {
            let q = format!("gone-order-{how}-{gaps}");
            admin.declare_queue(1, &q).await;
            let name = format!("messaging_queues/gone_order/{how}");
            let mut a = RawClient::open(server.addr, &name, 0).await;
            a.open_channel(1).await;
            a.ok(1, qos(if gaps { 0 } else { 3 }, false), "basic.qos-ok")
                .await;
            a.consume(1, &q, "a", false).await;
            let published = if gaps { 5 } else { 3 };
            for i in 1..=published {
                admin.publish(1, "", &q, format!("m{i}").as_bytes()).await;
            }
            for i in 1..=published {
                let (_, tag, _, body) = a.next_delivery().await;
                assert_eq!(&body[..], format!("m{i}").as_bytes());
                if gaps && i % 2 == 0 {
                    a.send_method(1, &ack(tag, false)).await;
                }
            }
            let mut b = RawClient::open(server.addr, &name, 0).await;
            b.open_channel(1).await;
            b.ok(1, qos(10, false), "basic.qos-ok").await;
            b.consume(1, &q, "b", false).await;
            b.expect_quiet(Duration::from_millis(100)).await;
            let bye = ChannelClose {
                reply_code: 200,
                reply_text: "bye".into(),
                class_id: 0,
                method_id: 0,
            };
            match how {
                "channel.close" => {
                    a.ok(1, Method::ChannelClose(bye), "channel.close-ok").await;
                }
                "connection.close" => {
                    let bye = ConnectionClose {
                        reply_code: bye.reply_code,
                        reply_text: bye.reply_text,
                        class_id: 0,
                        method_id: 0,
                    };
                    a.ok(0, Method::ConnectionClose(bye), "connection.close-ok")
                        .await;
                }
                _ => drop(a),
            }
            admin.publish(1, "", &q, b"after").await;
            let want: &[&str] = if gaps {
                &["m1", "m3", "m5", "after"]
            } else {
                &["m1", "m2", "m3", "after"]
            };
            for body in want {
                let (_, _, redelivered, got) = b.next_delivery().await;
                assert_eq!(
                    (&got[..], redelivered),
                    (body.as_bytes(), *body != "after"),
                    "{how}, gaps {gaps}"
                );
            }
            b.expect_quiet(QUIET).await;
        }
    }
    server.handle.shutdown().await;
}
