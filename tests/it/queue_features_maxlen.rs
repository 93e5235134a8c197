//! Length limits on ready messages: `x-max-length`, `x-max-length-bytes`, and `x-overflow`
//! drop-head (dead-letters with reason `maxlen`), reject-publish (publisher nack, the other
//! queues still take the message), reject-publish-dlx (nack and dead-letter).

use std::time::Duration;

use crate::common::*;
use warren::protocol::*;

async fn settle_time() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

/// The confirm for the next publish: true for ack, false for nack.
async fn confirm(c: &mut RawClient, tag: u64) -> bool {
    let (_, method) = c.next_method().await;
    match method {
        Method::BasicAck(a) => {
            assert_eq!(a.delivery_tag, tag);
            true
        }
        Method::BasicNack(n) => {
            assert_eq!((n.delivery_tag, n.multiple, n.requeue), (tag, false, false));
            false
        }
        other => panic!("expected a confirm, got {other:?}"),
    }
}

fn death_reason(h: &FieldTable) -> (FieldValue, FieldValue) {
    let Some(FieldValue::Array(deaths)) = h.get("x-death") else {
        panic!("no x-death")
    };
    let FieldValue::Table(t) = &deaths[0] else {
        panic!("not a table")
    };
    (
        t.get("reason").cloned().unwrap(),
        t.get("count").cloned().unwrap(),
    )
}

#[tokio::test]
async fn drop_head_dead_letters_the_oldest() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "drophead", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "dlq").await;
    c.ok(
        1,
        declare_with_args(
            "q",
            &[
                ("x-max-length", FieldValue::I32(2)),
                ("x-dead-letter-exchange", longstr("")),
                ("x-dead-letter-routing-key", longstr("dlq")),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
    c.ok(
        1,
        declare_with_args("b", &[("x-max-length-bytes", FieldValue::I32(10))]),
        "queue.declare-ok",
    )
    .await;
    for body in [&b"1"[..], b"2", b"3"] {
        c.publish(1, "", "q", body).await;
    }
    c.publish(1, "", "b", b"aaaaaa").await;
    c.publish(1, "", "b", b"bbbbbb").await;
    settle_time().await;
    assert_eq!(c.drain(1, "q").await, [b"2".to_vec(), b"3".to_vec()]);
    assert_eq!(c.drain(1, "b").await, [b"bbbbbb".to_vec()]);
    c.consume(1, "dlq", "d", true).await;
    let content = c.next_content().await;
    assert_eq!(&content.body[..], b"1");
    let h = content.properties.headers.unwrap();
    assert_eq!(death_reason(&h), (longstr("maxlen"), FieldValue::I64(1)));
    assert_eq!(h.get("x-first-death-queue"), Some(&longstr("q")));
}

#[tokio::test]
async fn reject_publish_nacks_and_other_queues_still_take_it() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "reject", 0).await;
    c.open_channel(1).await;
    c.ok(
        1,
        declare_with_args(
            "r",
            &[
                ("x-max-length", FieldValue::I32(1)),
                ("x-overflow", longstr("reject-publish")),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
    c.declare_queue(1, "other").await;
    c.ok(1, queue_bind("r", "amq.fanout", ""), "queue.bind-ok")
        .await;
    c.ok(1, queue_bind("other", "amq.fanout", ""), "queue.bind-ok")
        .await;
    c.confirm_select(1).await;
    c.publish(1, "amq.fanout", "", b"first").await;
    assert!(confirm(&mut c, 1).await);
    c.publish(1, "amq.fanout", "", b"second").await;
    assert!(!confirm(&mut c, 2).await);
    // Unacknowledged messages do not count: once "first" is delivered, there is room.
    c.send_method(1, &get("r", false)).await;
    c.expect_method("basic.get-ok").await;
    c.next_frame().await;
    c.next_frame().await;
    settle_time().await;
    c.publish(1, "amq.fanout", "", b"third").await;
    assert!(confirm(&mut c, 3).await);
    assert_eq!(c.drain(1, "r").await, [b"third".to_vec()]);
    assert_eq!(
        c.drain(1, "other").await,
        [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );
}

#[tokio::test]
async fn reject_publish_dlx_nacks_and_dead_letters() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "rejectdlx", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "dlq").await;
    c.ok(
        1,
        declare_with_args(
            "r",
            &[
                ("x-max-length", FieldValue::I32(1)),
                ("x-overflow", longstr("reject-publish-dlx")),
                ("x-dead-letter-exchange", longstr("")),
                ("x-dead-letter-routing-key", longstr("dlq")),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
    c.confirm_select(1).await;
    c.publish(1, "", "r", b"kept").await;
    assert!(confirm(&mut c, 1).await);
    c.publish(1, "", "r", b"refused").await;
    assert!(!confirm(&mut c, 2).await);
    settle_time().await;
    assert_eq!(c.drain(1, "r").await, [b"kept".to_vec()]);
    c.consume(1, "dlq", "d", true).await;
    let content = c.next_content().await;
    assert_eq!(&content.body[..], b"refused");
    let h = content.properties.headers.unwrap();
    assert_eq!(death_reason(&h), (longstr("maxlen"), FieldValue::I64(1)));
}
