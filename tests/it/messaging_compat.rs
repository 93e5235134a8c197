//! Behaviours real clients depend on where Warren used to differ from RabbitMQ (issue 9): an
//! idempotent unbind, the default exchange refused even to a passive declare, the direct
//! reply-to queue visible to the responder, and RabbitMQ's consumer-argument, exclusive-consume,
//! CC and passive-declare answers. Every expectation was recorded from RabbitMQ 3.10.8 with the
//! same calls; `interop/python/rabbitmq_edge_cases.py` runs the same scenario through pika
//! against any broker.

use std::time::Duration;

use crate::common::*;
use warren::protocol::*;

const LOCKED: &str = "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'excl' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.";
const DEFAULT_EXCHANGE: &str = "ACCESS_REFUSED - operation not permitted on the default exchange";

fn queue_unbind(queue: &str, exchange: &str, key: &str) -> Method {
    Method::QueueUnbind(QueueUnbind {
        queue: queue.into(),
        exchange: exchange.into(),
        routing_key: key.into(),
        arguments: FieldTable::new(),
    })
}

fn exchange_unbind(destination: &str, source: &str, key: &str) -> Method {
    Method::ExchangeUnbind(ExchangeUnbind {
        destination: destination.into(),
        source: source.into(),
        routing_key: key.into(),
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

fn passive_exchange(name: &str) -> Method {
    Method::ExchangeDeclare(ExchangeDeclare {
        exchange: name.into(),
        kind: "direct".into(),
        passive: true,
        durable: false,
        auto_delete: false,
        internal: false,
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

fn declare(name: &str, passive: bool) -> Method {
    Method::QueueDeclare(QueueDeclare {
        queue: name.into(),
        passive,
        durable: false,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

fn declare_ok(method: Method) -> QueueDeclareOk {
    let Method::QueueDeclareOk(ok) = method else {
        panic!("expected queue.declare-ok, got {method:?}");
    };
    ok
}

#[tokio::test]
async fn unbind_is_idempotent_like_rabbitmq() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_compat/unbind", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    c.ok(1, exchange_declare("x", "direct"), "exchange.declare-ok")
        .await;
    // A missing queue, a missing exchange, both, or a binding that never was: unbind-ok.
    for (queue, exchange) in [("nope", "x"), ("q", "nox"), ("nope", "nox"), ("q", "x")] {
        c.ok(1, queue_unbind(queue, exchange, "k"), "queue.unbind-ok")
            .await;
    }
    for (dest, source) in [("nox", "x"), ("x", "nox"), ("noy", "nox")] {
        c.ok(1, exchange_unbind(dest, source, "k"), "exchange.unbind-ok")
            .await;
    }
    // The default exchange at either end stays 403.
    let cases = [
        (queue_unbind("q", "", "k"), 50, 50),
        (exchange_unbind("", "x", "k"), 40, 40),
        (exchange_unbind("x", "", "k"), 40, 40),
    ];
    for (i, (method, class_id, method_id)) in cases.into_iter().enumerate() {
        let channel = 2 + i as u16;
        c.open_channel(channel).await;
        let close = c.fails(channel, method).await;
        assert_eq!(
            close,
            Close::new(403, DEFAULT_EXCHANGE, class_id, method_id)
        );
    }
    c.ping(1).await;
    server.handle.shutdown().await;
}

/// The trigger from the field: the consumer of an auto-delete queue cancels, the queue and its
/// auto-delete exchange go, and the application's cleanup then unbinds.
#[tokio::test]
async fn cleanup_unbind_after_auto_delete_cascade() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_compat/cascade", 0).await;
    c.open_channel(1).await;
    let auto_queue = Method::QueueDeclare(QueueDeclare {
        queue: "rpc-q".into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: true,
        no_wait: false,
        arguments: FieldTable::new(),
    });
    c.ok(1, auto_queue, "queue.declare-ok").await;
    let auto_exchange = Method::ExchangeDeclare(ExchangeDeclare {
        exchange: "rpc-x".into(),
        kind: "direct".into(),
        passive: false,
        durable: false,
        auto_delete: true,
        internal: false,
        no_wait: false,
        arguments: FieldTable::new(),
    });
    c.ok(1, auto_exchange, "exchange.declare-ok").await;
    c.ok(1, queue_bind("rpc-q", "rpc-x", "k"), "queue.bind-ok")
        .await;
    c.consume(1, "rpc-q", "ctag", true).await;
    c.ok(
        1,
        Method::BasicCancel(BasicCancel {
            consumer_tag: "ctag".into(),
            no_wait: false,
        }),
        "basic.cancel-ok",
    )
    .await;
    c.open_channel(2).await;
    let close = c.fails(2, declare("rpc-q", true)).await;
    assert_eq!(close.code, 404, "the auto-delete queue should be gone");
    c.ok(1, queue_unbind("rpc-q", "rpc-x", "k"), "queue.unbind-ok")
        .await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn unbinding_another_connections_exclusive_queue() {
    let server = start_server(|_| {}).await;
    let mut owner = RawClient::open(server.addr, "messaging_compat/excl_owner", 0).await;
    let mut other = RawClient::open(server.addr, "messaging_compat/excl_other", 0).await;
    owner.open_channel(1).await;
    let exclusive = Method::QueueDeclare(QueueDeclare {
        queue: "excl".into(),
        passive: false,
        durable: false,
        exclusive: true,
        auto_delete: false,
        no_wait: false,
        arguments: FieldTable::new(),
    });
    owner.ok(1, exclusive, "queue.declare-ok").await;
    owner
        .ok(1, queue_bind("excl", "amq.direct", "k"), "queue.bind-ok")
        .await;
    other.open_channel(1).await;
    // No such binding (or no such exchange): nothing to check, unbind-ok.
    other
        .ok(
            1,
            queue_unbind("excl", "amq.direct", "zz"),
            "queue.unbind-ok",
        )
        .await;
    other
        .ok(1, queue_unbind("excl", "nox", "zz"), "queue.unbind-ok")
        .await;
    // Removing the existing binding needs exclusive access: 405, and the binding stays.
    let close = other
        .fails(1, queue_unbind("excl", "amq.direct", "k"))
        .await;
    assert_eq!(close, Close::new(405, LOCKED, 50, 50));
    other.open_channel(2).await;
    other.publish(2, "amq.direct", "k", b"still bound").await;
    owner.open_channel(2).await;
    owner.consume(2, "excl", "c", true).await;
    let (_, _, _, body) = owner.next_delivery().await;
    assert_eq!(&body[..], b"still bound");
    // The owner itself may unbind.
    owner
        .ok(
            1,
            queue_unbind("excl", "amq.direct", "k"),
            "queue.unbind-ok",
        )
        .await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn default_exchange_refuses_even_a_passive_declare() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_compat/default_exchange", 0).await;
    c.open_channel(1).await;
    let close = c.fails(1, passive_exchange("")).await;
    assert_eq!(close, Close::new(403, DEFAULT_EXCHANGE, 40, 10));
    c.open_channel(2).await;
    c.ok(2, passive_exchange("amq.direct"), "exchange.declare-ok")
        .await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn passive_declare_of_the_empty_name_is_not_found() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_compat/passive_empty", 0).await;
    c.open_channel(1).await;
    let close = c.fails(1, declare("", true)).await;
    assert_eq!(
        close,
        Close::new(404, "NOT_FOUND - no queue '' in vhost '/'", 50, 10)
    );
    // Not even after a declare on the channel: queue.declare has no name shortcut.
    c.open_channel(2).await;
    c.declare_queue(2, "q").await;
    let close = c.fails(2, declare("", true)).await;
    assert_eq!(
        close,
        Close::new(404, "NOT_FOUND - no queue '' in vhost '/'", 50, 10)
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn responder_sees_the_direct_reply_to_queue() {
    let server = start_server(|_| {}).await;
    let mut requester = RawClient::open(server.addr, "messaging_compat/reply_requester", 0).await;
    let mut responder = RawClient::open(server.addr, "messaging_compat/reply_responder", 0).await;
    requester.open_channel(1).await;
    responder.open_channel(1).await;
    responder.declare_queue(1, "rpc").await;
    requester
        .consume(1, "amq.rabbitmq.reply-to", "client", true)
        .await;
    let props = BasicProperties {
        reply_to: Some("amq.rabbitmq.reply-to".into()),
        ..BasicProperties::default()
    };
    requester
        .publish_with(1, publish("", "rpc", false), props, b"ping")
        .await;
    responder.consume(1, "rpc", "server", true).await;
    let request = responder.next_content().await;
    let reply_to = request.properties.reply_to.unwrap();
    // Passive or not, from the responder or the requester: one consumer, no messages.
    for passive in [true, false] {
        let ok = declare_ok(
            responder
                .ok(1, declare(reply_to.as_str(), passive), "queue.declare-ok")
                .await,
        );
        assert_eq!(ok.queue.as_str(), reply_to.as_str());
        assert_eq!((ok.message_count, ok.consumer_count), (0, 1));
    }
    let ok = declare_ok(
        requester
            .ok(1, declare(reply_to.as_str(), true), "queue.declare-ok")
            .await,
    );
    assert_eq!(ok.consumer_count, 1);
    let ok = declare_ok(
        responder
            .ok(
                1,
                declare("amq.rabbitmq.reply-to", true),
                "queue.declare-ok",
            )
            .await,
    );
    assert_eq!((ok.message_count, ok.consumer_count), (0, 1));
    // An unknown reply name, and the real one once the requester has gone, are 404.
    responder.open_channel(2).await;
    let close = responder
        .fails(2, declare("amq.rabbitmq.reply-to.bogus", true))
        .await;
    assert_eq!(
        close,
        Close::new(
            404,
            "NOT_FOUND - no queue 'amq.rabbitmq.reply-to.bogus' in vhost '/'",
            50,
            10
        )
    );
    drop(requester);
    let gone = format!("NOT_FOUND - no queue '{reply_to}' in vhost '/'");
    let mut closed = None;
    for channel in 3..50 {
        responder.open_channel(channel).await;
        match responder
            .call(channel, declare(reply_to.as_str(), true))
            .await
        {
            Method::QueueDeclareOk(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Method::ChannelClose(close) => {
                responder
                    .send_method(channel, &Method::ChannelCloseOk(ChannelCloseOk))
                    .await;
                closed = Some(close);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let close = closed.expect("the reply queue outlived its requester");
    assert_eq!(
        (close.reply_code, close.reply_text.as_str()),
        (404, gone.as_str())
    );
    server.handle.shutdown().await;
}

fn consume_with(queue: &str, tag: &str, exclusive: bool, args: FieldTable) -> Method {
    Method::BasicConsume(BasicConsume {
        queue: queue.into(),
        consumer_tag: tag.into(),
        no_local: false,
        no_ack: true,
        exclusive,
        no_wait: false,
        arguments: args,
    })
}

#[tokio::test]
async fn consumer_priority_must_be_an_integer() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_compat/x_priority", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    let cases = [
        (longstr("high"), "longstr"),
        (FieldValue::Bool(true), "bool"),
        (FieldValue::F64(1.5), "double"),
    ];
    for (i, (value, type_name)) in cases.into_iter().enumerate() {
        let channel = 2 + i as u16;
        c.open_channel(channel).await;
        let mut args = FieldTable::new();
        args.insert("x-priority", value);
        let close = c.fails(channel, consume_with("q", "c", false, args)).await;
        let text = format!(
            "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'q' in vhost '/': \"expected integer, got {type_name}\""
        );
        assert_eq!(close, Close::new(406, &text, 60, 20));
    }
    // Any integer type is fine; a missing queue is still 404 first.
    for (i, value) in [
        FieldValue::I8(-3),
        FieldValue::U16(7),
        FieldValue::I64(1 << 40),
    ]
    .into_iter()
    .enumerate()
    {
        let mut args = FieldTable::new();
        args.insert("x-priority", value);
        c.ok(
            1,
            consume_with("q", &format!("ok{i}"), false, args),
            "basic.consume-ok",
        )
        .await;
    }
    c.open_channel(9).await;
    let mut args = FieldTable::new();
    args.insert("x-priority", longstr("high"));
    let close = c.fails(9, consume_with("nope", "c", false, args)).await;
    assert_eq!(
        close,
        Close::new(404, "NOT_FOUND - no queue 'nope' in vhost '/'", 60, 20)
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn exclusive_consume_on_a_single_active_consumer_queue_is_refused() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_compat/sac_exclusive", 0).await;
    c.open_channel(1).await;
    c.ok(
        1,
        declare_with_args(
            "sac",
            &[("x-single-active-consumer", FieldValue::Bool(true))],
        ),
        "queue.declare-ok",
    )
    .await;
    // Refused even with no consumer at all, as RabbitMQ does.
    c.open_channel(2).await;
    let close = c
        .fails(2, consume_with("sac", "c", true, FieldTable::new()))
        .await;
    assert_eq!(
        close,
        Close::new(
            403,
            "ACCESS_REFUSED - queue 'sac' in vhost '/' in exclusive use",
            60,
            20
        )
    );
    c.ok(
        1,
        consume_with("sac", "plain", false, FieldTable::new()),
        "basic.consume-ok",
    )
    .await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn cc_elements_that_are_not_strings_are_ignored() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_compat/cc", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    let publish_cc = |name: &'static str, values: Vec<FieldValue>| {
        let mut headers = FieldTable::new();
        headers.insert(name, FieldValue::Array(values));
        BasicProperties {
            headers: Some(headers),
            ..BasicProperties::default()
        }
    };
    // Only non-strings: routed by the routing key alone.
    let props = publish_cc("CC", vec![FieldValue::I32(1), FieldValue::I32(2)]);
    c.publish_with(1, publish("", "q", false), props, b"one")
        .await;
    // A string among them still routes; BCC likewise.
    let props = publish_cc("CC", vec![longstr("q"), FieldValue::I32(5)]);
    c.publish_with(1, publish("", "nothing", false), props, b"two")
        .await;
    let props = publish_cc("BCC", vec![FieldValue::I32(5), longstr("q")]);
    c.publish_with(1, publish("", "nothing", false), props, b"three")
        .await;
    let ok = declare_ok(c.ok(1, declare("q", true), "queue.declare-ok").await);
    assert_eq!(ok.message_count, 3);
    server.handle.shutdown().await;
}
