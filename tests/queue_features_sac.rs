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
