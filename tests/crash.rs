//! Crash tests: the real `warren` binary as a child process on a data dir in a temp dir,
//! SIGKILLed while publishers (persistent, with confirms) and consumers (manual acks) run, then
//! restarted on the same data dir and checked.
//!
//! The promise being tested is RabbitMQ's: a message the broker confirmed, published as
//! persistent to a durable queue, survives a crash until it is acknowledged; durable exchanges,
//! queues and bindings survive as declared. What a crash may do is redeliver a message whose ack
//! was sent but had not reached the store, or keep a message that was never confirmed. It must
//! never lose a confirmed one, duplicate one within a queue, or put one where it was not routed.
//!
//! Settings (environment):
//! - `WARREN_CRASH_POINTS`: kill points in `crash_recovery_keeps_every_confirmed_message`;
//!   default 5 (CI). The long setting is 20.
//! - `WARREN_CRASH_SEED`: the RNG seed for the kill delays (printed by every run, so a failing
//!   sequence can be replayed); default from the clock.
//!
//! `cargo test --test crash -- --nocapture` shows per-point lines and the totals. On a failure
//! the tail of the broker's log (stdout and stderr) is printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio::time::timeout;
use warren::client::{
    AmqpUrl, Channel, ClientError, Connection, ConnectionOptions, ConsumeOptions, Delivery,
    PublishTarget,
};
use warren::protocol::{
    BasicProperties, ExchangeBind, ExchangeDeclare, FieldTable, FieldValue, QueueBind, QueueDeclare,
};

/// Limit for one client request or one wait; generous, the machine is small and shared.
const STEP: Duration = Duration::from_secs(20);
/// Limit for a broker to accept AMQP after it was spawned (recovery included).
const READY: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The broker as a child process
// ---------------------------------------------------------------------------------------------

/// A `warren server` child. Dropping it SIGKILLs the child; if the test is panicking, the tail
/// of the child's log is printed first.
struct Broker {
    child: Option<Child>,
    addr: SocketAddr,
    /// stdout (the tracing log) and stderr of the child, in one file.
    log: PathBuf,
    name: String,
}

/// A port that was free a moment ago: bind 127.0.0.1:0 and let it go.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Broker {
    /// Spawns `warren server` on a free port with `data_dir`, logging to `log`, without waiting.
    fn spawn(data_dir: &Path, log: PathBuf, name: &str) -> Broker {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("server")
            .env_remove("WARREN_CONFIG")
            .env("WARREN_LISTEN", addr.to_string())
            .env("WARREN_DATA_DIR", data_dir)
            .env("WARREN_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Broker {
            child: Some(child),
            addr,
            log,
            name: name.to_owned(),
        }
    }

    /// Spawns and waits until the broker completes an AMQP handshake. Retries on another port
    /// if the one picked was taken in the meantime.
    async fn start(data_dir: &Path, log_dir: &Path, name: &str) -> Broker {
        for attempt in 0..3 {
            let log = log_dir.join(format!("{name}.{attempt}.log"));
            let mut broker = Broker::spawn(data_dir, log, name);
            match broker.wait_ready().await {
                Ok(()) => return broker,
                Err(status) => {
                    let log = tail(&broker.log, 40);
                    if log.contains("ddress already in use") {
                        continue;
                    }
                    panic!(
                        "broker {name} exited before accepting AMQP ({status}); log tail:\n{log}"
                    );
                }
            }
        }
        panic!("broker {name}: no free port after 3 attempts");
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@{}/", self.addr)
    }

    fn options(&self, connection_name: &str) -> ConnectionOptions {
        ConnectionOptions {
            url: AmqpUrl::parse(&self.url()).unwrap(),
            connection_name: Some(connection_name.to_owned()),
            connect_timeout: Duration::from_secs(5),
            ..ConnectionOptions::default()
        }
    }

    async fn connect(&self, connection_name: &str) -> Connection {
        Connection::connect_with(self.options(connection_name))
            .await
            .unwrap_or_else(|e| panic!("{}: connecting as {connection_name}: {e}", self.name))
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("broker already stopped")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker already stopped").id()
    }

    /// Until a handshake succeeds; `Err` with the exit status if the child exits first.
    async fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                return Err(status);
            }
            let options = ConnectionOptions {
                connect_timeout: Duration::from_secs(2),
                ..self.options("crash-test/ready-probe")
            };
            if let Ok(conn) = Connection::connect_with(options).await {
                let _ = timeout(STEP, conn.close()).await;
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "broker {} did not accept AMQP within {READY:?}; log tail:\n{}",
                self.name,
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on unix) and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (up to `STEP`) for the exit status.
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait_exit(STEP)
            .unwrap_or_else(|| panic!("broker {} did not exit after SIGTERM", self.name))
    }

    /// The exit status if the child exits within `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- tail of broker {} log ({}) ----\n{}\n----",
                self.name,
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }
}

/// Awaits `future` for at most `limit`, panicking with `what` if it takes longer.
async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A client request that must succeed within `STEP`.
async fn ok<T>(what: &str, future: impl Future<Output = Result<T, ClientError>>) -> T {
    match within(what, STEP, future).await {
        Ok(value) => value,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// splitmix64: the kill delays, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `lo..=hi` for test delays.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

// ---------------------------------------------------------------------------------------------
// Topology and the bookkeeping of one kill point
// ---------------------------------------------------------------------------------------------

const EXCHANGE: &str = "crash.direct";
/// Destination of the exchange-to-exchange binding.
const FANOUT: &str = "crash.fanout";
const QUEUES: [&str; 3] = ["crash.q1", "crash.q2", "crash.q3"];
/// Routing keys publishers use, and the queues (indexes into `QUEUES`) each reaches:
/// `k1` -> q1; `k2` -> q2; `k.all` -> q1 directly and q3 through the e2e binding and the fanout.
const KEYS: [(&str, &[usize]); 3] = [("k1", &[0]), ("k2", &[1]), ("k.all", &[0, 2])];
const PUBLISHERS: usize = 3;
/// Queues with a consumer during the load (q3 only fills up, to be recovered).
const CONSUMED: [usize; 2] = [0, 1];
const CONFIRM_WINDOW: u64 = 100;
const PREFETCH: u16 = 50;
const ID_HEADER: &str = "crash-id";

fn q2_arguments() -> FieldTable {
    let mut args = FieldTable::new();
    // Large enough never to apply: here only to be stored and recovered.
    args.insert("x-max-length", 10_000_000i64);
    args
}

fn e2e_arguments() -> FieldTable {
    let mut args = FieldTable::new();
    args.insert("x-crash-binding", "e2e");
    args.insert("x-weight", 7i32);
    args
}

fn exchange(name: &str, kind: &str, passive: bool) -> ExchangeDeclare {
    ExchangeDeclare {
        exchange: name.into(),
        kind: kind.into(),
        passive,
        durable: true,
        ..ExchangeDeclare::default()
    }
}

fn durable_queue(index: usize, passive: bool) -> QueueDeclare {
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

async fn declare_topology(broker: &Broker) {
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
struct Record {
    /// Every id a publisher tried to publish, with its key (index into `KEYS`).
    published: HashMap<String, usize>,
    /// Ids the broker acked in confirm mode.
    confirmed: HashSet<String>,
    nacked: u64,
    /// (queue index, id) for every `basic.ack` the consumers sent.
    acked: HashSet<(usize, String)>,
}

fn message_id(point: usize, publisher: usize, seq: u64) -> String {
    format!("p{point}.{publisher}.{seq}")
}

/// One publisher: persistent messages with confirms (window `CONFIRM_WINDOW`) until its
/// connection fails (the kill) or `until`.
async fn publish(
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
async fn consume(
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

/// Totals over every kill point.
#[derive(Default, Debug, Clone, Copy)]
struct Totals {
    points: usize,
    published: u64,
    confirmed: u64,
    nacked: u64,
    /// Acks sent by the load's consumers.
    acked: u64,
    /// Messages found in the queues after the restart.
    recovered: u64,
    /// Recovered although its ack had been sent (the ack did not reach the store): allowed.
    redelivered_after_ack: u64,
    /// Recovered although never confirmed (the broker stored it before it could confirm):
    /// allowed.
    recovered_unconfirmed: u64,
    /// Recovered from an earlier kill point although drained and acked then: allowed, reported.
    resurrected: u64,
    /// A confirmed message, neither acked nor recovered, in a queue it was routed to.
    lost: u64,
    /// The same id twice in one queue's recovery.
    duplicates: u64,
    /// An id recovered from a queue its key does not route to, or never published.
    misrouted: u64,
    /// Recovered messages whose properties came back wrong (delivery mode, id header).
    bad_properties: u64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.points += other.points;
        self.published += other.published;
        self.confirmed += other.confirmed;
        self.nacked += other.nacked;
        self.acked += other.acked;
        self.recovered += other.recovered;
        self.redelivered_after_ack += other.redelivered_after_ack;
        self.recovered_unconfirmed += other.recovered_unconfirmed;
        self.resurrected += other.resurrected;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.misrouted += other.misrouted;
        self.bad_properties += other.bad_properties;
    }

    fn failures(&self) -> u64 {
        self.lost + self.duplicates + self.misrouted + self.bad_properties
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published {}, confirmed {}, nacked {}, acked {}, recovered {} \
             (redelivered after ack {}, unconfirmed {}, resurrected {}), \
             lost {}, duplicates {}, misrouted {}, bad properties {}",
            self.published,
            self.confirmed,
            self.nacked,
            self.acked,
            self.recovered,
            self.redelivered_after_ack,
            self.recovered_unconfirmed,
            self.resurrected,
            self.lost,
            self.duplicates,
            self.misrouted,
            self.bad_properties
        )
    }
}

// ---------------------------------------------------------------------------------------------
// After a restart: definitions, drain, verdict
// ---------------------------------------------------------------------------------------------

/// Passive declares of both exchanges and every queue, non-passive redeclares with the original
/// properties (a 406 means a flag or argument was not recovered as declared), and a probe
/// through the e2e binding.
async fn check_definitions(broker: &Broker, point: usize) {
    let conn = broker.connect("crash-test/definitions").await;
    let ch = ok("open channel", conn.open_channel()).await;
    for (name, kind) in [(EXCHANGE, "direct"), (FANOUT, "fanout")] {
        let what = format!("after restart {point}: passive declare of exchange {name}");
        ok(&what, ch.exchange_declare(exchange(name, kind, true))).await;
        let what = format!("after restart {point}: redeclare of exchange {name} as declared");
        ok(&what, ch.exchange_declare(exchange(name, kind, false))).await;
    }
    for (index, queue) in QUEUES.iter().enumerate() {
        let what = format!("after restart {point}: passive declare of queue {queue}");
        ok(&what, ch.queue_declare(durable_queue(index, true))).await;
        let what = format!("after restart {point}: redeclare of queue {queue} as declared");
        ok(&what, ch.queue_declare(durable_queue(index, false))).await;
    }
    ok("close", conn.close()).await;
}

/// Publishes a transient probe with key `k.all` and expects it in q1 (direct binding) and q3
/// (only reachable through the e2e binding). Run on empty queues, after the drain.
async fn probe_e2e(broker: &Broker, point: usize) {
    let conn = broker.connect("crash-test/probe").await;
    let ch = ok("open channel", conn.open_channel()).await;
    ok("confirm.select", ch.confirm_select()).await;
    let probe = format!("probe-{point}");
    let target = PublishTarget::with_flags(EXCHANGE, "k.all", true).unwrap();
    ok(
        "publish probe",
        ch.basic_publish(&target, &BasicProperties::default(), probe.as_bytes()),
    )
    .await;
    let nacked = ok("probe confirm", ch.wait_for_confirms()).await;
    assert_eq!(nacked, 0, "probe nacked after restart {point}");
    assert_eq!(ch.returned(), 0, "probe unroutable after restart {point}");
    for queue in [QUEUES[0], QUEUES[2]] {
        let mut consumer = ok(
            "consume probe",
            ch.basic_consume(queue, ConsumeOptions::default()),
        )
        .await;
        let what = format!("after restart {point}: probe through the e2e binding in {queue}");
        let delivery = within(&what, STEP, consumer.recv())
            .await
            .unwrap_or_else(|| panic!("{what}: consumer ended"));
        assert_eq!(&delivery.body[..], probe.as_bytes(), "{what}");
        ok("ack probe", ch.basic_ack(delivery.delivery_tag, false)).await;
        ok("cancel", ch.basic_cancel(consumer.tag())).await;
    }
    ok("close", conn.close()).await;
}

/// Consumes every message of `queue` (the count from a passive declare; a short wait after it
/// catches extras), acks them all, and returns them in order.
async fn drain(broker: &Broker, index: usize, point: usize) -> Vec<Delivery> {
    let queue = QUEUES[index];
    let conn = broker.connect("crash-test/drain").await;
    let ch = ok("open channel", conn.open_channel()).await;
    let what = format!("after restart {point}: passive declare of {queue}");
    let count = ok(&what, ch.queue_declare(durable_queue(index, true)))
        .await
        .message_count as usize;
    ok("qos", ch.basic_qos(1000)).await;
    let mut consumer = ok(
        "consume to drain",
        ch.basic_consume(queue, ConsumeOptions::default()),
    )
    .await;
    let mut got = Vec::with_capacity(count);
    // Generous: up to a million messages on a slow machine.
    let limit = STEP + Duration::from_millis(count as u64 / 10);
    let deadline = Instant::now() + limit;
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, consumer.recv()).await {
            Ok(Some(delivery)) => {
                ok("ack", ch.basic_ack(delivery.delivery_tag, false)).await;
                got.push(delivery);
            }
            Ok(None) => panic!(
                "draining {queue} after restart {point}: consumer ended after {} of {count}: {:?}",
                got.len(),
                consumer.error()
            ),
            Err(_) => panic!(
                "draining {queue} after restart {point}: {} of {count} messages in {limit:?}",
                got.len()
            ),
        }
    }
    // More than the declared count would be duplicates or a wrong count: collect them too.
    while let Ok(Some(delivery)) = timeout(Duration::from_millis(300), consumer.recv()).await {
        ok("ack", ch.basic_ack(delivery.delivery_tag, false)).await;
        got.push(delivery);
    }
    ok("cancel", ch.basic_cancel(consumer.tag())).await;
    ok("close", conn.close()).await;
    got
}

/// Compares what the clients saw before the kill with what the restarted broker holds.
fn verdict(
    point: usize,
    record: &Record,
    earlier: &HashSet<String>,
    recovered: &[Vec<Delivery>],
) -> Totals {
    let mut t = Totals {
        points: 1,
        published: record.published.len() as u64,
        confirmed: record.confirmed.len() as u64,
        nacked: record.nacked,
        acked: record.acked.len() as u64,
        ..Totals::default()
    };
    let mut problems = Vec::new();
    let mut found: Vec<HashSet<String>> = vec![HashSet::new(); QUEUES.len()];
    for (queue, deliveries) in recovered.iter().enumerate() {
        for delivery in deliveries {
            t.recovered += 1;
            let id = String::from_utf8_lossy(&delivery.body).into_owned();
            if !found[queue].insert(id.clone()) {
                t.duplicates += 1;
                problems.push(format!("{id} twice in {}", QUEUES[queue]));
                continue;
            }
            let header = delivery
                .properties
                .headers
                .as_ref()
                .and_then(|h| h.get(ID_HEADER).cloned());
            if delivery.properties.delivery_mode != Some(2)
                || header != Some(FieldValue::from(id.as_str()))
            {
                t.bad_properties += 1;
                problems.push(format!(
                    "{id} in {} came back with properties {:?}",
                    QUEUES[queue], delivery.properties
                ));
            }
            if earlier.contains(&id) || id.starts_with("probe-") {
                t.resurrected += 1;
                continue;
            }
            let Some(&key) = record.published.get(&id) else {
                t.misrouted += 1;
                problems.push(format!("{id} in {} was never published", QUEUES[queue]));
                continue;
            };
            if !KEYS[key].1.contains(&queue) {
                t.misrouted += 1;
                problems.push(format!(
                    "{id} (key {}) in {}, which that key does not reach",
                    KEYS[key].0, QUEUES[queue]
                ));
            }
            if record.acked.contains(&(queue, id.clone())) {
                t.redelivered_after_ack += 1;
            }
            if !record.confirmed.contains(&id) {
                t.recovered_unconfirmed += 1;
            }
        }
    }
    let mut lost = Vec::new();
    for id in &record.confirmed {
        let key = record.published[id];
        for &queue in KEYS[key].1 {
            if !found[queue].contains(id) && !record.acked.contains(&(queue, id.clone())) {
                t.lost += 1;
                lost.push(format!("{id} from {}", QUEUES[queue]));
            }
        }
    }
    lost.sort();
    if !lost.is_empty() {
        problems.push(format!(
            "{} confirmed messages lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    assert!(
        problems.is_empty(),
        "kill point {point}: {t}\n{}",
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    t
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Runs the load against `broker` and SIGKILLs it after `delay`; returns what the clients saw.
async fn load_then_kill(broker: &mut Broker, point: usize, delay: Duration) -> Record {
    let record = Arc::new(Mutex::new(Record::default()));
    // A bound on the tasks in case the kill somehow does not end them.
    let until = Instant::now() + delay + STEP;
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for &queue in &CONSUMED {
        let conn = broker
            .connect(&format!("crash-test/consumer-{queue}"))
            .await;
        let ch = ok("open channel", conn.open_channel()).await;
        ok("qos", ch.basic_qos(PREFETCH)).await;
        tasks.push(tokio::spawn(consume(
            conn,
            ch,
            queue,
            Arc::clone(&record),
            until,
        )));
    }
    for publisher in 0..PUBLISHERS {
        let conn = broker
            .connect(&format!("crash-test/publisher-{publisher}"))
            .await;
        let ch = ok("open channel", conn.open_channel()).await;
        ok("confirm.select", ch.confirm_select()).await;
        tasks.push(tokio::spawn(publish(
            conn,
            ch,
            point,
            publisher,
            Arc::clone(&record),
            until,
        )));
    }
    tokio::time::sleep(delay).await;
    broker.kill();
    for task in tasks {
        let abort = task.abort_handle();
        if timeout(STEP, task).await.is_err() {
            abort.abort();
            panic!("kill point {point}: a client task did not end within {STEP:?} of the kill");
        }
    }
    Arc::try_unwrap(record)
        .ok()
        .expect("tasks ended")
        .into_inner()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_keeps_every_confirmed_message() {
    let points = env_u64("WARREN_CRASH_POINTS").unwrap_or(5) as usize;
    let seed = env_u64("WARREN_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    println!(
        "crash test: {points} kill points, seed {seed} (replay with WARREN_CRASH_SEED={seed})"
    );
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut broker = Broker::start(&data_dir, dir.path(), "start-0").await;
    declare_topology(&broker).await;

    let mut totals = Totals::default();
    let mut earlier: HashSet<String> = HashSet::new();
    for point in 0..points {
        // The first kill comes early, often before anything is confirmed: recovery must cope
        // with a store that holds definitions and nothing else (or half a batch).
        let delay = if point == 0 {
            rng.between(0, 100)
        } else {
            rng.between(200, 1500)
        };
        let record = load_then_kill(&mut broker, point, Duration::from_millis(delay)).await;
        broker = Broker::start(&data_dir, dir.path(), &format!("start-{}", point + 1)).await;
        check_definitions(&broker, point).await;
        let mut recovered = Vec::new();
        for index in 0..QUEUES.len() {
            recovered.push(drain(&broker, index, point).await);
        }
        probe_e2e(&broker, point).await;
        let t = verdict(point, &record, &earlier, &recovered);
        println!("kill point {point} after {delay} ms: {t}");
        totals.add(&t);
        earlier.extend(record.published.into_keys());
    }
    println!("crash totals over {} kill points: {totals}", totals.points);
    assert_eq!(totals.failures(), 0, "{totals}");
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let first = Broker::start(&data_dir, dir.path(), "first").await;

    let mut second = Broker::spawn(&data_dir, dir.path().join("second.log"), "second");
    let status = second
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("a second broker on a data dir in use did not exit within 15 s"));
    let output = std::fs::read_to_string(&second.log).unwrap_or_default();
    assert!(
        !status.success(),
        "second broker exited with {status}; output:\n{output}"
    );
    let lower = output.to_lowercase();
    assert!(
        lower.contains("lock") || lower.contains("in use"),
        "the error does not say the data dir is locked or in use:\n{output}"
    );
    assert!(
        output.contains(&data_dir.display().to_string()) || lower.contains("data dir"),
        "the error does not name the data dir:\n{output}"
    );
    assert!(!output.contains("panicked"), "{output}");

    // The first broker is unharmed.
    let conn = first.connect("crash-test/lock-first-still-serves").await;
    let ch = ok("open channel", conn.open_channel()).await;
    ok(
        "declare",
        ch.queue_declare(QueueDeclare {
            queue: "lock.still-works".into(),
            durable: true,
            ..QueueDeclare::default()
        }),
    )
    .await;
    ok("close", conn.close()).await;
}

fn full_properties(n: i32) -> BasicProperties {
    let mut nested = FieldTable::new();
    nested.insert("depth", 2i32);
    nested.insert("flag", true);
    let mut headers = FieldTable::new();
    headers.insert("n", n);
    headers.insert("s", format!("string {n}").as_str());
    headers.insert("big", 1i64 << 40);
    headers.insert("nested", nested);
    BasicProperties {
        content_type: Some("application/json".into()),
        content_encoding: Some("identity".into()),
        headers: Some(headers),
        delivery_mode: Some(2),
        priority: Some(3),
        correlation_id: Some(format!("corr-{n}").into()),
        reply_to: Some("reply.queue".into()),
        expiration: Some("3600000".into()),
        message_id: Some(format!("msg-{n}").into()),
        timestamp: Some(1_790_000_000 + n as u64),
        kind: Some("crash.test".into()),
        user_id: Some("guest".into()),
        app_id: Some("warren-crash-test".into()),
        cluster_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_durable_things_and_drops_transient_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut broker = Broker::start(&data_dir, dir.path(), "clean-0").await;
    let conn = broker.connect("crash-test/clean-restart").await;
    let ch = ok("open channel", conn.open_channel()).await;
    ok(
        "declare clean.x",
        ch.exchange_declare(exchange("clean.x", "topic", false)),
    )
    .await;
    ok(
        "declare clean.transient-x",
        ch.exchange_declare(ExchangeDeclare {
            durable: false,
            ..exchange("clean.transient-x", "direct", false)
        }),
    )
    .await;
    ok(
        "declare clean.durable",
        ch.queue_declare(QueueDeclare {
            queue: "clean.durable".into(),
            durable: true,
            ..QueueDeclare::default()
        }),
    )
    .await;
    ok(
        "declare clean.transient-q",
        ch.queue_declare(QueueDeclare {
            queue: "clean.transient-q".into(),
            durable: false,
            ..QueueDeclare::default()
        }),
    )
    .await;
    ok(
        "bind",
        ch.queue_bind(QueueBind {
            queue: "clean.durable".into(),
            exchange: "clean.x".into(),
            routing_key: "clean.#".into(),
            ..QueueBind::default()
        }),
    )
    .await;
    ok("confirm.select", ch.confirm_select()).await;
    let to_durable = PublishTarget::new("clean.x", "clean.key").unwrap();
    let mut expected = Vec::new();
    for n in 0..12 {
        let body = format!("message {n}");
        let properties = match n % 3 {
            0 => BasicProperties {
                delivery_mode: Some(1),
                ..full_properties(n)
            },
            1 => full_properties(n),
            // No delivery mode at all: transient too.
            _ => BasicProperties {
                delivery_mode: None,
                ..full_properties(n)
            },
        };
        if properties.delivery_mode == Some(2) {
            expected.push((body.clone(), properties.clone()));
        }
        ok(
            "publish",
            ch.basic_publish(&to_durable, &properties, body.as_bytes()),
        )
        .await;
    }
    // A persistent message in a non-durable queue goes when the queue goes.
    let to_transient = PublishTarget::new("", "clean.transient-q").unwrap();
    ok(
        "publish",
        ch.basic_publish(&to_transient, &full_properties(99), b"in a transient queue"),
    )
    .await;
    let nacked = ok("confirms", ch.wait_for_confirms()).await;
    assert_eq!(nacked, 0);
    ok("close", conn.close()).await;

    let status = broker.terminate();
    assert!(status.success(), "SIGTERM exit status {status}");
    let broker = Broker::start(&data_dir, dir.path(), "clean-1").await;

    let conn = broker.connect("crash-test/clean-restart-after").await;
    let ch = ok("open channel", conn.open_channel()).await;
    ok(
        "passive clean.x",
        ch.exchange_declare(exchange("clean.x", "topic", true)),
    )
    .await;
    let declared = ok(
        "passive clean.durable",
        ch.queue_declare(QueueDeclare {
            queue: "clean.durable".into(),
            passive: true,
            ..QueueDeclare::default()
        }),
    )
    .await;
    assert_eq!(
        declared.message_count as usize,
        expected.len(),
        "exactly the persistent messages survive a clean restart"
    );
    let mut consumer = ok(
        "consume",
        ch.basic_consume("clean.durable", ConsumeOptions::default()),
    )
    .await;
    for (n, (body, properties)) in expected.iter().enumerate() {
        let delivery = within("recovered message", STEP, consumer.recv())
            .await
            .expect("consumer ended");
        assert_eq!(
            String::from_utf8_lossy(&delivery.body),
            body.as_str(),
            "message {n} out of order"
        );
        assert_eq!(&delivery.properties, properties, "properties of {body}");
        ok("ack", ch.basic_ack(delivery.delivery_tag, false)).await;
    }
    if let Ok(Some(extra)) = timeout(Duration::from_millis(500), consumer.recv()).await {
        panic!(
            "a transient message survived the restart: {:?}",
            String::from_utf8_lossy(&extra.body)
        );
    }
    // The binding survived too: a new persistent message is routed.
    ok("confirm.select", ch.confirm_select()).await;
    ok(
        "publish after restart",
        ch.basic_publish(&to_durable, &full_properties(100), b"after restart"),
    )
    .await;
    ok("confirms", ch.wait_for_confirms()).await;
    let delivery = within(
        "message through the recovered binding",
        STEP,
        consumer.recv(),
    )
    .await
    .expect("consumer ended");
    assert_eq!(&delivery.body[..], b"after restart");
    ok("ack", ch.basic_ack(delivery.delivery_tag, false)).await;

    for (what, result) in [
        (
            "the non-durable queue",
            passive_queue(&conn, "clean.transient-q").await,
        ),
        (
            "the non-durable exchange",
            passive_exchange(&conn, "clean.transient-x").await,
        ),
    ] {
        match result {
            Err(ClientError::ChannelClosed(reason)) => {
                assert_eq!(reason.reply_code, 404, "{what}: {reason}")
            }
            other => panic!("{what} survived the restart: {other:?}"),
        }
    }
    ok("close", conn.close()).await;
    drop(broker);
}

async fn passive_queue(conn: &Connection, queue: &str) -> Result<(), ClientError> {
    let ch = ok("open channel", conn.open_channel()).await;
    within(
        "passive declare",
        STEP,
        ch.queue_declare(QueueDeclare {
            queue: queue.into(),
            passive: true,
            ..QueueDeclare::default()
        }),
    )
    .await
    .map(|_| ())
}

async fn passive_exchange(conn: &Connection, exchange_name: &str) -> Result<(), ClientError> {
    let ch = ok("open channel", conn.open_channel()).await;
    within(
        "passive declare",
        STEP,
        ch.exchange_declare(exchange(exchange_name, "direct", true)),
    )
    .await
}
