//! `x-max-priority`: higher priorities first, FIFO within a level, a missing priority is 0 and
//! one above the maximum is the maximum; a requeued message goes back to its place.

use crate::common::*;
use warren::protocol::*;

fn declare_priority(name: &str, max: i32) -> Method {
    let mut arguments = FieldTable::new();
    arguments.insert("x-max-priority", max);
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

async fn publish_priority(c: &mut RawClient, queue: &str, priority: Option<u8>, body: &[u8]) {
    let props = BasicProperties {
        priority,
        ..BasicProperties::default()
    };
    c.publish_with(1, publish("", queue, false), props, body)
        .await;
}

#[tokio::test]
async fn higher_priorities_first_fifo_within_a_level() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "priority", 0).await;
    c.open_channel(1).await;
    c.ok(1, declare_priority("pq", 5), "queue.declare-ok").await;
    c.declare_queue(1, "plain").await;
    for (priority, body) in [
        (None, &b"none"[..]),
        (Some(3), b"three-a"),
        (Some(9), b"nine"),
        (Some(3), b"three-b"),
        (Some(5), b"five"),
        (Some(1), b"one"),
    ] {
        publish_priority(&mut c, "pq", priority, body).await;
        publish_priority(&mut c, "plain", priority, body).await;
    }
    // Declare-ok after the publishes: they are all in the queue before consuming starts.
    c.ok(1, declare_priority("pq", 5), "queue.declare-ok").await;
    c.ok(1, qos(1, false), "basic.qos-ok").await;
    c.consume(1, "pq", "c", false).await;
    let (_, tag, redelivered, body) = c.next_delivery().await;
    assert_eq!((&body[..], redelivered), (&b"nine"[..], false));
    // Requeued: back in front of its level (priority 5, before "five").
    c.send_method(
        1,
        &Method::BasicNack(BasicNack {
            delivery_tag: tag,
            multiple: false,
            requeue: true,
        }),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..6 {
        let (_, tag, redelivered, body) = c.next_delivery().await;
        got.push((String::from_utf8(body.to_vec()).unwrap(), redelivered));
        c.send_method(1, &ack(tag, false)).await;
    }
    let expected = [
        ("nine", true),
        ("five", false),
        ("three-a", false),
        ("three-b", false),
        ("one", false),
        ("none", false),
    ];
    assert_eq!(
        got,
        expected
            .iter()
            .map(|(b, r)| (b.to_string(), *r))
            .collect::<Vec<_>>()
    );
    // A queue without x-max-priority ignores the property: FIFO.
    c.consume(1, "plain", "p", true).await;
    let mut plain = Vec::new();
    for _ in 0..6 {
        plain.push(c.next_delivery().await.3.to_vec());
    }
    assert_eq!(
        plain,
        [
            &b"none"[..],
            b"three-a",
            b"nine",
            b"three-b",
            b"five",
            b"one"
        ]
    );
}
