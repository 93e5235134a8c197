//! `x-expires`: a queue unused (no consumers, no get, no declare) for that long is deleted,
//! without dead-lettering its messages.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use warren::protocol::*;

fn declare(name: &str, passive: bool, pairs: &[(&str, FieldValue)]) -> Method {
    let mut arguments = FieldTable::new();
    for (k, v) in pairs {
        arguments.insert(*k, v.clone());
    }
    Method::QueueDeclare(QueueDeclare {
        queue: name.into(),
        passive,
        durable: false,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments,
    })
}

fn expiring(name: &str) -> Method {
    declare(name, false, &[("x-expires", FieldValue::I32(200))])
}

/// Whether the queue exists, by a passive declare on channel 1 (reopened after a 404).
async fn exists(c: &mut RawClient, name: &str) -> bool {
    c.send_method(1, &declare(name, true, &[])).await;
    let (_, method) = c.next_method().await;
    match method {
        Method::QueueDeclareOk(_) => true,
        Method::ChannelClose(close) => {
            assert_eq!(
                close.reply_text.as_str(),
                format!("NOT_FOUND - no queue '{name}' in vhost '/'")
            );
            c.send_method(1, &Method::ChannelCloseOk(ChannelCloseOk))
                .await;
            c.open_channel(1).await;
            false
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn sleep(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test]
async fn an_unused_queue_expires_without_dead_lettering() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "expires", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "dlq").await;
    let dlx = FieldValue::LongStr(Bytes::from_static(b""));
    let dlrk = FieldValue::LongStr(Bytes::from_static(b"dlq"));
    c.ok(
        1,
        declare(
            "q",
            false,
            &[
                ("x-expires", FieldValue::I32(200)),
                ("x-dead-letter-exchange", dlx),
                ("x-dead-letter-routing-key", dlrk),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
    // Publishing is not a use.
    c.publish(1, "", "q", b"m").await;
    sleep(100).await;
    c.publish(1, "", "q", b"m").await;
    sleep(400).await;
    c.send_method(1, &get("q", true)).await;
    let close = c.expect_channel_close(1).await;
    assert_eq!(
        close,
        Close::new(404, "NOT_FOUND - no queue 'q' in vhost '/'", 60, 70)
    );
    c.open_channel(1).await;
    c.send_method(1, &get("dlq", true)).await;
    c.expect_method("basic.get-empty").await;
}

#[tokio::test]
async fn consumers_gets_and_redeclares_keep_a_queue() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "uses", 0).await;
    c.open_channel(1).await;
    c.ok(1, expiring("redeclared"), "queue.declare-ok").await;
    c.ok(1, expiring("got"), "queue.declare-ok").await;
    c.ok(1, expiring("consumed"), "queue.declare-ok").await;
    c.consume(1, "consumed", "c", true).await;
    for _ in 0..4 {
        sleep(100).await;
        c.ok(1, expiring("redeclared"), "queue.declare-ok").await;
        c.send_method(1, &get("got", true)).await;
        c.expect_method("basic.get-empty").await;
    }
    assert!(exists(&mut c, "redeclared").await);
    assert!(exists(&mut c, "got").await);
    assert!(exists(&mut c, "consumed").await);
    // Once the consumer is gone, the clock starts.
    c.ok(
        1,
        Method::BasicCancel(BasicCancel {
            consumer_tag: "c".into(),
            no_wait: false,
        }),
        "basic.cancel-ok",
    )
    .await;
    sleep(500).await;
    assert!(!exists(&mut c, "consumed").await);
    assert!(!exists(&mut c, "got").await);
}
