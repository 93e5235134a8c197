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
//! - `WARREN_CRASH_MAX_DELAY_MS`: the latest kill, default 1500 ms. Longer runs build deeper
//!   queues: q3 (no consumer) pages to disk past 4096 messages, which takes about 1.5 s here.
//!
//! `cargo test --test it crash:: -- --nocapture` shows per-point lines and the totals
//! (published and confirmed count messages; acked and recovered count queue copies: a `k.all`
//! message reaches two queues). The long run is
//! `WARREN_CRASH_POINTS=20 cargo test --test it crash:: -- --nocapture`. On a failure the tail
//! of the broker's log (stdout and stderr) is printed.
//!
//! Also here: a second broker on a data dir in use is refused, and a clean restart (SIGTERM)
//! keeps exactly the durable definitions and the persistent messages of durable queues.
//!
//! `broker` runs the child process, `load` declares the topology and runs the clients of one kill
//! point, `verify` checks the restarted broker and judges what it recovered.

mod broker;
mod load;
mod verify;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio::time::timeout;
use warren::client::{Channel, ClientError, Connection, ConsumeOptions, PublishTarget};
use warren::protocol::{BasicProperties, ExchangeDeclare, FieldTable, QueueBind, QueueDeclare};

use broker::*;
use load::*;
use verify::*;

/// Runs the load against `broker` and SIGKILLs it after `delay`; returns what the clients saw.
async fn load_then_kill(broker: &mut Broker, point: usize, delay: Duration) -> Record {
    let record = Arc::new(Mutex::new(Record::default()));
    // A bound on the tasks in case the kill somehow does not end them.
    let until = Instant::now() + delay + STEP;
    // Every connection is set up before any task starts, so that a delay of 0 kills the
    // broker before anything can have been confirmed.
    let mut consumers = Vec::new();
    for &queue in &CONSUMED {
        let conn = broker
            .connect(&format!("crash-test/consumer-{queue}"))
            .await;
        let ch = ok("open channel", conn.open_channel()).await;
        ok("qos", ch.basic_qos(PREFETCH)).await;
        consumers.push((conn, ch, queue));
    }
    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        let conn = broker
            .connect(&format!("crash-test/publisher-{publisher}"))
            .await;
        let ch = ok("open channel", conn.open_channel()).await;
        ok("confirm.select", ch.confirm_select()).await;
        publishers.push((conn, ch, publisher));
    }
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for (conn, ch, queue) in consumers {
        let record = Arc::clone(&record);
        tasks.push(tokio::spawn(consume(conn, ch, queue, record, until)));
    }
    for (conn, ch, publisher) in publishers {
        let record = Arc::clone(&record);
        tasks.push(tokio::spawn(publish(
            conn, ch, point, publisher, record, until,
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
    let max_delay = env_u64("WARREN_CRASH_MAX_DELAY_MS")
        .unwrap_or(1500)
        .max(200);
    let seed = env_u64("WARREN_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    println!(
        "crash test: {points} kill points up to {max_delay} ms, seed {seed} \
         (replay with WARREN_CRASH_SEED={seed})"
    );
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut broker = Broker::start(&data_dir, dir.path(), "start-0").await;
    declare_topology(&broker).await;

    let mut totals = Totals::default();
    let mut earlier: HashSet<String> = HashSet::new();
    for point in 0..points {
        // The first kill comes as soon as the clients are connected, before anything is
        // confirmed (recovery must cope with a store holding definitions and at most half a
        // batch); the second within the first 100 ms; the rest anywhere in 200 ms-max_delay.
        let delay = match point {
            0 => 0,
            1 => rng.between(0, 100),
            _ => rng.between(200, max_delay),
        };
        let record = load_then_kill(&mut broker, point, Duration::from_millis(delay)).await;
        broker = Broker::start(&data_dir, dir.path(), &format!("start-{}", point + 1)).await;
        check_definitions(&broker, point).await;
        let mut recovered = Vec::new();
        for index in 0..QUEUES.len() {
            recovered.push(drain(&broker, index, point).await);
        }
        probe_e2e(&broker, point).await;
        let (t, problems) = verdict(&record, &earlier, &recovered);
        assert!(
            problems.is_empty(),
            "kill point {point}: {t}\n{}",
            problems[..problems.len().min(20)].join("\n")
        );
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
    declare_clean_topology(&ch).await;
    let expected = publish_mixed_persistence(&ch).await;
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
    consume_the_survivors(&ch, &expected).await;
    assert_transients_are_gone(&conn).await;
    ok("close", conn.close()).await;
    drop(broker);
}

/// Exchanges clean.x (durable topic) and clean.transient-x; queues clean.durable and
/// clean.transient-q; clean.durable bound to clean.x by `clean.#`.
async fn declare_clean_topology(ch: &Channel) {
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
}

/// Twelve messages to clean.durable (persistent, transient, no delivery mode, in turn) and a
/// persistent one to clean.transient-q, all confirmed; returns the persistent ones to
/// clean.durable, in order: what a clean restart must keep.
async fn publish_mixed_persistence(ch: &Channel) -> Vec<(String, BasicProperties)> {
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
    expected
}

/// Consumes exactly `expected` from clean.durable, then checks that the binding still routes.
async fn consume_the_survivors(ch: &Channel, expected: &[(String, BasicProperties)]) {
    let to_durable = PublishTarget::new("clean.x", "clean.key").unwrap();
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
}

/// The non-durable queue and exchange did not survive the restart.
async fn assert_transients_are_gone(conn: &Connection) {
    for (what, result) in [
        (
            "the non-durable queue",
            passive_queue(conn, "clean.transient-q").await,
        ),
        (
            "the non-durable exchange",
            passive_exchange(conn, "clean.transient-x").await,
        ),
    ] {
        match result {
            Err(ClientError::ChannelClosed(reason)) => {
                assert_eq!(reason.reply_code, 404, "{what}: {reason}")
            }
            other => panic!("{what} survived the restart: {other:?}"),
        }
    }
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

/// A declare-ok is answered only once the definition is in the store, as RabbitMQ answers
/// it: a SIGKILL right after the last answer loses none. The declarations are pipelined (all
/// sent before the first answer), so before this was so the broker answered them while most
/// of their writes still waited in the committer, and the kill lost the tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_answered_before_a_kill_survive_it() {
    const EXCHANGES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut broker = Broker::start(&data_dir, dir.path(), "defs-start-0").await;
    let mut c = crate::common::RawClient::open(broker.addr, "crash-test/defs-declare", 0).await;
    c.open_channel(1).await;
    let mut burst = Vec::new();
    for i in 0..EXCHANGES {
        let declare = exchange(&format!("defs.x{i}"), "fanout", false);
        burst.extend(crate::common::encoded(
            1,
            &warren::protocol::Method::ExchangeDeclare(declare),
        ));
    }
    c.send_raw(&burst).await;
    for _ in 0..EXCHANGES {
        c.expect_method("exchange.declare-ok").await;
    }
    broker.kill();
    let broker = Broker::start(&data_dir, dir.path(), "defs-start-1").await;
    let conn = broker.connect("crash-test/defs-check").await;
    let mut lost = Vec::new();
    for i in 0..EXCHANGES {
        let name = format!("defs.x{i}");
        if passive_exchange(&conn, &name).await.is_err() {
            lost.push(name);
        }
    }
    assert!(
        lost.is_empty(),
        "{} exchanges answered declare-ok before the kill and are gone: {lost:?}",
        lost.len()
    );
}
