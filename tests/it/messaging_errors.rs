//! Every messaging mistake gets RabbitMQ's reply code, text and method ids. The expected texts
//! were recorded from RabbitMQ 3.10.8 with the same frames (see `docs/compatibility.md` for the
//! few deliberate differences).

use crate::common::*;
use bytes::BytesMut;
use warren::protocol::*;

const LOCKED: &str = "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'excl' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.";

fn declare_x(name: &str, kind: &str, passive: bool, durable: bool, internal: bool) -> Method {
    Method::ExchangeDeclare(ExchangeDeclare {
        exchange: name.into(),
        kind: kind.into(),
        passive,
        durable,
        auto_delete: false,
        internal,
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

fn delete_x(name: &str, if_unused: bool) -> Method {
    Method::ExchangeDelete(ExchangeDelete {
        exchange: name.into(),
        if_unused,
        no_wait: false,
    })
}

fn declare_q(name: &str, passive: bool, durable: bool, exclusive: bool) -> Method {
    Method::QueueDeclare(QueueDeclare {
        queue: name.into(),
        passive,
        durable,
        exclusive,
        auto_delete: false,
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

fn delete_q(name: &str, if_unused: bool, if_empty: bool) -> Method {
    Method::QueueDelete(QueueDelete {
        queue: name.into(),
        if_unused,
        if_empty,
        no_wait: false,
    })
}

/// Reply code, text, class id, method id.
type Expected<'a> = (u16, &'a str, u16, u16);

/// Opens `channel`, sends `method`, expects the channel closed with exactly this error.
async fn channel_error(c: &mut RawClient, channel: u16, method: Method, expected: Expected<'_>) {
    c.open_channel(channel).await;
    let close = c.fails(channel, method).await;
    assert_eq!(
        close,
        Close::new(expected.0, expected.1, expected.2, expected.3)
    );
}

#[tokio::test]
async fn exchange_errors() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_errors/exchange", 0).await;
    c.open_channel(1).await;
    c.ok(
        1,
        declare_x("x", "direct", false, false, false),
        "exchange.declare-ok",
    )
    .await;
    // Redeclaring a standard exchange with its own properties is fine.
    c.ok(
        1,
        declare_x("amq.direct", "direct", false, true, false),
        "exchange.declare-ok",
    )
    .await;
    // (A passive declare of the default exchange is 403: tests/messaging_compat.rs.)
    c.ok(1, delete_x("never-was", false), "exchange.delete-ok")
        .await;
    let cases: Vec<(Method, Expected)> = vec![
        (
            declare_x("x", "direct", false, true, false),
            (406, "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'x' in vhost '/': received 'true' but current is 'false'", 40, 10),
        ),
        (
            declare_x("x", "fanout", false, false, false),
            (406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': received 'fanout' but current is 'direct'", 40, 10),
        ),
        (
            declare_x("x", "direct", false, false, true),
            (406, "PRECONDITION_FAILED - inequivalent arg 'internal' for exchange 'x' in vhost '/': received 'true' but current is 'false'", 40, 10),
        ),
        (
            declare_x("amq.foo", "direct", false, false, false),
            (403, "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'", 40, 10),
        ),
        (
            declare_x("", "direct", false, false, false),
            (403, "ACCESS_REFUSED - operation not permitted on the default exchange", 40, 10),
        ),
        (
            declare_x("nope", "direct", true, false, false),
            (404, "NOT_FOUND - no exchange 'nope' in vhost '/'", 40, 10),
        ),
        (
            declare_x("y", "foo", false, false, false),
            (406, "PRECONDITION_FAILED - invalid exchange type 'foo'", 40, 10),
        ),
        (
            delete_x("amq.direct", false),
            (403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed", 40, 20),
        ),
        (
            delete_x("", false),
            (403, "ACCESS_REFUSED - operation not permitted on the default exchange", 40, 20),
        ),
        (
            queue_bind("q", "", "k"),
            (403, "ACCESS_REFUSED - operation not permitted on the default exchange", 50, 20),
        ),
        (
            queue_bind("nope", "nope-x", "k"),
            (404, "NOT_FOUND - no exchange 'nope-x' in vhost '/'", 50, 20),
        ),
        (
            queue_bind("nope", "amq.direct", "k"),
            (404, "NOT_FOUND - no queue 'nope' in vhost '/'", 50, 20),
        ),
    ];
    for (i, (method, expected)) in cases.into_iter().enumerate() {
        channel_error(&mut c, 2 + i as u16, method, expected).await;
    }
    // x-alternate-exchange is compared on redeclaration, the way RabbitMQ prints it.
    let mut args = FieldTable::new();
    args.insert("alternate-exchange", FieldValue::LongStr("ae".into()));
    let Method::ExchangeDeclare(mut with_ae) = declare_x("x", "direct", false, false, false) else {
        unreachable!()
    };
    with_ae.arguments = args;
    channel_error(
        &mut c,
        30,
        Method::ExchangeDeclare(with_ae),
        (406, "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'x' in vhost '/': received the value 'ae' of type 'longstr' but current is none", 40, 10),
    )
    .await;
    // In use: if-unused refuses while a binding exists.
    c.open_channel(31).await;
    c.declare_queue(31, "bound").await;
    c.ok(31, queue_bind("bound", "x", "k"), "queue.bind-ok")
        .await;
    let close = c.fails(31, delete_x("x", true)).await;
    assert_eq!(
        close,
        Close::new(
            406,
            "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use",
            40,
            20
        )
    );
    c.ping(1).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn queue_errors() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_errors/queue", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    let mut max_len = FieldTable::new();
    max_len.insert("x-max-length", FieldValue::I32(10));
    let Method::QueueDeclare(mut with_args) = declare_q("q", false, false, false) else {
        unreachable!()
    };
    with_args.arguments = max_len;
    let cases: Vec<(Method, Expected)> = vec![
        (
            declare_q("q", false, true, false),
            (406, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current is 'false'", 50, 10),
        ),
        (
            Method::QueueDeclare(with_args),
            (406, "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received the value '10' of type 'signedint' but current is none", 50, 10),
        ),
        (
            declare_q("amq.foo", false, false, false),
            (403, "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'", 50, 10),
        ),
        (
            declare_q("nope", true, false, false),
            (404, "NOT_FOUND - no queue 'nope' in vhost '/'", 50, 10),
        ),
        (
            consume("", "", false),
            (404, "NOT_FOUND - no previously declared queue", 60, 20),
        ),
        (
            delete_q("", false, false),
            (404, "NOT_FOUND - no previously declared queue", 50, 40),
        ),
        (
            ack(5, false),
            (406, "PRECONDITION_FAILED - unknown delivery tag 5", 60, 80),
        ),
        (
            Method::TxCommit(TxCommit),
            (406, "PRECONDITION_FAILED - channel is not transactional", 90, 20),
        ),
        (
            Method::TxRollback(TxRollback),
            (406, "PRECONDITION_FAILED - channel is not transactional", 90, 30),
        ),
        (
            consume("amq.rabbitmq.reply-to", "", false),
            (406, "PRECONDITION_FAILED - reply consumer cannot acknowledge", 60, 20),
        ),
    ];
    for (i, (method, expected)) in cases.into_iter().enumerate() {
        channel_error(&mut c, 2 + i as u16, method, expected).await;
    }
    // Deleting a missing queue is fine.
    c.ok(1, delete_q("never-was", false, false), "queue.delete-ok")
        .await;
    // if-empty and if-unused.
    c.publish(1, "", "q", b"x").await;
    let close = c.fails(1, delete_q("q", false, true)).await;
    assert_eq!(
        close,
        Close::new(
            406,
            "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty",
            50,
            40
        )
    );
    c.open_channel(20).await;
    c.consume(20, "q", "busy", false).await;
    c.next_delivery().await;
    c.open_channel(21).await;
    let close = c.fails(21, delete_q("q", true, false)).await;
    assert_eq!(
        close,
        Close::new(
            406,
            "PRECONDITION_FAILED - queue 'q' in vhost '/' in use",
            50,
            40
        )
    );
    // Tag reuse on a channel is a connection error.
    c.send_method(20, &consume("q", "busy", false)).await;
    assert_eq!(
        c.expect_close().await,
        Close::new(
            530,
            "NOT_ALLOWED - attempt to reuse consumer tag 'busy'",
            60,
            20
        )
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn exclusive_queues_are_locked_to_their_connection() {
    let server = start_server(|_| {}).await;
    let mut owner = RawClient::open(server.addr, "messaging_errors/excl_owner", 0).await;
    owner.open_channel(1).await;
    owner
        .ok(1, declare_q("excl", false, false, true), "queue.declare-ok")
        .await;
    let mut other = RawClient::open(server.addr, "messaging_errors/excl_other", 0).await;
    for (i, (method, class_id, method_id)) in [
        (declare_q("excl", false, false, false), 50, 10),
        (declare_q("excl", true, false, false), 50, 10),
        (consume("excl", "", false), 60, 20),
        (get("excl", false), 60, 70),
        (delete_q("excl", false, false), 50, 40),
        (queue_bind("excl", "amq.fanout", ""), 50, 20),
    ]
    .into_iter()
    .enumerate()
    {
        channel_error(
            &mut other,
            1 + i as u16,
            method,
            (405, LOCKED, class_id, method_id),
        )
        .await;
    }
    // The owner redeclaring it without `exclusive` is refused too (strict, like RabbitMQ).
    let close = owner.fails(1, declare_q("excl", false, false, false)).await;
    assert_eq!(close, Close::new(405, LOCKED, 50, 10));
    // It goes with its connection.
    owner
        .send_method(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: 200,
                reply_text: "bye".into(),
                class_id: 0,
                method_id: 0,
            }),
        )
        .await;
    owner.expect_method("connection.close-ok").await;
    other.open_channel(10).await;
    other.declare_queue(10, "excl").await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn basic_and_mode_errors() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_errors/basic", 0).await;
    c.open_channel(1).await;
    c.ok(
        1,
        declare_x("internal", "fanout", false, false, true),
        "exchange.declare-ok",
    )
    .await;
    c.confirm_select(1).await;
    mode_switch_errors(&mut c).await;
    publish_errors(&mut c).await;
    reply_to_and_binding_errors(&mut c).await;
    c.open_channel(7).await;
    c.ping(7).await;
    server.handle.shutdown().await;
}

/// Channel 1 is in confirm mode: tx.select fails there; channel 2 goes the other way.
async fn mode_switch_errors(c: &mut RawClient) {
    let close = c.fails(1, Method::TxSelect(TxSelect)).await;
    assert_eq!(
        close,
        Close::new(
            406,
            "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
            90,
            10
        )
    );
    c.open_channel(2).await;
    c.ok(2, Method::TxSelect(TxSelect), "tx.select-ok").await;
    let close = c
        .fails(2, Method::ConfirmSelect(ConfirmSelect { nowait: false }))
        .await;
    assert_eq!(
        close,
        Close::new(
            406,
            "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
            85,
            10
        )
    );
}

/// Channels 3 to 6: publishes RabbitMQ refuses (the `internal` exchange exists).
async fn publish_errors(c: &mut RawClient) {
    c.open_channel(3).await;
    c.publish(3, "nope", "k", b"x").await;
    assert_eq!(
        c.expect_channel_close(3).await,
        Close::new(404, "NOT_FOUND - no exchange 'nope' in vhost '/'", 60, 40)
    );
    c.open_channel(4).await;
    c.publish(4, "internal", "k", b"x").await;
    assert_eq!(
        c.expect_channel_close(4).await,
        Close::new(
            403,
            "ACCESS_REFUSED - cannot publish to internal exchange 'internal' in vhost '/'",
            60,
            40
        )
    );
    c.open_channel(5).await;
    let reply_to = BasicProperties {
        reply_to: Some("amq.rabbitmq.reply-to".into()),
        ..BasicProperties::default()
    };
    c.publish_with(5, publish("", "q", false), reply_to, b"x")
        .await;
    assert_eq!(
        c.expect_channel_close(5).await,
        Close::new(
            406,
            "PRECONDITION_FAILED - fast reply consumer does not exist",
            60,
            40
        )
    );
    c.open_channel(6).await;
    let mut headers = FieldTable::new();
    headers.insert("CC", FieldValue::LongStr("x".into()));
    let cc = BasicProperties {
        headers: Some(headers),
        ..BasicProperties::default()
    };
    c.publish_with(6, publish("", "q", false), cc, b"x").await;
    assert_eq!(
        c.expect_channel_close(6).await,
        Close::new(
            406,
            "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"CC\",longstr}",
            60,
            40
        )
    );
}

/// Channels 8 and 9: a second direct reply-to consumer, a bad x-match.
async fn reply_to_and_binding_errors(c: &mut RawClient) {
    c.open_channel(8).await;
    c.consume(8, "amq.rabbitmq.reply-to", "r1", true).await;
    let close = c
        .fails(8, consume("amq.rabbitmq.reply-to", "r2", true))
        .await;
    assert_eq!(
        close,
        Close::new(
            406,
            "PRECONDITION_FAILED - reply consumer already set",
            60,
            20
        )
    );
    c.open_channel(9).await;
    c.declare_queue(9, "h").await;
    let mut bogus = FieldTable::new();
    bogus.insert("x-match", FieldValue::LongStr("bogus".into()));
    let Method::QueueBind(mut bind) = queue_bind("h", "amq.headers", "") else {
        unreachable!()
    };
    bind.arguments = bogus;
    let close = c.fails(9, Method::QueueBind(bind)).await;
    assert_eq!(
        close,
        Close::new(406, "PRECONDITION_FAILED - Invalid x-match field value <<\"bogus\">>; expected all, any, all-with-x, or any-with-x", 50, 20)
    );
}

#[tokio::test]
async fn message_over_max_size_is_refused() {
    let server = start_server(|c| c.max_message_size = 10).await;
    let mut c = RawClient::open(server.addr, "messaging_errors/max_size", 0).await;
    c.open_channel(1).await;
    c.publish(1, "", "q", b"0123456789A").await;
    assert_eq!(
        c.expect_channel_close(1).await,
        Close::new(
            406,
            "PRECONDITION_FAILED - message size 11 is larger than configured max size 10",
            60,
            40
        )
    );
    server.handle.shutdown().await;
}

/// Connection errors: each on its own connection.
#[tokio::test]
async fn connection_errors() {
    let server = start_server(|_| {}).await;
    let publish_method = |immediate| {
        Method::BasicPublish(BasicPublish {
            exchange: "".into(),
            routing_key: "q".into(),
            mandatory: false,
            immediate,
        })
    };
    let mut header_of_class_50 = BytesMut::new();
    encode_method(1, &publish_method(false), &mut header_of_class_50);
    encode_header(
        1,
        &ContentHeader {
            class_id: 50,
            body_size: 1,
            properties: BasicProperties::default(),
        },
        &mut header_of_class_50,
    );
    let mut method_instead_of_header = BytesMut::new();
    encode_method(1, &publish_method(false), &mut method_instead_of_header);
    encode_method(1, &qos(1, false), &mut method_instead_of_header);
    let mut method_instead_of_body = BytesMut::new();
    encode_method(1, &publish_method(false), &mut method_instead_of_body);
    encode_header(
        1,
        &ContentHeader {
            class_id: 60,
            body_size: 5,
            properties: BasicProperties::default(),
        },
        &mut method_instead_of_body,
    );
    encode_method(1, &qos(1, false), &mut method_instead_of_body);
    let cases: Vec<(Vec<u8>, Close)> = vec![
        (
            encoded(1, &publish_method(true)),
            Close::new(540, "NOT_IMPLEMENTED - immediate=true", 60, 40),
        ),
        (
            encoded(
                1,
                &Method::BasicQos(BasicQos {
                    prefetch_size: 10,
                    prefetch_count: 0,
                    global: false,
                }),
            ),
            Close::new(540, "NOT_IMPLEMENTED - prefetch_size!=0 (10)", 60, 10),
        ),
        (
            encoded(1, &Method::BasicRecover(BasicRecover { requeue: false })),
            Close::new(540, "NOT_IMPLEMENTED - requeue=false", 60, 110),
        ),
        (
            header_of_class_50.to_vec(),
            Close::new(505, "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead", 60, 40),
        ),
        (
            method_instead_of_header.to_vec(),
            Close::new(505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead", 60, 40),
        ),
        (
            method_instead_of_body.to_vec(),
            Close::new(505, "UNEXPECTED_FRAME - expected content body, got non content body frame instead", 60, 40),
        ),
        (
            raw_frame(3, 1, b"abc"),
            Close::new(505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0),
        ),
    ];
    for (i, (input, expected)) in cases.into_iter().enumerate() {
        let name = format!("messaging_errors/connection_{i}");
        let mut c = RawClient::open(server.addr, &name, 0).await;
        c.open_channel(1).await;
        c.send_raw(&input).await;
        assert_eq!(c.expect_close().await, expected, "case {i}");
    }
    server.handle.shutdown().await;
}
