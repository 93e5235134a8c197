//! `x-delivery-limit` on a classic queue: every return counts (nack/reject requeue, a lost
//! channel); redeliveries carry `x-delivery-count`; past the limit the message is
//! dead-lettered with reason `delivery_limit`.

use crate::common::*;
use bytes::Bytes;
use warren::protocol::*;

fn declare_limited(name: &str, limit: i32) -> Method {
    let mut arguments = FieldTable::new();
    arguments.insert("x-delivery-limit", limit);
    arguments.insert("x-dead-letter-exchange", "");
    arguments.insert("x-dead-letter-routing-key", "dlq");
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

fn nack_requeue(tag: u64) -> Method {
    Method::BasicNack(BasicNack {
        delivery_tag: tag,
        multiple: false,
        requeue: true,
    })
}

async fn dead_reason(c: &mut RawClient) -> (Bytes, FieldValue) {
    let content = c.next_content().await;
    let h = content.properties.headers.unwrap();
    let Some(FieldValue::Array(deaths)) = h.get("x-death") else {
        panic!("no x-death")
    };
    let FieldValue::Table(t) = &deaths[0] else {
        panic!("not a table")
    };
    assert_eq!(t.get("count"), Some(&FieldValue::I64(1)));
    (content.body, t.get("reason").cloned().unwrap())
}

#[tokio::test]
async fn requeues_count_and_the_limit_dead_letters() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "limit", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "dlq").await;
    c.ok(1, declare_limited("work", 2), "queue.declare-ok")
        .await;
    c.publish(1, "", "work", b"poison").await;
    c.consume(1, "work", "w", false).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let content = c.next_content().await;
        let Method::BasicDeliver(d) = &content.method else {
            panic!("expected a delivery")
        };
        let count = content
            .properties
            .headers
            .as_ref()
            .and_then(|h| h.get("x-delivery-count").cloned());
        seen.push((d.redelivered, count));
        c.send_method(1, &nack_requeue(d.delivery_tag)).await;
    }
    assert_eq!(
        seen,
        [
            (false, None),
            (true, Some(FieldValue::I64(1))),
            (true, Some(FieldValue::I64(2))),
        ]
    );
    c.consume(1, "dlq", "d", true).await;
    let (body, reason) = dead_reason(&mut c).await;
    assert_eq!(
        (&body[..], reason),
        (&b"poison"[..], longstr("delivery_limit"))
    );
}

#[tokio::test]
async fn a_lost_channel_counts_as_a_return() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "lost", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "dlq").await;
    c.ok(1, declare_limited("work", 0), "queue.declare-ok")
        .await;
    c.publish(1, "", "work", b"m").await;
    c.open_channel(2).await;
    c.consume(2, "work", "w", false).await;
    let _ = c.next_delivery().await;
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
    c.consume(1, "dlq", "d", true).await;
    let (body, reason) = dead_reason(&mut c).await;
    assert_eq!((&body[..], reason), (&b"m"[..], longstr("delivery_limit")));
}
