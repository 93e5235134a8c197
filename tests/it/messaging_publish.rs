//! Publishing end to end: routing through every exchange type, exchange-to-exchange bindings
//! (with a cycle), alternate exchanges, CC/BCC, mandatory returns, confirms, transactions,
//! direct reply-to and flow control; plus a whole publish/consume life through amqprs.

use std::time::Duration;

use crate::common::*;
use warren::protocol::*;

const QUIET: Duration = Duration::from_millis(300);

fn exchange_bind(destination: &str, source: &str, key: &str) -> Method {
    Method::ExchangeBind(ExchangeBind {
        destination: destination.into(),
        source: source.into(),
        routing_key: key.into(),
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

fn with_args(method: Method, args: FieldTable) -> Method {
    match method {
        Method::ExchangeDeclare(mut m) => {
            m.arguments = args;
            Method::ExchangeDeclare(m)
        }
        Method::QueueBind(mut m) => {
            m.arguments = args;
            Method::QueueBind(m)
        }
        other => other,
    }
}

#[tokio::test]
async fn routing_through_types_e2e_bindings_and_alternate_exchanges() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_publish/routing", 0).await;
    c.open_channel(1).await;
    declare_routing_topology(&mut c).await;
    publish_through_each_route(&mut c).await;

    assert_eq!(
        c.drain(1, "t").await,
        [b"topic".to_vec(), b"sender-selected".to_vec()]
    );
    assert_eq!(c.drain(1, "h").await, [b"headers".to_vec()]);
    assert_eq!(c.drain(1, "e2e").await, [b"e2e".to_vec()]);
    assert_eq!(c.drain(1, "ae").await, [b"alternate".to_vec()]);
    c.send_method(1, &get("bcc", true)).await;
    let got = c.next_content().await;
    let headers = got.properties.headers.unwrap();
    assert!(headers.get("BCC").is_none());
    assert!(headers.get("CC").is_some());
    assert_eq!(c.drain(1, "cc").await, [b"sender-selected".to_vec()]);
    // Unbinding stops the flow.
    c.ok(
        1,
        Method::ExchangeUnbind(ExchangeUnbind {
            destination: "x2".into(),
            source: "x1".into(),
            routing_key: "".into(),
            no_wait: false,
            arguments: FieldTable::new(),
        }),
        "exchange.unbind-ok",
    )
    .await;
    c.publish(1, "x1", "", b"e2e").await;
    assert!(c.drain(1, "e2e").await.is_empty());
    server.handle.shutdown().await;
}

/// Queues t, h, e2e, ae, cc and bcc; a topic and a headers binding, a cycle of exchange-to-exchange
/// bindings x1 <-> x2 to e2e, and an alternate exchange chain main -> ae1 -> ae2 to ae.
async fn declare_routing_topology(c: &mut RawClient) {
    for q in ["t", "h", "e2e", "ae", "cc", "bcc"] {
        c.declare_queue(1, q).await;
    }
    c.ok(1, queue_bind("t", "amq.topic", "a.*.c"), "queue.bind-ok")
        .await;
    let mut match_any = FieldTable::new();
    match_any.insert("x-match", FieldValue::LongStr("any".into()));
    match_any.insert("k", FieldValue::LongStr("v".into()));
    c.ok(
        1,
        with_args(queue_bind("h", "amq.headers", ""), match_any),
        "queue.bind-ok",
    )
    .await;
    // A cycle of exchange-to-exchange bindings still delivers once.
    c.ok(1, exchange_declare("x1", "fanout"), "exchange.declare-ok")
        .await;
    c.ok(1, exchange_declare("x2", "fanout"), "exchange.declare-ok")
        .await;
    c.ok(1, exchange_bind("x2", "x1", ""), "exchange.bind-ok")
        .await;
    c.ok(1, exchange_bind("x1", "x2", ""), "exchange.bind-ok")
        .await;
    c.ok(1, queue_bind("e2e", "x2", ""), "queue.bind-ok").await;
    // An alternate exchange chain: main (direct, nothing bound) -> ae1 (direct, nothing) -> ae2.
    let ae = |name: &str| {
        let mut t = FieldTable::new();
        t.insert(
            "alternate-exchange",
            FieldValue::LongStr(name.to_owned().into()),
        );
        t
    };
    c.ok(1, exchange_declare("ae2", "fanout"), "exchange.declare-ok")
        .await;
    c.ok(
        1,
        with_args(exchange_declare("ae1", "direct"), ae("ae2")),
        "exchange.declare-ok",
    )
    .await;
    c.ok(
        1,
        with_args(exchange_declare("main", "direct"), ae("ae1")),
        "exchange.declare-ok",
    )
    .await;
    c.ok(1, queue_bind("ae", "ae2", ""), "queue.bind-ok").await;
}

/// One message per route of `declare_routing_topology`, and one with CC and BCC headers.
async fn publish_through_each_route(c: &mut RawClient) {
    c.publish(1, "amq.topic", "a.b.c", b"topic").await;
    c.publish(1, "amq.topic", "a.b.d", b"no").await;
    let mut headers = FieldTable::new();
    headers.insert("k", FieldValue::LongStr("v".into()));
    let props = BasicProperties {
        headers: Some(headers),
        ..BasicProperties::default()
    };
    c.publish_with(1, publish("amq.headers", "", false), props, b"headers")
        .await;
    c.publish(1, "x1", "", b"e2e").await;
    c.publish(1, "main", "nothing", b"alternate").await;
    // CC and BCC: routed by them too; BCC is stripped before delivery.
    let mut headers = FieldTable::new();
    headers.insert(
        "CC",
        FieldValue::Array(vec![FieldValue::LongStr("cc".into())]),
    );
    headers.insert(
        "BCC",
        FieldValue::Array(vec![FieldValue::LongStr("bcc".into())]),
    );
    let props = BasicProperties {
        headers: Some(headers),
        ..BasicProperties::default()
    };
    c.publish_with(1, publish("", "t", false), props, b"sender-selected")
        .await;
}

#[tokio::test]
async fn confirms_and_mandatory_returns() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_publish/confirms", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    c.confirm_select(1).await;
    c.publish(1, "", "q", b"routed").await;
    let (_, m) = c.expect_method("basic.ack").await;
    assert_eq!(m, ack(1, false));
    // Unroutable and mandatory: the return, then the ack.
    c.publish_with(
        1,
        publish("", "nowhere", true),
        BasicProperties::default(),
        b"lost",
    )
    .await;
    let ret = c.next_content().await;
    let Method::BasicReturn(r) = ret.method else {
        panic!("{:?}", ret.method)
    };
    assert_eq!((r.reply_code, r.reply_text.as_str()), (312, "NO_ROUTE"));
    assert_eq!(r.routing_key.as_str(), "nowhere");
    assert_eq!(&ret.body[..], b"lost");
    let (_, m) = c.expect_method("basic.ack").await;
    assert_eq!(m, ack(2, false));
    // Unroutable without mandatory: just the ack.
    c.publish(1, "", "nowhere", b"dropped").await;
    let (_, m) = c.expect_method("basic.ack").await;
    assert_eq!(m, ack(3, false));
    // Without confirms nothing comes back for a routed message.
    c.open_channel(2).await;
    c.publish(2, "", "q", b"plain").await;
    c.expect_quiet(QUIET).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn transactions_hold_publishes_and_acks_until_commit() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_publish/tx", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    c.ok(1, Method::TxSelect(TxSelect), "tx.select-ok").await;
    c.publish(1, "", "q", b"1").await;
    c.open_channel(2).await;
    assert_eq!(c.declare_queue(2, "q").await.message_count, 0);
    c.ok(1, Method::TxRollback(TxRollback), "tx.rollback-ok")
        .await;
    c.ok(1, Method::TxCommit(TxCommit), "tx.commit-ok").await;
    assert_eq!(c.declare_queue(2, "q").await.message_count, 0);
    c.publish(1, "", "q", b"2").await;
    c.ok(1, Method::TxCommit(TxCommit), "tx.commit-ok").await;
    assert_eq!(c.declare_queue(2, "q").await.message_count, 1);
    // An ack in a transaction: rolled back, the delivery is still unacked and ackable.
    c.send_method(1, &get("q", false)).await;
    let got = c.next_content().await;
    let Method::BasicGetOk(g) = got.method else {
        panic!()
    };
    c.send_method(1, &ack(g.delivery_tag, false)).await;
    c.ok(1, Method::TxRollback(TxRollback), "tx.rollback-ok")
        .await;
    c.send_method(1, &ack(g.delivery_tag, false)).await;
    c.ok(1, Method::TxCommit(TxCommit), "tx.commit-ok").await;
    // Closing the channel would requeue an unacked message: nothing comes back.
    c.ok(
        1,
        Method::ChannelClose(ChannelClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        }),
        "channel.close-ok",
    )
    .await;
    assert_eq!(c.declare_queue(2, "q").await.message_count, 0);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn direct_reply_to() {
    let server = start_server(|_| {}).await;
    let mut requester = RawClient::open(server.addr, "messaging_publish/reply_requester", 0).await;
    let mut responder = RawClient::open(server.addr, "messaging_publish/reply_responder", 0).await;
    requester.open_channel(1).await;
    responder.open_channel(1).await;
    responder.declare_queue(1, "rpc").await;
    responder.consume(1, "rpc", "server", true).await;
    // Clients probe for the feature with a passive declare.
    let Method::QueueDeclareOk(ok) = requester
        .ok(
            1,
            Method::QueueDeclare(QueueDeclare {
                queue: "amq.rabbitmq.reply-to".into(),
                passive: true,
                durable: false,
                exclusive: false,
                auto_delete: false,
                no_wait: false,
                arguments: FieldTable::new(),
            }),
            "queue.declare-ok",
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(ok.queue.as_str(), "amq.rabbitmq.reply-to");
    requester
        .consume(1, "amq.rabbitmq.reply-to", "client", true)
        .await;
    let props = BasicProperties {
        reply_to: Some("amq.rabbitmq.reply-to".into()),
        correlation_id: Some("42".into()),
        ..BasicProperties::default()
    };
    requester
        .publish_with(1, publish("", "rpc", false), props, b"ping")
        .await;
    let request = responder.next_content().await;
    let reply_to = request.properties.reply_to.unwrap();
    assert!(
        reply_to.as_str().starts_with("amq.rabbitmq.reply-to."),
        "{reply_to}"
    );
    let props = BasicProperties {
        correlation_id: Some("42".into()),
        ..BasicProperties::default()
    };
    responder
        .publish_with(1, publish("", reply_to.as_str(), true), props, b"pong")
        .await;
    let reply = requester.next_content().await;
    let Method::BasicDeliver(d) = reply.method else {
        panic!("{:?}", reply.method)
    };
    assert_eq!(d.consumer_tag.as_str(), "client");
    assert_eq!(&reply.body[..], b"pong");
    assert_eq!(reply.properties.correlation_id.unwrap().as_str(), "42");
    // Nothing to acknowledge, and the responder got no return.
    responder.expect_quiet(QUIET).await;
    server.handle.shutdown().await;
}

/// A publisher far faster than its consumer: every message arrives, in order, and the broker
/// keeps answering others meanwhile (full mailboxes stop the publisher's reads instead of
/// buffering without bound).
#[tokio::test]
async fn a_fast_publisher_is_slowed_not_buffered() {
    let server = start_server(|_| {}).await;
    let mut publisher = RawClient::open(server.addr, "messaging_publish/flood", 0).await;
    publisher.open_channel(1).await;
    publisher.declare_queue(1, "flood").await;
    const N: u32 = 20_000;
    let mut frames = bytes::BytesMut::new();
    for i in 0..N {
        encode_method(
            1,
            &Method::BasicPublish(publish("", "flood", false)),
            &mut frames,
        );
        let body = i.to_be_bytes();
        encode_header(
            1,
            &ContentHeader {
                class_id: 60,
                body_size: 4,
                properties: BasicProperties::default(),
            },
            &mut frames,
        );
        encode_body(1, &body, 131_072, &mut frames);
    }
    let mut consumer = RawClient::open(server.addr, "messaging_publish/flood_consumer", 0).await;
    consumer.open_channel(1).await;
    consumer.declare_queue(1, "flood").await;
    let send = tokio::spawn(async move {
        publisher.send_raw(&frames).await;
        publisher
    });
    consumer.ok(1, qos(100, false), "basic.qos-ok").await;
    consumer.consume(1, "flood", "c", false).await;
    for i in 0..N {
        let (_, tag, _, body) = consumer.next_delivery().await;
        assert_eq!(body[..], i.to_be_bytes());
        if tag % 50 == 0 {
            consumer.send_method(1, &ack(tag, true)).await;
        }
    }
    let mut publisher = send.await.unwrap();
    publisher.ping(1).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn amqprs_publish_consume_life() {
    use amqprs::channel::{
        BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, ConfirmSelectArguments,
        ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments,
    };
    use amqprs::connection::{Connection, OpenConnectionArguments};
    use amqprs::BasicProperties as Props;

    let server = start_server(|_| {}).await;
    let mut args = OpenConnectionArguments::new("127.0.0.1", server.addr.port(), "guest", "guest");
    args.connection_name("messaging_publish/amqprs");
    let conn = Connection::open(&args).await.unwrap();
    let ch = conn.open_channel(None).await.unwrap();
    ch.exchange_declare(ExchangeDeclareArguments::new("orders", "topic"))
        .await
        .unwrap();
    let (queue, _, _) = ch
        .queue_declare(QueueDeclareArguments::exclusive_server_named())
        .await
        .unwrap()
        .unwrap();
    ch.queue_bind(QueueBindArguments::new(&queue, "orders", "order.*"))
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectArguments::default())
        .await
        .unwrap();
    let (_tag, mut rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new(&queue, "amqprs").finish())
        .await
        .unwrap();
    for i in 0..10u8 {
        ch.basic_publish(
            Props::default(),
            vec![i; 10],
            BasicPublishArguments::new("orders", "order.created"),
        )
        .await
        .unwrap();
    }
    for i in 0..10u8 {
        let msg = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.content.unwrap(), vec![i; 10]);
        let tag = msg.deliver.unwrap().delivery_tag();
        ch.basic_ack(BasicAckArguments::new(tag, false))
            .await
            .unwrap();
    }
    ch.close().await.unwrap();
    conn.close().await.unwrap();
    server.handle.shutdown().await;
}

/// A no-ack consumer that stops reading: queues stop pushing to its connection once its
/// backlog is full, and resume when it reads again; nothing is lost or reordered.
#[tokio::test]
async fn a_no_ack_consumer_that_reads_slowly_gets_everything() {
    let server = start_server(|_| {}).await;
    let mut consumer = RawClient::open(server.addr, "messaging_publish/slow_reader", 0).await;
    consumer.open_channel(1).await;
    consumer.declare_queue(1, "slow").await;
    consumer.consume(1, "slow", "c", true).await;
    let mut publisher = RawClient::open(server.addr, "messaging_publish/slow_publisher", 0).await;
    publisher.open_channel(1).await;
    const N: u32 = 12_000;
    let body = vec![7u8; 1000];
    let mut frames = bytes::BytesMut::new();
    for i in 0..N {
        encode_method(
            1,
            &Method::BasicPublish(publish("", "slow", false)),
            &mut frames,
        );
        let mut b = body.clone();
        b[..4].copy_from_slice(&i.to_be_bytes());
        encode_header(
            1,
            &ContentHeader {
                class_id: 60,
                body_size: b.len() as u64,
                properties: BasicProperties::default(),
            },
            &mut frames,
        );
        encode_body(1, &b, 131_072, &mut frames);
    }
    publisher.send_raw(&frames).await;
    publisher.ping(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..N {
        let (_, _, _, body) = consumer.next_delivery().await;
        assert_eq!(body[..4], i.to_be_bytes());
    }
    server.handle.shutdown().await;
}

/// Confirms of a burst may be merged into `multiple=true` acks; together they cover every
/// sequence number in order.
#[tokio::test]
async fn confirms_of_a_burst_cover_every_publish() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "messaging_publish/confirm_burst", 0).await;
    c.open_channel(1).await;
    c.declare_queue(1, "q").await;
    c.confirm_select(1).await;
    let mut frames = bytes::BytesMut::new();
    for _ in 0..50 {
        encode_method(
            1,
            &Method::BasicPublish(publish("", "q", false)),
            &mut frames,
        );
        encode_header(
            1,
            &ContentHeader {
                class_id: 60,
                body_size: 1,
                properties: BasicProperties::default(),
            },
            &mut frames,
        );
        encode_body(1, b"x", 131_072, &mut frames);
    }
    c.send_raw(&frames).await;
    let mut confirmed = 0;
    let mut acks = 0;
    while confirmed < 50 {
        let (_, m) = c.expect_method("basic.ack").await;
        let Method::BasicAck(a) = m else {
            unreachable!()
        };
        assert!(a.delivery_tag > confirmed);
        assert!(a.multiple || a.delivery_tag == confirmed + 1);
        confirmed = a.delivery_tag;
        acks += 1;
    }
    assert_eq!(confirmed, 50);
    assert!(acks <= 50);
    server.handle.shutdown().await;
}
