//! The durable topology, and the publishers and consumers of one kill point.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::time::timeout;
use warren::client::{Channel, Connection, ConsumeOptions, PublishTarget};
use warren::protocol::{
    BasicProperties, ExchangeBind, ExchangeDeclare, FieldTable, QueueBind, QueueDeclare,
};

/// Limit for one client request or one wait; generous, the machine is small and shared.
use super::broker::{ok, Broker, STEP};

pub(crate) const EXCHANGE: &str = "crash.direct";
/// Destination of the exchange-to-exchange binding.
pub(crate) const FANOUT: &str = "crash.fanout";
pub(crate) const QUEUES: [&str; 3] = ["crash.q1", "crash.q2", "crash.q3"];
/// Routing keys publishers use, and the queues (indexes into `QUEUES`) each reaches:
/// `k1` -> q1; `k2` -> q2; `k.all` -> q1 directly and q3 through the e2e binding and the fanout.
pub(crate) const KEYS: [(&str, &[usize]); 3] = [("k1", &[0]), ("k2", &[1]), ("k.all", &[0, 2])];
pub(crate) const PUBLISHERS: usize = 3;
/// Queues with a consumer during the load (q3 only fills up, to be recovered).
pub(crate) const CONSUMED: [usize; 2] = [0, 1];
pub(crate) const CONFIRM_WINDOW: u64 = 100;
pub(crate) const PREFETCH: u16 = 50;
pub(crate) const ID_HEADER: &str = "crash-id";

pub(crate) fn q2_arguments() -> FieldTable {
    let mut args = FieldTable::new();
    // Large enough never to apply: here only to be stored and recovered.
    args.insert("x-max-length", 10_000_000i64);
    args
}

pub(crate) fn e2e_arguments() -> FieldTable {
    let mut args = FieldTable::new();
    args.insert("x-crash-binding", "e2e");
    args.insert("x-weight", 7i32);
    args
}

pub(crate) fn exchange(name: &str, kind: &str, passive: bool) -> ExchangeDeclare {
    ExchangeDeclare {
        exchange: name.into(),
        kind: kind.into(),
        passive,
        durable: true,
        ..ExchangeDeclare::default()
    }
}

pub(crate) fn durable_queue(index: usize, passive: bool) -> QueueDeclare {
    QueueDeclare {
        queue: QUEUES[index].into(),
        passive,
        durable: true,
        arguments: if index == 1 && !passive {
            q2_arguments()
        } else {
            FieldTable::new()
        },
        ..QueueDeclare::default()
    }
}

pub(crate) async fn declare_topology(broker: &Broker) {
    let conn = broker.connect("crash-test/declare").await;
    let ch = ok("open channel", conn.open_channel()).await;
    ok(
        "declare crash.direct",
        ch.exchange_declare(exchange(EXCHANGE, "direct", false)),
    )
    .await;
    ok(
        "declare crash.fanout",
        ch.exchange_declare(exchange(FANOUT, "fanout", false)),
    )
    .await;
    for index in 0..QUEUES.len() {
        ok(
            "declare queue",
            ch.queue_declare(durable_queue(index, false)),
        )
        .await;
    }
    let bind = |queue: &str, exchange: &str, key: &str| QueueBind {
        queue: queue.into(),
        exchange: exchange.into(),
        routing_key: key.into(),
        ..QueueBind::default()
    };
    ok("bind q1 k1", ch.queue_bind(bind(QUEUES[0], EXCHANGE, "k1"))).await;
    ok("bind q2 k2", ch.queue_bind(bind(QUEUES[1], EXCHANGE, "k2"))).await;
    ok(
        "bind q1 k.all",
        ch.queue_bind(bind(QUEUES[0], EXCHANGE, "k.all")),
    )
    .await;
    ok("bind q3 fanout", ch.queue_bind(bind(QUEUES[2], FANOUT, ""))).await;
    ok(
        "e2e bind",
        ch.exchange_bind(ExchangeBind {
            destination: FANOUT.into(),
            source: EXCHANGE.into(),
            routing_key: "k.all".into(),
            arguments: e2e_arguments(),
            ..ExchangeBind::default()
        }),
    )
    .await;
    ok("close", conn.close()).await;
}

/// What the clients of one kill point saw. Shared with the tasks and filled in as they go, so
/// nothing is lost if a task has to be aborted.
#[derive(Default)]
pub(crate) struct Record {
    /// Every id a publisher tried to publish, with its key (index into `KEYS`).
    pub(crate) published: HashMap<String, usize>,
    /// Ids the broker acked in confirm mode.
    pub(crate) confirmed: HashSet<String>,
    pub(crate) nacked: u64,
    /// (queue index, id) for every `basic.ack` the consumers sent.
    pub(crate) acked: HashSet<(usize, String)>,
}

pub(crate) fn message_id(point: usize, publisher: usize, seq: u64) -> String {
    format!("p{point}.{publisher}.{seq}")
}

/// One publisher: persistent messages with confirms (window `CONFIRM_WINDOW`) until its
/// connection fails (the kill) or `until`.
pub(crate) async fn publish(
    conn: Connection,
    ch: Channel,
    point: usize,
    publisher: usize,
    record: Arc<Mutex<Record>>,
    until: Instant,
) {
    let mut events = ch.confirm_events();
    let targets: Vec<PublishTarget> = KEYS
        .iter()
        .map(|(key, _)| PublishTarget::new(EXCHANGE, key).unwrap())
        .collect();
    // Confirm sequence number -> id, for messages not yet confirmed.
    let mut pending: BTreeMap<u64, String> = BTreeMap::new();
    let settle = |events: &mut tokio::sync::mpsc::UnboundedReceiver<warren::client::Confirm>,
                  pending: &mut BTreeMap<u64, String>| {
        let mut record = record.lock().unwrap();
        while let Ok(confirm) = events.try_recv() {
            let settled: Vec<String> = if confirm.multiple {
                let rest = pending.split_off(&(confirm.delivery_tag + 1));
                std::mem::replace(pending, rest).into_values().collect()
            } else {
                pending.remove(&confirm.delivery_tag).into_iter().collect()
            };
            if confirm.ack {
                record.confirmed.extend(settled);
            } else {
                record.nacked += settled.len() as u64;
            }
        }
    };
    let mut seq = 0u64;
    while Instant::now() < until {
        match timeout(STEP, ch.wait_unconfirmed_below(CONFIRM_WINDOW)).await {
            Ok(Ok(())) => {}
            // The connection died (the kill) or confirms stalled: stop publishing.
            Ok(Err(_)) | Err(_) => break,
        }
        settle(&mut events, &mut pending);
        seq += 1;
        let id = message_id(point, publisher, seq);
        let key = (seq % KEYS.len() as u64) as usize;
        record.lock().unwrap().published.insert(id.clone(), key);
        let mut headers = FieldTable::new();
        headers.insert(ID_HEADER, id.as_str());
        let properties = BasicProperties {
            delivery_mode: Some(2),
            headers: Some(headers),
            ..BasicProperties::default()
        };
        match timeout(
            STEP,
            ch.basic_publish(&targets[key], &properties, id.as_bytes()),
        )
        .await
        {
            Ok(Ok(tag)) => {
                pending.insert(tag, id);
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    // Confirms that arrived before the connection died are waiting in the channel.
    settle(&mut events, &mut pending);
    drop(conn);
}

/// One consumer with manual acks; records an id as acked once its `basic.ack` is handed to the
/// connection.
pub(crate) async fn consume(
    conn: Connection,
    ch: Channel,
    queue: usize,
    record: Arc<Mutex<Record>>,
    until: Instant,
) {
    let Ok(Ok(mut consumer)) = timeout(
        STEP,
        ch.basic_consume(QUEUES[queue], ConsumeOptions::default()),
    )
    .await
    else {
        return;
    };
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(Some(delivery)) = timeout(left, consumer.recv()).await else {
            break;
        };
        let id = String::from_utf8_lossy(&delivery.body).into_owned();
        if ch.basic_ack(delivery.delivery_tag, false).await.is_err() {
            break;
        }
        record.lock().unwrap().acked.insert((queue, id));
    }
    drop(conn);
}
