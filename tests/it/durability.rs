//! Durability against the real server, restarted in this process on the same data dir:
//! durable definitions and persistent messages come back (in order, with their properties,
//! redelivered when delivered before, TTL still counting, dead-letter history intact);
//! transient messages and non-durable queues do not; a long queue pages to disk and still
//! delivers everything in order.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use warren::config::Config;
use warren::protocol::*;
use warren::server::{Server, ServerHandle};

async fn start_in(dir: &Path) -> (ServerHandle, SocketAddr) {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let handle = tokio::time::timeout(WAIT, Server::start(config))
        .await
        .expect("server start timed out")
        .unwrap();
    let addr = handle.local_addr();
    (handle, addr)
}

async fn restart(handle: ServerHandle, dir: &Path) -> (ServerHandle, SocketAddr) {
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown timed out");
    start_in(dir).await
}

async fn client(addr: SocketAddr) -> RawClient {
    let mut c = RawClient::open(addr, "durability", 0).await;
    c.open_channel(1).await;
    c
}

fn durable_queue(name: &str, arguments: FieldTable, passive: bool) -> Method {
    Method::QueueDeclare(QueueDeclare {
        queue: name.into(),
        passive,
        durable: true,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments,
    })
}

fn durable_exchange(name: &str, kind: &str) -> Method {
    Method::ExchangeDeclare(ExchangeDeclare {
        exchange: name.into(),
        kind: kind.into(),
        passive: false,
        durable: true,
        auto_delete: false,
        internal: false,
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

fn persistent() -> BasicProperties {
    BasicProperties {
        delivery_mode: Some(2),
        ..BasicProperties::default()
    }
}

async fn message_count(c: &mut RawClient, queue: &str, arguments: FieldTable) -> u32 {
    match c
        .ok(1, durable_queue(queue, arguments, true), "queue.declare-ok")
        .await
    {
        Method::QueueDeclareOk(ok) => ok.message_count,
        _ => unreachable!(),
    }
}

/// basic.get: `(body, redelivered, properties)`, or `None` on get-empty.
async fn get(
    c: &mut RawClient,
    queue: &str,
    no_ack: bool,
) -> Option<(Bytes, bool, BasicProperties, u64)> {
    c.send_method(
        1,
        &Method::BasicGet(BasicGet {
            queue: queue.into(),
            no_ack,
        }),
    )
    .await;
    let (_, method) = c.next_method().await;
    let Method::BasicGetOk(ok) = method else {
        assert!(matches!(method, Method::BasicGetEmpty(_)), "{method:?}");
        return None;
    };
    let Some(Frame::Header { header, .. }) = c.next_frame().await else {
        panic!("expected a content header");
    };
    let mut body = Vec::new();
    while (body.len() as u64) < header.body_size {
        let Some(Frame::Body { payload, .. }) = c.next_frame().await else {
            panic!("expected a body frame");
        };
        body.extend_from_slice(&payload);
    }
    Some((
        Bytes::from(body),
        ok.redelivered,
        header.properties,
        ok.delivery_tag,
    ))
}

/// Waits for acks up to `last` (single or multiple).
async fn await_confirms(c: &mut RawClient, last: u64) {
    let mut confirmed = 0;
    while confirmed < last {
        match c.next_method().await.1 {
            Method::BasicAck(ack) => {
                assert!(ack.delivery_tag > confirmed || !ack.multiple);
                confirmed = confirmed.max(ack.delivery_tag);
            }
            other => panic!("expected basic.ack, got {other:?}"),
        }
    }
}

fn ttl_args(ms: i32) -> FieldTable {
    let mut t = FieldTable::new();
    t.insert("x-message-ttl", FieldValue::I32(ms));
    t
}

#[tokio::test]
async fn durable_definitions_and_persistent_messages_survive_a_restart_transient_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_in(dir.path()).await;
    let mut c = client(addr).await;
    c.ok(1, durable_exchange("dx", "direct"), "exchange.declare-ok")
        .await;
    c.ok(1, durable_exchange("dx2", "fanout"), "exchange.declare-ok")
        .await;
    c.ok(
        1,
        durable_queue("dq", ttl_args(600_000), false),
        "queue.declare-ok",
    )
    .await;
    c.declare_queue(1, "transient-queue").await;
    c.ok(1, queue_bind("dq", "dx", "k"), "queue.bind-ok").await;
    let mut e2e_args = FieldTable::new();
    e2e_args.insert("x-any", FieldValue::I32(1));
    c.ok(
        1,
        Method::ExchangeBind(ExchangeBind {
            destination: "dx".into(),
            source: "dx2".into(),
            routing_key: "".into(),
            no_wait: false,
            arguments: e2e_args,
        }),
        "exchange.bind-ok",
    )
    .await;
    c.confirm_select(1).await;
    for i in 0..3u8 {
        let mut headers = FieldTable::new();
        headers.insert("i", FieldValue::I32(i32::from(i)));
        let props = BasicProperties {
            headers: Some(headers),
            priority: Some(3),
            message_id: Some(format!("m{i}").into()),
            ..persistent()
        };
        c.publish_with(1, publish("dx2", "k", false), props, &[b'p', b'0' + i])
            .await;
    }
    c.publish_with(
        1,
        publish("dx", "k", false),
        BasicProperties::default(),
        b"transient",
    )
    .await;
    await_confirms(&mut c, 4).await;
    // Delivered and left unacknowledged: it comes back redelivered.
    let (first, redelivered, _, _) = get(&mut c, "dq", false).await.unwrap();
    assert_eq!((&first[..], redelivered), (&b"p0"[..], false));

    let (server, addr) = restart(server, dir.path()).await;
    let mut c = client(addr).await;
    assert_eq!(message_count(&mut c, "dq", ttl_args(600_000)).await, 3);
    let mut got = Vec::new();
    while let Some((body, redelivered, props, _)) = get(&mut c, "dq", true).await {
        got.push((body, redelivered, props));
    }
    let bodies: Vec<&[u8]> = got.iter().map(|(b, _, _)| &b[..]).collect();
    assert_eq!(bodies, [&b"p0"[..], b"p1", b"p2"]);
    let flags: Vec<bool> = got.iter().map(|(_, r, _)| *r).collect();
    assert_eq!(flags, [true, false, false]);
    let (_, _, props) = &got[1];
    assert_eq!(props.delivery_mode, Some(2));
    assert_eq!(props.priority, Some(3));
    assert_eq!(props.message_id.as_ref().map(|m| m.as_str()), Some("m1"));
    assert_eq!(
        props.headers.as_ref().and_then(|h| h.get("i")),
        Some(&FieldValue::I32(1))
    );
    // The exchange-to-exchange binding (with its arguments) and the queue binding are back.
    c.publish_with(1, publish("dx2", "k", false), persistent(), b"again")
        .await;
    let (body, _, _, _) = get(&mut c, "dq", true).await.unwrap();
    assert_eq!(&body[..], b"again");
    // The non-durable queue is gone.
    let close = c
        .fails(1, durable_queue("transient-queue", FieldTable::new(), true))
        .await;
    assert_eq!(close.code, 404);
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn message_ttl_keeps_counting_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_in(dir.path()).await;
    let mut c = client(addr).await;
    c.ok(
        1,
        durable_queue("ttl", FieldTable::new(), false),
        "queue.declare-ok",
    )
    .await;
    c.confirm_select(1).await;
    let expiring = |ms: &str| BasicProperties {
        expiration: Some(ms.into()),
        ..persistent()
    };
    c.publish_with(1, publish("", "ttl", false), expiring("1500"), b"short")
        .await;
    c.publish_with(1, publish("", "ttl", false), expiring("600000"), b"long")
        .await;
    await_confirms(&mut c, 2).await;
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
    // Down for longer than the short TTL.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (server, addr) = start_in(dir.path()).await;
    let mut c = client(addr).await;
    let (body, _, _, _) = get(&mut c, "ttl", true).await.unwrap();
    assert_eq!(
        &body[..],
        b"long",
        "the short-lived message expired while down"
    );
    assert!(get(&mut c, "ttl", true).await.is_none());
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn dead_letter_history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_in(dir.path()).await;
    let mut c = client(addr).await;
    let mut args = FieldTable::new();
    args.insert("x-dead-letter-exchange", longstr(""));
    args.insert("x-dead-letter-routing-key", longstr("dlq"));
    c.ok(1, durable_queue("work", args, false), "queue.declare-ok")
        .await;
    c.ok(
        1,
        durable_queue("dlq", FieldTable::new(), false),
        "queue.declare-ok",
    )
    .await;
    c.confirm_select(1).await;
    c.publish_with(1, publish("", "work", false), persistent(), b"doomed")
        .await;
    await_confirms(&mut c, 1).await;
    let (_, _, _, tag) = get(&mut c, "work", false).await.unwrap();
    c.send_method(
        1,
        &Method::BasicReject(BasicReject {
            delivery_tag: tag,
            requeue: false,
        }),
    )
    .await;
    // The reject is asynchronous: wait until the copy is in the dead-letter queue.
    let mut n = 0;
    for _ in 0..100 {
        n = message_count(&mut c, "dlq", FieldTable::new()).await;
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n, 1);
    let (server, addr) = restart(server, dir.path()).await;
    let mut c = client(addr).await;
    let (body, _, props, _) = get(&mut c, "dlq", true).await.unwrap();
    assert_eq!(&body[..], b"doomed");
    let headers = props.headers.unwrap();
    let Some(FieldValue::Array(deaths)) = headers.get("x-death") else {
        panic!("no x-death in {headers:?}");
    };
    let Some(FieldValue::Table(death)) = deaths.first() else {
        panic!("empty x-death");
    };
    assert_eq!(death.get("reason"), Some(&longstr("rejected")));
    assert_eq!(death.get("queue"), Some(&longstr("work")));
    assert_eq!(death.get("count"), Some(&FieldValue::I64(1)));
    assert!(
        get(&mut c, "work", true).await.is_none(),
        "the original was removed"
    );
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
}

/// Far more messages than a queue keeps in memory, persistent and transient mixed: all are
/// delivered, in order; purge counts the ones on disk; the purge is durable.
#[tokio::test]
async fn a_long_queue_pages_to_disk_and_delivers_everything_in_order() {
    const N: u32 = 12_000;
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_in(dir.path()).await;
    let mut c = client(addr).await;
    c.ok(
        1,
        durable_queue("long", FieldTable::new(), false),
        "queue.declare-ok",
    )
    .await;
    c.confirm_select(1).await;
    for i in 0..N {
        let props = if i % 3 == 0 {
            persistent()
        } else {
            BasicProperties::default()
        };
        c.publish_with(1, publish("", "long", false), props, &i.to_be_bytes())
            .await;
    }
    await_confirms(&mut c, u64::from(N)).await;
    assert_eq!(message_count(&mut c, "long", FieldTable::new()).await, N);
    c.ok(
        1,
        Method::BasicQos(BasicQos {
            prefetch_size: 0,
            prefetch_count: 500,
            global: false,
        }),
        "basic.qos-ok",
    )
    .await;
    c.consume(1, "long", "drain", false).await;
    for i in 0..N {
        let (_, tag, redelivered, body) = c.next_delivery().await;
        assert_eq!(u32::from_be_bytes(body[..4].try_into().unwrap()), i);
        assert!(!redelivered);
        if i % 100 == 99 || i == N - 1 {
            c.send_method(
                1,
                &Method::BasicAck(BasicAck {
                    delivery_tag: tag,
                    multiple: true,
                }),
            )
            .await;
        }
    }
    c.ok(
        1,
        Method::BasicCancel(BasicCancel {
            consumer_tag: "drain".into(),
            no_wait: false,
        }),
        "basic.cancel-ok",
    )
    .await;
    for i in 0..N {
        let props = if i % 2 == 0 {
            persistent()
        } else {
            BasicProperties::default()
        };
        c.publish_with(1, publish("", "long", false), props, &i.to_be_bytes())
            .await;
    }
    await_confirms(&mut c, 2 * u64::from(N)).await;
    let Method::QueuePurgeOk(ok) = c
        .ok(
            1,
            Method::QueuePurge(QueuePurge {
                queue: "long".into(),
                no_wait: false,
            }),
            "queue.purge-ok",
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(ok.message_count, N);
    let (server, addr) = restart(server, dir.path()).await;
    let mut c = client(addr).await;
    assert_eq!(message_count(&mut c, "long", FieldTable::new()).await, 0);
    assert!(get(&mut c, "long", true).await.is_none());
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_deleted_durable_queue_stays_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_in(dir.path()).await;
    let mut c = client(addr).await;
    c.ok(
        1,
        durable_exchange("gone-x", "fanout"),
        "exchange.declare-ok",
    )
    .await;
    c.ok(
        1,
        durable_queue("gone", FieldTable::new(), false),
        "queue.declare-ok",
    )
    .await;
    c.ok(1, queue_bind("gone", "gone-x", ""), "queue.bind-ok")
        .await;
    c.confirm_select(1).await;
    c.publish_with(1, publish("gone-x", "", false), persistent(), b"x")
        .await;
    await_confirms(&mut c, 1).await;
    c.ok(
        1,
        Method::QueueDelete(QueueDelete {
            queue: "gone".into(),
            if_unused: false,
            if_empty: false,
            no_wait: false,
        }),
        "queue.delete-ok",
    )
    .await;
    c.ok(
        1,
        Method::ExchangeDelete(ExchangeDelete {
            exchange: "gone-x".into(),
            if_unused: false,
            no_wait: false,
        }),
        "exchange.delete-ok",
    )
    .await;
    let (server, addr) = restart(server, dir.path()).await;
    let mut c = client(addr).await;
    let close = c
        .fails(1, durable_queue("gone", FieldTable::new(), true))
        .await;
    assert_eq!(close.code, 404);
    c.open_channel(2).await;
    let close = c
        .fails(
            2,
            Method::ExchangeDeclare(ExchangeDeclare {
                passive: true,
                ..match durable_exchange("gone-x", "fanout") {
                    Method::ExchangeDeclare(d) => d,
                    _ => unreachable!(),
                }
            }),
        )
        .await;
    assert_eq!(close.code, 404);
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
}

/// A store written by another format version, or one that cannot be opened, stops the start
/// with a clear message and is left as it was.
#[tokio::test]
async fn a_foreign_or_unreadable_store_stops_the_start_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start_in(dir.path()).await;
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
    let store = dir.path().join("store");
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &store).unwrap();
    {
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &store, &families).unwrap();
        db.put(b"format_version", 99u32.to_be_bytes()).unwrap();
    }
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let error = Server::start(config.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("format version 99") && error.contains(&store.display().to_string()),
        "{error}"
    );
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &store, &families).unwrap();
    assert_eq!(
        db.get(b"format_version").unwrap().as_deref(),
        Some(&99u32.to_be_bytes()[..]),
        "the store was touched"
    );
    drop(db);

    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("store"), b"not a directory").unwrap();
    let config = Config {
        data_dir: other.path().to_path_buf(),
        ..config
    };
    let error = Server::start(config).await.err().unwrap().to_string();
    assert!(error.starts_with("cannot start: "), "{error}");
    assert!(error.contains("store"), "{error}");
    assert_eq!(
        std::fs::read(other.path().join("store")).unwrap(),
        b"not a directory"
    );
}

fn staged(passive: bool) -> QueueDeclare {
    match durable_queue("staged", FieldTable::new(), passive) {
        Method::QueueDeclare(declare) => declare,
        _ => unreachable!(),
    }
}

/// Users, vhosts and permissions saved by one run are there in the next, even when its
/// configuration no longer names them; so are the vhost's durable queues.
#[tokio::test]
async fn users_vhosts_and_permissions_survive_a_restart() {
    use warren::client::Connection;
    use warren::config::{PermissionConfig, UserConfig, VhostConfig};
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        users: vec![UserConfig {
            name: "app".into(),
            password: "secret".into(),
            tags: vec![],
        }],
        vhosts: vec![VhostConfig {
            name: "staging".into(),
        }],
        permissions: vec![PermissionConfig {
            user: "app".into(),
            vhost: "staging".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }],
        ..Config::default()
    };
    let server = Server::start(config).await.unwrap();
    let url = format!("amqp://app:secret@{}/staging", server.local_addr());
    let conn = Connection::connect(&url).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    ch.queue_declare(staged(false)).await.unwrap();
    conn.close().await.unwrap();
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();

    // The next run's configuration names none of them.
    let (server, addr) = start_in(dir.path()).await;
    let url = format!("amqp://app:secret@{addr}/staging");
    let conn = Connection::connect(&url).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    ch.queue_declare(staged(true)).await.unwrap();
    conn.close().await.unwrap();
    let wrong = format!("amqp://app:wrong@{addr}/staging");
    assert!(Connection::connect(&wrong).await.is_err());
    tokio::time::timeout(WAIT, server.shutdown()).await.unwrap();
}
