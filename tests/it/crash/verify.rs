//! After a restart: definitions, probe, drain, and the verdict on what was recovered.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use tokio::time::timeout;
use warren::client::{ConsumeOptions, Delivery, PublishTarget};
use warren::protocol::{BasicProperties, FieldTable, FieldValue};

/// Limit for one client request or one wait; generous, the machine is small and shared.
use super::broker::{ok, within, Broker, STEP};
use super::load::*;

/// Totals over every kill point.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) points: usize,
    pub(crate) published: u64,
    pub(crate) confirmed: u64,
    pub(crate) nacked: u64,
    /// Acks sent by the load's consumers (one per queue a message reached).
    pub(crate) acked: u64,
    /// Messages found in the queues after the restart (one per queue).
    pub(crate) recovered: u64,
    /// Recovered although its ack had been sent (the ack did not reach the store): allowed.
    pub(crate) redelivered_after_ack: u64,
    /// Recovered although never confirmed (the broker stored it before it could confirm):
    /// allowed.
    pub(crate) recovered_unconfirmed: u64,
    /// Recovered from an earlier kill point although drained and acked then: allowed, reported.
    pub(crate) resurrected: u64,
    /// A confirmed message, neither acked nor recovered, in a queue it was routed to.
    pub(crate) lost: u64,
    /// The same id twice in one queue's recovery.
    pub(crate) duplicates: u64,
    /// An id recovered from a queue its key does not route to, or never published.
    pub(crate) misrouted: u64,
    /// Recovered messages whose properties came back wrong (delivery mode, id header).
    pub(crate) bad_properties: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, other: &Totals) {
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

    pub(crate) fn failures(&self) -> u64 {
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
pub(crate) async fn check_definitions(broker: &Broker, point: usize) {
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
pub(crate) async fn probe_e2e(broker: &Broker, point: usize) {
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
pub(crate) async fn drain(broker: &Broker, index: usize, point: usize) -> Vec<Delivery> {
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

/// Compares what the clients saw before the kill with what the restarted broker holds: the
/// counts, and a line per problem (none on success).
pub(crate) fn verdict(
    record: &Record,
    earlier: &HashSet<String>,
    recovered: &[Vec<Delivery>],
) -> (Totals, Vec<String>) {
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
    (t, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recovered_message(id: &str, persistent: bool) -> Delivery {
        let mut headers = FieldTable::new();
        headers.insert(ID_HEADER, id);
        Delivery {
            consumer_tag: "drain".into(),
            delivery_tag: 1,
            redelivered: false,
            exchange: EXCHANGE.into(),
            routing_key: "".into(),
            properties: BasicProperties {
                delivery_mode: Some(if persistent { 2 } else { 1 }),
                headers: Some(headers),
                ..BasicProperties::default()
            },
            body: bytes::Bytes::copy_from_slice(id.as_bytes()),
        }
    }

    /// The checker itself, without a broker: it must catch each kind of failure, and accept what a
    /// crash may legitimately do.
    #[test]
    fn the_verdict_catches_loss_duplicates_misrouting_and_bad_properties() {
        let mut record = Record::default();
        // a: key k1 (q1 only), b: k2 (q2 only), c: k.all (q1 and q3), d: k1, never confirmed.
        for (id, key) in [("a", 0), ("b", 1), ("c", 2), ("d", 0)] {
            record.published.insert(id.to_owned(), key);
        }
        for id in ["a", "b", "c"] {
            record.confirmed.insert(id.to_owned());
        }
        record.acked.insert((0, "a".to_owned()));
        let earlier = HashSet::from(["old".to_owned()]);
        let m = recovered_message;

        // Acked a redelivered, b and c recovered, unconfirmed d kept, an old one back: all fine.
        let good = [
            vec![m("a", true), m("c", true), m("d", true)],
            vec![m("b", true)],
            vec![m("c", true), m("old", true)],
        ];
        let (t, problems) = verdict(&record, &earlier, &good);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            (
                t.recovered,
                t.redelivered_after_ack,
                t.recovered_unconfirmed
            ),
            (6, 1, 1)
        );
        assert_eq!(t.resurrected, 1);

        // c missing from q3 (its copy in q1 does not count for q3): lost.
        let (t, problems) = verdict(
            &record,
            &earlier,
            &[vec![m("c", true)], vec![m("b", true)], vec![]],
        );
        assert_eq!((t.lost, problems.len()), (1, 1), "{problems:?}");

        // b twice in q2, a in q2 (k1 does not reach q2), a stranger, a transient copy of c.
        let bad = [
            vec![m("c", false)],
            vec![m("b", true), m("b", true), m("a", true), m("zzz", true)],
            vec![m("c", true)],
        ];
        let (t, _) = verdict(&record, &earlier, &bad);
        assert_eq!(
            (t.duplicates, t.misrouted, t.bad_properties, t.lost),
            (1, 2, 1, 0)
        );
    }
}
