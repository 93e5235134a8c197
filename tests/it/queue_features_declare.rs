//! `queue.declare` validates a new queue's arguments and compares a redeclare's, with RabbitMQ
//! 3.10.8's texts (see `docs/queue-arguments.md`); all are 406 channel errors.

use crate::common::*;
use warren::protocol::*;

fn declare(name: &str, durable: bool, auto_delete: bool, args: FieldTable) -> Method {
    Method::QueueDeclare(QueueDeclare {
        queue: name.into(),
        passive: false,
        durable,
        exclusive: false,
        auto_delete,
        no_wait: false,
        arguments: args,
    })
}

fn args(pairs: &[(&str, FieldValue)]) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in pairs {
        t.insert(*k, v.clone());
    }
    t
}

async fn refused(c: &mut RawClient, method: Method, text: &str) {
    c.open_channel(1).await;
    let close = c.fails(1, method).await;
    assert_eq!(close, Close::new(406, text, 50, 10));
}

#[tokio::test]
async fn bad_arguments_are_refused_with_rabbitmq_texts() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "declare", 0).await;
    let cases: Vec<(FieldTable, &str)> = vec![
        (
            args(&[("x-message-ttl", FieldValue::I32(-1))]),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}",
        ),
        (
            args(&[("x-expires", FieldValue::I32(0))]),
            "PRECONDITION_FAILED - invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}",
        ),
        (
            args(&[("x-max-length", "5".into())]),
            "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'q' in vhost '/': \"expected integer, got longstr\"",
        ),
        (
            args(&[("x-overflow", "nope".into())]),
            "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow",
        ),
        (
            args(&[("x-dead-letter-exchange", FieldValue::I32(1))]),
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'",
        ),
        (
            args(&[("x-queue-type", "stream".into())]),
            "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'stream'\"",
        ),
        (
            args(&[("x-max-priority", FieldValue::I32(256))]),
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}",
        ),
    ];
    for (table, text) in cases {
        refused(&mut c, declare("q", false, false, table), text).await;
    }
    // Nothing was created by the refused declares.
    c.open_channel(1).await;
    let Method::QueueDeclareOk(ok) = c
        .ok(
            1,
            declare("q", false, false, FieldTable::new()),
            "queue.declare-ok",
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(ok.message_count, 0);
}

#[tokio::test]
async fn quorum_rules_and_accepted_types() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "quorum", 0).await;
    let quorum = || args(&[("x-queue-type", "quorum".into())]);
    refused(
        &mut c,
        declare("qq", true, true, quorum()),
        "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 'qq' in vhost '/'",
    )
    .await;
    refused(
        &mut c,
        declare("qq", false, false, quorum()),
        "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'qq' in vhost '/'",
    )
    .await;
    refused(
        &mut c,
        declare("", true, false, quorum()),
        "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue",
    )
    .await;
    c.open_channel(1).await;
    c.ok(1, declare("qq", true, false, quorum()), "queue.declare-ok")
        .await;
    let classic = args(&[("x-queue-type", "classic".into())]);
    c.ok(1, declare("cq", false, false, classic), "queue.declare-ok")
        .await;
    // An absent x-queue-type is classic.
    c.ok(
        1,
        declare("cq", false, false, FieldTable::new()),
        "queue.declare-ok",
    )
    .await;
    let close = c
        .fails(1, declare("qq", true, false, FieldTable::new()))
        .await;
    assert_eq!(
        close.text,
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'qq' in vhost '/': received none but current is the value 'quorum' of type 'longstr'"
    );
}

#[tokio::test]
async fn redeclare_is_compared_not_validated() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "redeclare", 0).await;
    c.open_channel(1).await;
    let ttl = |v: FieldValue| args(&[("x-message-ttl", v)]);
    c.ok(
        1,
        declare("q", false, false, ttl(FieldValue::I32(10))),
        "queue.declare-ok",
    )
    .await;
    // Another integer type with the same value is the same argument.
    c.ok(
        1,
        declare("q", false, false, ttl(FieldValue::I64(10))),
        "queue.declare-ok",
    )
    .await;
    // Unknown arguments and x-consumer-timeout are not compared.
    let mut other = ttl(FieldValue::I8(10));
    other.insert("x-whatever", FieldValue::I32(1));
    other.insert("x-consumer-timeout", FieldValue::I32(5000));
    c.ok(1, declare("q", false, false, other), "queue.declare-ok")
        .await;
    let cases: Vec<(Method, &str)> = vec![
        (
            declare("q", false, false, ttl(FieldValue::I32(11))),
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received '11' but current is '10'",
        ),
        (
            declare("q", false, false, FieldTable::new()),
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received none but current is the value '10' of type 'signedint'",
        ),
        (
            // Not validated: -1 would be value_negative on a new queue.
            declare("q", false, false, ttl(FieldValue::I32(-1))),
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received '-1' but current is '10'",
        ),
        (
            declare("q", true, false, ttl(FieldValue::I32(10))),
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current is 'false'",
        ),
        (
            declare("q", false, true, ttl(FieldValue::I32(10))),
            "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'q' in vhost '/': received 'true' but current is 'false'",
        ),
    ];
    for (method, text) in cases {
        let close = c.fails(1, method).await;
        assert_eq!(close, Close::new(406, text, 50, 10));
        c.open_channel(1).await;
    }
}
