//! Dead-lettering: reject/nack requeue=false and expiry send a copy through the dead-letter
//! exchange with RabbitMQ 4.x's `x-death` and summary headers; a missing DLX drops it; a fully
//! automatic cycle is dropped, a cycle through a rejection is not.

use std::time::Duration;

use crate::common::*;
use warren::protocol::*;

fn keys(t: &FieldTable) -> Vec<String> {
    t.iter().map(|(k, _)| k.as_str().to_owned()).collect()
}

fn reject(tag: u64) -> Method {
    Method::BasicReject(BasicReject {
        delivery_tag: tag,
        requeue: false,
    })
}

/// Checks one `x-death` entry field by field (`time` only for its type).
fn assert_death(
    entry: &FieldValue,
    expiration: Option<&str>,
    count: i64,
    reason: &str,
    queue: &str,
    rk: &[&str],
) {
    let FieldValue::Table(t) = entry else {
        panic!("x-death entry is not a table: {entry:?}")
    };
    let mut expected = Vec::new();
    if expiration.is_some() {
        expected.push("original-expiration");
    }
    expected.extend([
        "count",
        "reason",
        "queue",
        "time",
        "exchange",
        "routing-keys",
    ]);
    assert_eq!(keys(t), expected);
    if let Some(e) = expiration {
        assert_eq!(t.get("original-expiration"), Some(&longstr(e)));
    }
    assert_eq!(t.get("count"), Some(&FieldValue::I64(count)));
    assert_eq!(t.get("reason"), Some(&longstr(reason)));
    assert_eq!(t.get("queue"), Some(&longstr(queue)));
    assert!(matches!(t.get("time"), Some(FieldValue::Timestamp(_))));
    assert_eq!(t.get("exchange"), Some(&longstr("")));
    assert_eq!(
        t.get("routing-keys"),
        Some(&FieldValue::Array(rk.iter().map(|k| longstr(k)).collect()))
    );
}

#[tokio::test]
async fn a_rejected_message_is_dead_lettered_with_x_death() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "reject", 0).await;
    c.open_channel(1).await;
    c.ok(
        1,
        declare_with_args(
            "src",
            &[
                ("x-dead-letter-exchange", longstr("")),
                ("x-dead-letter-routing-key", longstr("dead")),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
    c.declare_queue(1, "dead").await;
    let mut headers = FieldTable::new();
    headers.insert("b-app", 1);
    headers.insert("a-app", "x");
    let props = BasicProperties {
        headers: Some(headers),
        message_id: Some("m1".into()),
        ..BasicProperties::default()
    };
    c.publish_with(1, publish("", "src", false), props, b"body")
        .await;
    c.consume(1, "src", "c", false).await;
    let (_, tag, _, _) = c.next_delivery().await;
    c.send_method(1, &reject(tag)).await;
    c.consume(1, "dead", "d", true).await;
    let content = c.next_content().await;
    let Method::BasicDeliver(d) = &content.method else {
        panic!("expected a delivery")
    };
    assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("", "dead"));
    assert_eq!(&content.body[..], b"body");
    assert_eq!(
        content.properties.message_id.as_ref().map(|m| m.as_str()),
        Some("m1")
    );
    let h = content.properties.headers.unwrap();
    assert_eq!(
        keys(&h),
        [
            "x-last-death-reason",
            "x-last-death-queue",
            "x-last-death-exchange",
            "x-first-death-reason",
            "x-first-death-queue",
            "x-first-death-exchange",
            "a-app",
            "b-app",
            "x-death",
        ]
    );
    for (k, v) in [
        ("x-last-death-reason", "rejected"),
        ("x-last-death-queue", "src"),
        ("x-last-death-exchange", ""),
        ("x-first-death-reason", "rejected"),
        ("x-first-death-queue", "src"),
        ("x-first-death-exchange", ""),
    ] {
        assert_eq!(h.get(k), Some(&longstr(v)), "{k}");
    }
    let Some(FieldValue::Array(deaths)) = h.get("x-death") else {
        panic!("no x-death array")
    };
    assert_eq!(deaths.len(), 1);
    assert_death(&deaths[0], None, 1, "rejected", "src", &["src"]);
}

#[tokio::test]
async fn an_expired_message_is_dead_lettered_without_its_expiration() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "expired", 0).await;
    c.open_channel(1).await;
    c.ok(
        1,
        declare_with_args("wait", &[("x-dead-letter-exchange", longstr("amq.direct"))]),
        "queue.declare-ok",
    )
    .await;
    c.declare_queue(1, "out").await;
    c.ok(1, queue_bind("out", "amq.direct", "wait"), "queue.bind-ok")
        .await;
    c.consume(1, "out", "o", true).await;
    let props = BasicProperties {
        expiration: Some("007".into()),
        ..BasicProperties::default()
    };
    c.publish_with(1, publish("", "wait", false), props, b"late")
        .await;
    let content = c.next_content().await;
    let Method::BasicDeliver(d) = &content.method else {
        panic!("expected a delivery")
    };
    assert_eq!(
        (d.exchange.as_str(), d.routing_key.as_str()),
        ("amq.direct", "wait")
    );
    assert_eq!(content.properties.expiration, None);
    let h = content.properties.headers.unwrap();
    assert_eq!(h.get("x-first-death-reason"), Some(&longstr("expired")));
    let Some(FieldValue::Array(deaths)) = h.get("x-death") else {
        panic!("no x-death array")
    };
    assert_death(&deaths[0], Some("7"), 1, "expired", "wait", &["wait"]);
}

#[tokio::test]
async fn missing_dlx_drops_and_automatic_cycles_are_dropped() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "drops", 0).await;
    c.open_channel(1).await;
    c.ok(
        1,
        declare_with_args("nodlx", &[("x-dead-letter-exchange", longstr("missing"))]),
        "queue.declare-ok",
    )
    .await;
    // Expires into itself: dropped as a cycle after one death.
    c.ok(
        1,
        declare_with_args(
            "loop",
            &[
                ("x-message-ttl", FieldValue::I32(50)),
                ("x-dead-letter-exchange", longstr("")),
                ("x-dead-letter-routing-key", longstr("loop")),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
    c.publish(1, "", "nodlx", b"x").await;
    c.publish(1, "", "loop", b"y").await;
    c.consume(1, "nodlx", "n", false).await;
    let (_, tag, _, _) = c.next_delivery().await;
    c.send_method(1, &reject(tag)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.send_method(1, &get("loop", true)).await;
    c.expect_method("basic.get-empty").await;
    c.ping(1).await;
}

#[tokio::test]
async fn reject_then_wait_then_retry_counts_deaths() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "retry", 0).await;
    c.open_channel(1).await;
    c.ok(
        1,
        declare_with_args(
            "work",
            &[
                ("x-dead-letter-exchange", longstr("")),
                ("x-dead-letter-routing-key", longstr("retry")),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
    c.ok(
        1,
        declare_with_args(
            "retry",
            &[
                ("x-message-ttl", FieldValue::I32(100)),
                ("x-dead-letter-exchange", longstr("")),
                ("x-dead-letter-routing-key", longstr("work")),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
    c.publish(1, "", "work", b"job").await;
    c.consume(1, "work", "w", false).await;
    let (_, tag, _, _) = c.next_delivery().await;
    c.send_method(1, &reject(tag)).await;
    let (_, tag, redelivered, body) = c.next_delivery().await;
    assert_eq!((redelivered, &body[..]), (false, &b"job"[..]));
    c.send_method(1, &reject(tag)).await;
    let content = c.next_content().await;
    let h = content.properties.headers.unwrap();
    let Some(FieldValue::Array(deaths)) = h.get("x-death") else {
        panic!("no x-death array")
    };
    assert_eq!(deaths.len(), 2);
    // Twice round: rejected by work, expired in retry; the latest death first.
    assert_death(&deaths[0], None, 2, "expired", "retry", &["retry"]);
    assert_death(&deaths[1], None, 2, "rejected", "work", &["work"]);
    assert_eq!(h.get("x-last-death-reason"), Some(&longstr("expired")));
    assert_eq!(h.get("x-last-death-queue"), Some(&longstr("retry")));
    assert_eq!(h.get("x-first-death-reason"), Some(&longstr("rejected")));
}
