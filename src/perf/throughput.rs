//! The throughput scenario: N producers and M consumers, each on its own connection, publishing
//! through an exchange to one or more queues; rates and consumer latency per interval.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use super::args::ThroughputArgs;
use super::histogram::Histogram;
use super::report::{print_interval, print_summary, Interval, Latency, Mode, Summary};
use crate::client::{
    AmqpUrl, Channel, ClientError, Confirm, Connection, ConnectionOptions, ConsumeOptions,
    Delivery, PublishTarget,
};
use crate::protocol::{
    BasicProperties, ExchangeDeclare, FieldTable, FieldValue, QueueBind, QueueDeclare,
};

/// Header carrying the send time when the body is too small to hold it.
const TIMESTAMP_HEADER: &str = "x-perf-sent-ns";

/// Body bytes used for the stamp: a 4-byte sequence number then 8 bytes of send time (as
/// PerfTest lays out its bodies).
const STAMP_LEN: usize = 12;

/// How often the run loop looks at its stop conditions.
const POLL: Duration = Duration::from_millis(100);

/// With `-C` and no `-z`: stop when consumers have received nothing for this long after the
/// producers finished (messages lost or never routed must not hang the run).
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// The same with `-D`: the consumers expect more, so a broker paging a deep backlog back in
/// gets longer before the run gives up on it.
const DRAIN_IDLE_EXPECTING: Duration = Duration::from_secs(30);

/// A failed run.
#[derive(Debug)]
pub enum PerfError {
    /// Arguments that cannot work together.
    Args(String),
    /// A client error, with what we were doing.
    Client { context: String, error: ClientError },
}

impl fmt::Display for PerfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PerfError::Args(text) => write!(f, "{text}"),
            PerfError::Client { context, error } => write!(f, "{context}: {error}"),
        }
    }
}

impl std::error::Error for PerfError {}

fn client(context: impl Into<String>) -> impl FnOnce(ClientError) -> PerfError {
    let context = context.into();
    move |error| PerfError::Client { context, error }
}

/// Counters shared by the tasks of a run.
struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    stop: AtomicBool,
    /// Monotonic clock origin for the send stamps (producers and consumers share the process).
    epoch: std::time::Instant,
}

impl Stats {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Runs the scenario described by `args`, printing a line per interval and the summary, and
/// returns the summary.
pub async fn run_throughput(args: ThroughputArgs) -> Result<Summary, PerfError> {
    let url = AmqpUrl::parse(&args.uri).map_err(|e| PerfError::Args(e.to_string()))?;
    if args.queue.is_none() && args.exchange.is_empty() {
        return Err(PerfError::Args(
            "the default exchange (-e \"\") needs a named queue (-u)".into(),
        ));
    }
    if args.producers == 0 && args.consumers == 0 {
        return Err(PerfError::Args("no producers and no consumers".into()));
    }
    let routing_key = args.routing_key.clone().unwrap_or_else(|| {
        format!(
            "perf-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        )
    });
    let queues = args.queue_names();
    declare_topology(&args, &queues, options(&url, "perf-test-setup".into())).await?;

    let stats = Arc::new(Stats {
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        epoch: std::time::Instant::now(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = Run {
        args: &args,
        url: &url,
        queues: &queues,
        routing_key: &routing_key,
        stats: &stats,
        stop: &stop_rx,
    };

    // Consumers first, so that no message is published before its queue has a consumer.
    let consumers = run.start_consumers().await?;
    let producers = run.start_producers().await?;

    let ctrl_c = {
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stats.stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let outcome = monitor(
        &args,
        &stats,
        &producers.tasks,
        &producers.channels,
        &consumers.histograms,
        &producers.confirm_histograms,
        &queues,
    )
    .await;
    ctrl_c.abort();

    stats.stop.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    finish_all(producers.tasks, consumers.tasks).await?;
    let summary = summarize(&args, &url, outcome);
    print_summary(&summary);
    Ok(summary)
}

fn options(url: &AmqpUrl, name: String) -> ConnectionOptions {
    ConnectionOptions {
        url: url.clone(),
        connection_name: Some(name),
        ..ConnectionOptions::default()
    }
}

/// What the producers and consumers of a run are started with.
struct Run<'a> {
    args: &'a ThroughputArgs,
    url: &'a AmqpUrl,
    queues: &'a [String],
    routing_key: &'a str,
    stats: &'a Arc<Stats>,
    stop: &'a watch::Receiver<bool>,
}

/// The consumers of a run and the latency histograms they record into.
struct Consumers {
    tasks: Vec<ConsumerTask>,
    histograms: Vec<Arc<Mutex<Histogram>>>,
}

/// The producers of a run, their channels (for the confirm and return counts) and the
/// confirm latency histograms they record into.
struct Producers {
    tasks: Vec<ProducerTask>,
    channels: Vec<Channel>,
    confirm_histograms: Vec<Arc<Mutex<Histogram>>>,
}

impl Run<'_> {
    async fn start_consumers(&self) -> Result<Consumers, PerfError> {
        let (args, stats) = (self.args, self.stats);
        let mut consumers = Consumers {
            tasks: Vec::new(),
            histograms: Vec::new(),
        };
        for j in 0..args.consumers {
            let conn =
                Connection::connect_with(options(self.url, format!("perf-test-consumer-{j}")))
                    .await
                    .map_err(client(format!("consumer {j}: connecting")))?;
            let histogram = Arc::new(Mutex::new(Histogram::new()));
            let consumer = start_consumer(args, j, self.queues, self.routing_key, &conn).await?;
            consumers.histograms.push(Arc::clone(&histogram));
            consumers.tasks.push(ConsumerTask {
                conn,
                task: spawn_stopping_on_error(
                    Arc::clone(stats),
                    consume(
                        consumer,
                        Arc::clone(stats),
                        histogram,
                        args.clone(),
                        self.stop.clone(),
                    ),
                ),
            });
        }
        Ok(consumers)
    }

    async fn start_producers(&self) -> Result<Producers, PerfError> {
        let (args, stats, queues) = (self.args, self.stats, self.queues);
        let mut producers = Producers {
            tasks: Vec::new(),
            channels: Vec::new(),
            confirm_histograms: Vec::new(),
        };
        for i in 0..args.producers {
            let conn =
                Connection::connect_with(options(self.url, format!("perf-test-producer-{i}")))
                    .await
                    .map_err(client(format!("producer {i}: connecting")))?;
            let channel = conn
                .open_channel()
                .await
                .map_err(client(format!("producer {i}: opening a channel")))?;
            if args.confirm > 0 {
                channel
                    .confirm_select()
                    .await
                    .map_err(client(format!("producer {i}: confirm.select")))?;
            }
            let key = if queues.is_empty() {
                self.routing_key
            } else {
                &queues[i as usize % queues.len()]
            };
            let target = PublishTarget::with_flags(&args.exchange, key, args.mandatory())
                .map_err(client("routing key"))?;
            producers.channels.push(channel.clone());
            let confirm_histogram = Arc::new(Mutex::new(Histogram::new()));
            producers
                .confirm_histograms
                .push(Arc::clone(&confirm_histogram));
            producers.tasks.push(ProducerTask {
                conn,
                task: spawn_stopping_on_error(
                    Arc::clone(stats),
                    produce(
                        channel,
                        target,
                        Arc::clone(stats),
                        args.clone(),
                        confirm_histogram,
                        self.stop.clone(),
                    ),
                ),
            });
        }
        Ok(producers)
    }
}

/// Waits for every task (producers first) and closes its connection; the first error wins.
async fn finish_all(
    producers: Vec<ProducerTask>,
    consumers: Vec<ConsumerTask>,
) -> Result<(), PerfError> {
    let mut failure = None;
    for task in producers.into_iter().map(|p| (p.conn, p.task)) {
        if let Some(error) = finish(task).await {
            failure.get_or_insert(error);
        }
    }
    for task in consumers.into_iter().map(|c| (c.conn, c.task)) {
        if let Some(error) = finish(task).await {
            failure.get_or_insert(error);
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn summarize(args: &ThroughputArgs, url: &AmqpUrl, outcome: Outcome) -> Summary {
    let (confirmed, nacked) = outcome.confirms;
    let sent = outcome.sent;
    let received = outcome.received;
    let duration = outcome.duration.as_secs_f64().max(1e-9);
    Summary {
        mode: Mode::from_args(args),
        broker: format!(
            "amqp://{}/{}",
            url.socket_addr(),
            url.vhost.replace('%', "%25").replace('/', "%2f")
        ),
        duration,
        sent,
        received,
        confirmed,
        nacked,
        returned: outcome.returned,
        sent_rate: sent as f64 / duration,
        received_rate: received as f64 / duration,
        confirmed_rate: confirmed as f64 / duration,
        latency: Latency::from_histogram(&outcome.latency),
        confirm_latency: Latency::from_histogram(&outcome.confirm_latency),
    }
}

struct ProducerTask {
    conn: Connection,
    task: JoinHandle<Result<(), PerfError>>,
}

struct ConsumerTask {
    conn: Connection,
    task: JoinHandle<Result<(), PerfError>>,
}

/// Spawns a producer or consumer; its failure stops the whole run (the error is collected when
/// the task is joined).
fn spawn_stopping_on_error(
    stats: Arc<Stats>,
    task: impl std::future::Future<Output = Result<(), PerfError>> + Send + 'static,
) -> JoinHandle<Result<(), PerfError>> {
    tokio::spawn(async move {
        let result = task.await;
        if result.is_err() {
            stats.stop.store(true, Ordering::Relaxed);
        }
        result
    })
}

/// Waits for a task to end (briefly), then closes its connection. Returns the task's error.
async fn finish(
    (conn, task): (Connection, JoinHandle<Result<(), PerfError>>),
) -> Option<PerfError> {
    let abort = task.abort_handle();
    let result = match timeout(Duration::from_secs(5), task).await {
        Ok(Ok(result)) => result.err(),
        Ok(Err(join)) if join.is_cancelled() => None,
        Ok(Err(join)) => Some(PerfError::Args(format!("task failed: {join}"))),
        Err(_) => {
            abort.abort();
            None
        }
    };
    // The run's numbers are taken; a close that fails now changes nothing.
    let _ = timeout(Duration::from_secs(5), conn.close()).await;
    result
}

async fn declare_topology(
    args: &ThroughputArgs,
    queues: &[String],
    options: ConnectionOptions,
) -> Result<(), PerfError> {
    let conn = Connection::connect_with(options)
        .await
        .map_err(client("connecting"))?;
    let channel = conn
        .open_channel()
        .await
        .map_err(client("opening a channel"))?;
    if !args.exchange.is_empty() && !args.exchange.starts_with("amq.") {
        // Transient and not auto-delete, as PerfTest declares it.
        channel
            .exchange_declare(ExchangeDeclare {
                exchange: args.exchange.as_str().into(),
                kind: args.exchange_type.as_str().into(),
                ..ExchangeDeclare::default()
            })
            .await
            .map_err(client(format!("declaring exchange {:?}", args.exchange)))?;
    }
    for queue in queues {
        declare_named_queue(args, &channel, queue).await?;
    }
    conn.close().await.map_err(client("closing"))
}

async fn declare_named_queue(
    args: &ThroughputArgs,
    channel: &Channel,
    queue: &str,
) -> Result<(), PerfError> {
    channel
        .queue_declare(QueueDeclare {
            queue: queue.into(),
            durable: args.persistent(),
            auto_delete: args.auto_delete,
            ..QueueDeclare::default()
        })
        .await
        .map_err(client(format!("declaring queue {queue:?}")))?;
    if !args.exchange.is_empty() {
        channel
            .queue_bind(QueueBind {
                queue: queue.into(),
                exchange: args.exchange.as_str().into(),
                routing_key: queue.into(),
                ..QueueBind::default()
            })
            .await
            .map_err(client(format!("binding queue {queue:?}")))?;
    }
    Ok(())
}

async fn start_consumer(
    args: &ThroughputArgs,
    index: u32,
    queues: &[String],
    routing_key: &str,
    conn: &Connection,
) -> Result<(Channel, crate::client::Consumer), PerfError> {
    let context = |what: &str| format!("consumer {index}: {what}");
    let channel = conn
        .open_channel()
        .await
        .map_err(client(context("opening a channel")))?;
    if args.prefetch > 0 {
        channel
            .basic_qos(args.prefetch)
            .await
            .map_err(client(context("basic.qos")))?;
    }
    let queue = if queues.is_empty() {
        let ok = channel
            .queue_declare(QueueDeclare {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclare::default()
            })
            .await
            .map_err(client(context("declaring its queue")))?;
        channel
            .queue_bind(QueueBind {
                queue: ok.queue.clone(),
                exchange: args.exchange.as_str().into(),
                routing_key: routing_key.into(),
                ..QueueBind::default()
            })
            .await
            .map_err(client(context("binding its queue")))?;
        ok.queue.as_str().to_owned()
    } else {
        queues[index as usize % queues.len()].clone()
    };
    let consumer = channel
        .basic_consume(
            &queue,
            ConsumeOptions {
                no_ack: args.autoack,
                ..ConsumeOptions::default()
            },
        )
        .await
        .map_err(client(context("basic.consume")))?;
    Ok((channel, consumer))
}

/// The send time a producer stamped into a delivery, in `Stats::epoch` nanoseconds.
fn sent_at(delivery: &Delivery) -> Option<u64> {
    if let Some(stamp) = delivery.body.get(4..STAMP_LEN) {
        return stamp.try_into().ok().map(u64::from_be_bytes);
    }
    match delivery
        .properties
        .headers
        .as_ref()?
        .get(TIMESTAMP_HEADER)?
    {
        FieldValue::I64(ns) => u64::try_from(*ns).ok(),
        _ => None,
    }
}

async fn consume(
    (channel, mut consumer): (Channel, crate::client::Consumer),
    stats: Arc<Stats>,
    histogram: Arc<Mutex<Histogram>>,
    args: ThroughputArgs,
    mut stop: watch::Receiver<bool>,
) -> Result<(), PerfError> {
    const BATCH: usize = 256;
    let mut batch = Vec::with_capacity(BATCH);
    let mut unacked = 0u32;
    // With `-D`: what this consumer still takes; deliveries past it stay unacked and go back
    // to the queue when the connection closes.
    let mut wanted = args.consumer_messages.unwrap_or(u64::MAX);
    while wanted > 0 {
        let received = tokio::select! {
            n = consumer.recv_many(&mut batch, BATCH) => n,
            _ = stop.changed() => return Ok(()),
        };
        if received == 0 {
            if stats.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let error = consumer.error().unwrap_or(ClientError::Closed);
            return Err(PerfError::Client {
                context: "consumer ended".into(),
                error,
            });
        }
        batch.truncate(usize::try_from(wanted).unwrap_or(usize::MAX));
        let received = batch.len();
        wanted -= received as u64;
        // Stamps are only comparable with this process's clock: without producers here, the
        // messages came from another run.
        if args.producers > 0 {
            let mut histogram = crate::client::lock(&histogram);
            for delivery in &batch {
                if let Some(sent) = sent_at(delivery) {
                    histogram.record(stats.now_ns().saturating_sub(sent));
                }
            }
        }
        stats.received.fetch_add(received as u64, Ordering::Relaxed);
        if !args.autoack {
            let every = args.multi_ack_every;
            for delivery in &batch {
                if every <= 1 {
                    channel
                        .basic_ack(delivery.delivery_tag, false)
                        .await
                        .map_err(client("basic.ack"))?;
                    continue;
                }
                unacked += 1;
                if unacked >= every {
                    channel
                        .basic_ack(delivery.delivery_tag, true)
                        .await
                        .map_err(client("basic.ack"))?;
                    unacked = 0;
                }
            }
            // Caught up with a partial batch (or done): ack what is held so a prefetch below
            // the ack interval cannot stall the consumer.
            if unacked > 0 && (received < BATCH || wanted == 0) {
                if let Some(last) = batch.last() {
                    channel
                        .basic_ack(last.delivery_tag, true)
                        .await
                        .map_err(client("basic.ack"))?;
                }
                unacked = 0;
            }
        }
        batch.clear();
    }
    Ok(())
}

/// Publish times of unconfirmed messages, settled by the channel's confirm events into the
/// confirm-latency histogram. A confirm is seen when the producer next looks (before each
/// publish, and as soon as a full window opens), so latency is at most one publish late.
struct ConfirmTracker {
    events: mpsc::UnboundedReceiver<Confirm>,
    /// (sequence number, send time), ascending by sequence number.
    pending: VecDeque<(u64, u64)>,
    histogram: Arc<Mutex<Histogram>>,
}

impl ConfirmTracker {
    fn drain(&mut self, now: u64) {
        let Ok(first) = self.events.try_recv() else {
            return;
        };
        let mut histogram = crate::client::lock(&self.histogram);
        let mut next = Some(first);
        while let Some(confirm) = next {
            if confirm.multiple {
                while let Some(&(seq, sent)) = self.pending.front() {
                    if seq > confirm.delivery_tag {
                        break;
                    }
                    self.pending.pop_front();
                    histogram.record(now.saturating_sub(sent));
                }
            } else if let Ok(at) = self
                .pending
                .binary_search_by_key(&confirm.delivery_tag, |&(seq, _)| seq)
            {
                if let Some((_, sent)) = self.pending.remove(at) {
                    histogram.record(now.saturating_sub(sent));
                }
            }
            next = self.events.try_recv().ok();
        }
    }
}

async fn produce(
    channel: Channel,
    target: PublishTarget,
    stats: Arc<Stats>,
    args: ThroughputArgs,
    confirm_histogram: Arc<Mutex<Histogram>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), PerfError> {
    let mut properties = BasicProperties {
        delivery_mode: args.persistent().then_some(2),
        ..BasicProperties::default()
    };
    let mut body = vec![0u8; args.size];
    // Seeded per producer so that producers do not send identical bodies.
    let mut noise =
        0x9E37_79B9_7F4A_7C15_u64 ^ (u64::from(std::process::id()) << 16) ^ stats.now_ns();
    let window = u64::from(args.confirm);
    let mut tracker = (window > 0).then(|| ConfirmTracker {
        events: channel.confirm_events(),
        pending: VecDeque::with_capacity(args.confirm as usize + 1),
        histogram: confirm_histogram,
    });
    let limit = args.producer_messages.unwrap_or(u64::MAX);
    let mut seq: u64 = 0;
    let started = Instant::now();
    while seq < limit && !stats.stop.load(Ordering::Relaxed) {
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(seq as f64 / args.rate);
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stop.changed() => break,
                }
            }
        }
        if window > 0 {
            tokio::select! {
                ready = channel.wait_unconfirmed_below(window) => {
                    ready.map_err(client("waiting for confirms"))?;
                }
                _ = stop.changed() => break,
            }
        }
        let now = stats.now_ns();
        if let Some(tracker) = tracker.as_mut() {
            tracker.drain(now);
        }
        if args.random_body {
            fill_random(&mut body, &mut noise);
        }
        if let Some(stamp) = body.get_mut(..STAMP_LEN) {
            stamp[..4].copy_from_slice(&(seq as u32).to_be_bytes());
            stamp[4..].copy_from_slice(&now.to_be_bytes());
        } else {
            let mut headers = FieldTable::new();
            headers.insert(TIMESTAMP_HEADER, i64::try_from(now).unwrap_or(i64::MAX));
            properties.headers = Some(headers);
        }
        let confirm_seq = channel
            .basic_publish(&target, &properties, &body)
            .await
            .map_err(client("basic.publish"))?;
        if let Some(tracker) = tracker.as_mut() {
            tracker.pending.push_back((confirm_seq, now));
        }
        stats.sent.fetch_add(1, Ordering::Relaxed);
        seq += 1;
        // Publishing rarely has to wait, so give the scheduler its turn: the writer task woken
        // by this publish may be queued behind us on this worker.
        tokio::task::consume_budget().await;
    }
    // All sent: wait for the last window's confirms, so that `-C N` ends with N confirmed
    // (a backlog run restarts the broker next and counts on them).
    if window > 0 && seq >= limit {
        tokio::select! {
            confirmed = channel.wait_for_confirms() => {
                confirmed.map_err(client("waiting for the last confirms"))?;
            }
            _ = stop.changed() => {}
        }
        if let Some(tracker) = tracker.as_mut() {
            tracker.drain(stats.now_ns());
        }
    }
    Ok(())
}

struct Outcome {
    sent: u64,
    received: u64,
    duration: Duration,
    latency: Histogram,
    confirm_latency: Histogram,
    /// Acked and nacked publishes, summed over producers.
    confirms: (u64, u64),
    returned: u64,
}

/// Moves what the tasks recorded into `into`.
fn collect(histograms: &[Arc<Mutex<Histogram>>], into: &mut Histogram) {
    for h in histograms {
        let mut h = crate::client::lock(h);
        into.merge(&h);
        h.clear();
    }
}

fn confirm_totals(channels: &[Channel]) -> (u64, u64) {
    channels
        .iter()
        .map(Channel::confirm_counts)
        .fold((0, 0), |(a, n), c| (a + c.acked, n + c.nacked))
}

/// Reports every interval until a stop condition holds, and takes the final counts.
async fn monitor(
    args: &ThroughputArgs,
    stats: &Stats,
    producers: &[ProducerTask],
    producer_channels: &[Channel],
    histograms: &[Arc<Mutex<Histogram>>],
    confirm_histograms: &[Arc<Mutex<Histogram>>],
    queues: &[String],
) -> Outcome {
    let start = Instant::now();
    let every = Duration::from_secs(args.interval);
    let mut next_report = start + every;
    let mut last = (start, 0u64, 0u64, 0u64, 0u64);
    let mut total = Histogram::new();
    let mut interval_hist = Histogram::new();
    let mut confirm_total = Histogram::new();
    let mut confirm_interval = Histogram::new();
    let expected = args.producer_messages.map(|count| {
        let fanout = if queues.is_empty() {
            u64::from(args.consumers)
        } else {
            1
        };
        count * u64::from(args.producers) * fanout
    });
    let consumer_target = args
        .consumer_messages
        .map(|count| count * u64::from(args.consumers));
    let idle_limit = if consumer_target.is_some() {
        DRAIN_IDLE_EXPECTING
    } else {
        DRAIN_IDLE
    };
    let mut last_progress = (start, 0u64);
    loop {
        tokio::time::sleep(POLL).await;
        let now = Instant::now();
        let received = stats.received.load(Ordering::Relaxed);
        if received != last_progress.1 {
            last_progress = (now, received);
        }
        if now >= next_report {
            next_report += every;
            collect(histograms, &mut interval_hist);
            total.merge(&interval_hist);
            collect(confirm_histograms, &mut confirm_interval);
            confirm_total.merge(&confirm_interval);
            let sent = stats.sent.load(Ordering::Relaxed);
            let (acked, nacked) = confirm_totals(producer_channels);
            let secs = now.duration_since(last.0).as_secs_f64().max(1e-9);
            let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
            print_interval(
                &Interval {
                    elapsed: now.duration_since(start).as_secs_f64(),
                    sent_rate: rate(sent, last.1),
                    received_rate: rate(received, last.2),
                    confirmed_rate: (args.confirm > 0).then(|| rate(acked, last.3)),
                    nacked_rate: (args.confirm > 0).then(|| rate(nacked, last.4)),
                    latency: Latency::from_histogram(&interval_hist),
                    confirm_latency: Latency::from_histogram(&confirm_interval),
                },
                args.json,
            );
            interval_hist.clear();
            confirm_interval.clear();
            last = (now, sent, received, acked, nacked);
        }
        let elapsed = now.duration_since(start);
        if stats.stop.load(Ordering::Relaxed) {
            break;
        }
        if args
            .time
            .is_some_and(|secs| elapsed >= Duration::from_secs(secs))
        {
            break;
        }
        if args.time.is_none() && producers.iter().all(|p| p.task.is_finished()) {
            let done = match consumer_target {
                Some(target) => received >= target,
                None => expected.is_some_and(|expected| received >= expected),
            };
            let idle = now.duration_since(last_progress.0) >= idle_limit;
            if done || idle || args.consumers == 0 {
                break;
            }
        }
    }
    let duration = start.elapsed();
    collect(histograms, &mut total);
    collect(confirm_histograms, &mut confirm_total);
    Outcome {
        sent: stats.sent.load(Ordering::Relaxed),
        received: stats.received.load(Ordering::Relaxed),
        duration,
        latency: total,
        confirm_latency: confirm_total,
        confirms: confirm_totals(producer_channels),
        returned: producer_channels.iter().map(Channel::returned).sum(),
    }
}

/// Overwrites `body` with xorshift64 output: incompressible, and cheap next to a publish.
fn fill_random(body: &mut [u8], state: &mut u64) {
    for chunk in body.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn delivery(body: &[u8], properties: BasicProperties) -> Delivery {
        Delivery {
            consumer_tag: "t".into(),
            delivery_tag: 1,
            redelivered: false,
            exchange: "".into(),
            routing_key: "".into(),
            properties,
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn confirm_tracker_settles_single_and_multiple() {
        let (tx, rx) = mpsc::unbounded_channel();
        let histogram = Arc::new(Mutex::new(Histogram::new()));
        let mut tracker = ConfirmTracker {
            events: rx,
            pending: (1..=5).map(|seq| (seq, seq * 100)).collect(),
            histogram: Arc::clone(&histogram),
        };
        let confirm = |delivery_tag, multiple| Confirm {
            delivery_tag,
            multiple,
            ack: true,
        };
        tx.send(confirm(3, false)).unwrap();
        tx.send(confirm(2, true)).unwrap();
        tracker.drain(1_000);
        assert_eq!(tracker.pending, [(4, 400), (5, 500)]);
        tx.send(confirm(9, true)).unwrap();
        tracker.drain(2_000);
        assert!(tracker.pending.is_empty());
        let h = histogram.lock().unwrap();
        assert_eq!(h.count(), 5);
        // 1000-300, 1000-100, 1000-200, 2000-400, 2000-500
        assert_eq!((h.min(), h.max()), (Some(700), Some(1_600)));
    }

    #[test]
    fn stamp_from_body_or_header() {
        let mut body = vec![0u8; 16];
        body[4..12].copy_from_slice(&123_456u64.to_be_bytes());
        assert_eq!(
            sent_at(&delivery(&body, BasicProperties::default())),
            Some(123_456)
        );
        let mut headers = FieldTable::new();
        headers.insert(TIMESTAMP_HEADER, 99i64);
        let properties = BasicProperties {
            headers: Some(headers),
            ..BasicProperties::default()
        };
        assert_eq!(sent_at(&delivery(b"tiny", properties)), Some(99));
        assert_eq!(
            sent_at(&delivery(b"tiny", BasicProperties::default())),
            None
        );
    }
}
