//! Dead-lettering: the death history a message carries, the properties of the dead-lettered
//! copy exactly as RabbitMQ 4.x writes them (`x-death`, `x-first-death-*`, `x-last-death-*`),
//! where the copy is routed, DLX cycle detection, and per-message TTL (`expiration`).
//!
//! The history is the broker's own record ([`Deaths`], RabbitMQ 4.x's `deaths` annotation),
//! kept beside the message and never read back from its headers: like 4.x (and unlike 3.x,
//! 3.13.3+ and LavinMQ) a client-supplied `x-death` header is an opaque header, replaced when
//! the broker dead-letters the message. Writing the headers is idempotent, so a copy that is
//! dead-lettered again can start from the headers we wrote last time.

mod expiration;

use bytes::Bytes;

use crate::protocol::{BasicProperties, FieldTable, FieldValue, ShortStr};

pub use expiration::{
    effective_ttl, expires_at, parse_expiration, ExpirationError, ExpirationProblem,
};

/// Why a message was dead-lettered; the text is the `reason` RabbitMQ writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeathReason {
    /// basic.reject / basic.nack with requeue=false.
    Rejected,
    /// Its TTL (queue or message) ran out at the head of the queue.
    Expired,
    /// Dropped from the head by `x-max-length(-bytes)` (or refused by `reject-publish-dlx`).
    Maxlen,
    /// Returned more often than `x-delivery-limit` allows.
    DeliveryLimit,
}

impl DeathReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::Maxlen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }

    pub fn parse(text: &str) -> Option<DeathReason> {
        match text {
            "rejected" => Some(DeathReason::Rejected),
            "expired" => Some(DeathReason::Expired),
            "maxlen" => Some(DeathReason::Maxlen),
            "delivery_limit" => Some(DeathReason::DeliveryLimit),
            _ => None,
        }
    }
}

/// One `{queue, reason}` entry of the history: one `x-death` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeathRecord {
    pub queue: ShortStr,
    pub reason: DeathReason,
    /// The exchange and routing keys (routing key + CC, never BCC) the message had when it
    /// first died this way; a later death of the same kind only bumps `count` (4.x
    /// `update_death`).
    pub exchange: ShortStr,
    pub routing_keys: Vec<Bytes>,
    /// How many times; written as a long.
    pub count: u64,
    /// Milliseconds since the epoch; `x-death` `time` is the first one, in seconds.
    pub first_time_ms: u64,
    pub last_time_ms: u64,
    /// The message's TTL in ms when this entry was created (written as
    /// `original-expiration`).
    pub original_expiration: Option<u64>,
}

/// `(queue, reason, exchange)` of one death: what `x-first-death-*` / `x-last-death-*` show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeathSummary {
    pub queue: ShortStr,
    pub reason: DeathReason,
    pub exchange: ShortStr,
}

/// A message's death history.
///
/// Invariants: at least one record; at most one record per `{queue, reason}`; records are
/// ordered most recent death first (an entry that dies again moves to the front); `first`
/// never changes once set; `last` describes `records[0]`'s latest death.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deaths {
    records: Vec<DeathRecord>,
    first: DeathSummary,
    last: DeathSummary,
}

impl Deaths {
    /// The records, most recent first (the `x-death` order).
    pub fn records(&self) -> &[DeathRecord] {
        &self.records
    }

    pub fn first(&self) -> &DeathSummary {
        &self.first
    }

    pub fn last(&self) -> &DeathSummary {
        &self.last
    }

    /// Adds one death to `history` (`mc:record_death/4`).
    pub fn record(history: Option<&Deaths>, death: &Death<'_>, ttl: Option<u64>) -> Deaths {
        let queue = ShortStr::from(death.queue);
        let exchange = ShortStr::from(death.exchange);
        let summary = DeathSummary {
            queue: queue.clone(),
            reason: death.reason,
            exchange: exchange.clone(),
        };
        let fresh = || DeathRecord {
            queue: queue.clone(),
            reason: death.reason,
            exchange: exchange.clone(),
            routing_keys: death.routing_keys.to_vec(),
            count: 1,
            first_time_ms: death.now_ms,
            last_time_ms: death.now_ms,
            original_expiration: ttl,
        };
        let Some(history) = history else {
            return Deaths {
                records: vec![fresh()],
                first: summary.clone(),
                last: summary,
            };
        };
        let mut records = history.records.clone();
        let existing = records
            .iter()
            .position(|r| r.queue == queue && r.reason == death.reason);
        let record = match existing {
            Some(index) => {
                let mut record = records.remove(index);
                record.count = record.count.saturating_add(1);
                record.last_time_ms = death.now_ms;
                record
            }
            None => fresh(),
        };
        records.insert(0, record);
        Deaths {
            records,
            first: history.first.clone(),
            last: summary,
        }
    }

    /// Would sending the message to `target_queue` close a dead-letter cycle? True when the
    /// queue is already in the history and none of the deaths since (and including) its most
    /// recent one there was a rejection: a fully automatic loop (TTL, length) that would spin
    /// forever. A loop that involves a consumer rejecting is the retry pattern and allowed.
    /// This is `rabbit_dead_letter:is_cycle` over the history ordered most recent first; the
    /// caller skips it for a `rejected` death (see [`DeadLettered::is_cycle`]).
    pub fn returns_to(&self, target_queue: &str) -> bool {
        let mut since = Vec::new();
        for record in &self.records {
            since.push(record.reason);
            if record.queue == target_queue {
                return !since.contains(&DeathReason::Rejected);
            }
        }
        false
    }

    /// The `x-death` header value: an array of tables, most recent first, each with the
    /// fields in 4.x's order (`mc_amqpl:death_table/7`): `original-expiration` (only when the
    /// message had a TTL), `count`, `reason`, `queue`, `time`, `exchange`, `routing-keys`.
    pub fn x_death(&self) -> FieldValue {
        FieldValue::Array(
            self.records
                .iter()
                .map(|record| {
                    let mut fields: Vec<(ShortStr, FieldValue)> = Vec::with_capacity(7);
                    if let Some(ttl) = record.original_expiration {
                        fields.push(("original-expiration".into(), longstr(ttl.to_string())));
                    }
                    // A count above i64::MAX cannot happen (one death per dead-lettering).
                    let count = i64::try_from(record.count).unwrap_or(i64::MAX);
                    fields.push(("count".into(), FieldValue::I64(count)));
                    fields.push(("reason".into(), longstr(record.reason.as_str())));
                    fields.push(("queue".into(), longstr(record.queue.as_str())));
                    fields.push((
                        "time".into(),
                        FieldValue::Timestamp(record.first_time_ms / 1000),
                    ));
                    fields.push(("exchange".into(), longstr(record.exchange.as_str())));
                    fields.push((
                        "routing-keys".into(),
                        FieldValue::Array(
                            record
                                .routing_keys
                                .iter()
                                .map(|key| FieldValue::LongStr(key.clone()))
                                .collect(),
                        ),
                    ));
                    FieldValue::Table(FieldTable::from(fields))
                })
                .collect(),
        )
    }

    /// Writes the history into `headers` as RabbitMQ 4.x's `mc_amqpl:protocol_state/2` does:
    /// `x-death` replaces any header of that name in place, the table is then sorted by key
    /// (`rabbit_misc:set_table_value/4` sorts), and the six summary headers are put in front in
    /// the order `maps:fold` over the annotations leaves them: `x-last-death-reason`,
    /// `-queue`, `-exchange`, then `x-first-death-reason`, `-queue`, `-exchange`.
    ///
    /// Any summary header already in `headers` (ours from an earlier dead-lettering, or a
    /// client's) is removed first, so each key appears once; a reader taking the first entry,
    /// as RabbitMQ's `table_lookup` does, sees the same values as with 4.x.
    pub fn write_headers(&self, headers: FieldTable) -> FieldTable {
        let summary_keys = [
            "x-last-death-reason",
            "x-last-death-queue",
            "x-last-death-exchange",
            "x-first-death-reason",
            "x-first-death-queue",
            "x-first-death-exchange",
        ];
        // RabbitMQ re-encodes the table it parsed, so a client's `L` comes back as `l`.
        let mut entries: Vec<(ShortStr, FieldValue)> = headers
            .into_rabbitmq_codes()
            .into_iter()
            .filter(|(key, _)| !summary_keys.contains(&key.as_str()))
            .collect();
        let x_death = self.x_death();
        match entries.iter_mut().find(|(key, _)| key == "x-death") {
            Some((_, value)) => *value = x_death,
            None => entries.push(("x-death".into(), x_death)),
        }
        // Stable, bytewise: Erlang's lists:keysort/2 on binaries.
        entries.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
        let summary = [
            ("x-last-death-reason", longstr(self.last.reason.as_str())),
            ("x-last-death-queue", longstr(self.last.queue.as_str())),
            (
                "x-last-death-exchange",
                longstr(self.last.exchange.as_str()),
            ),
            ("x-first-death-reason", longstr(self.first.reason.as_str())),
            ("x-first-death-queue", longstr(self.first.queue.as_str())),
            (
                "x-first-death-exchange",
                longstr(self.first.exchange.as_str()),
            ),
        ];
        let mut out: Vec<(ShortStr, FieldValue)> = summary
            .into_iter()
            .map(|(key, value)| (ShortStr::from(key), value))
            .collect();
        out.extend(entries);
        FieldTable::from(out)
    }
}

/// Persistence: the history as a field table (so the store can keep it with the message
/// using the codec it already has) and back. Not a wire format: clients never see it.
impl Deaths {
    pub fn to_table(&self) -> FieldTable {
        let summary = |s: &DeathSummary| {
            FieldValue::Table(FieldTable::from(vec![
                ("queue".into(), longstr(s.queue.as_str())),
                ("reason".into(), longstr(s.reason.as_str())),
                ("exchange".into(), longstr(s.exchange.as_str())),
            ]))
        };
        let millis = |ms: u64| FieldValue::I64(i64::try_from(ms).unwrap_or(i64::MAX));
        let records = self
            .records
            .iter()
            .map(|r| {
                let mut fields: Vec<(ShortStr, FieldValue)> = vec![
                    ("queue".into(), longstr(r.queue.as_str())),
                    ("reason".into(), longstr(r.reason.as_str())),
                    ("exchange".into(), longstr(r.exchange.as_str())),
                    (
                        "routing-keys".into(),
                        FieldValue::Array(
                            r.routing_keys
                                .iter()
                                .map(|k| FieldValue::LongStr(k.clone()))
                                .collect(),
                        ),
                    ),
                    ("count".into(), millis(r.count)),
                    ("first-time".into(), millis(r.first_time_ms)),
                    ("last-time".into(), millis(r.last_time_ms)),
                ];
                if let Some(ttl) = r.original_expiration {
                    fields.push(("ttl".into(), millis(ttl)));
                }
                FieldValue::Table(FieldTable::from(fields))
            })
            .collect();
        FieldTable::from(vec![
            ("records".into(), FieldValue::Array(records)),
            ("first".into(), summary(&self.first)),
            ("last".into(), summary(&self.last)),
        ])
    }

    /// `None` when the table is not one [`Deaths::to_table`] wrote.
    pub fn from_table(table: &FieldTable) -> Option<Deaths> {
        fn text(table: &FieldTable, key: &str) -> Option<ShortStr> {
            match table.get(key)? {
                FieldValue::LongStr(bytes) => ShortStr::try_from(bytes.clone()).ok(),
                _ => None,
            }
        }
        fn number(table: &FieldTable, key: &str) -> Option<u64> {
            match table.get(key)? {
                FieldValue::I64(n) => u64::try_from(*n).ok(),
                _ => None,
            }
        }
        fn sub<'a>(table: &'a FieldTable, key: &str) -> Option<&'a FieldTable> {
            match table.get(key)? {
                FieldValue::Table(inner) => Some(inner),
                _ => None,
            }
        }
        fn summary(table: &FieldTable) -> Option<DeathSummary> {
            Some(DeathSummary {
                queue: text(table, "queue")?,
                reason: DeathReason::parse(&text(table, "reason")?)?,
                exchange: text(table, "exchange")?,
            })
        }
        let Some(FieldValue::Array(items)) = table.get("records") else {
            return None;
        };
        let mut records = Vec::with_capacity(items.len());
        for item in items {
            let FieldValue::Table(r) = item else {
                return None;
            };
            let Some(FieldValue::Array(keys)) = r.get("routing-keys") else {
                return None;
            };
            let routing_keys = keys
                .iter()
                .map(|k| match k {
                    FieldValue::LongStr(bytes) => Some(bytes.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            records.push(DeathRecord {
                queue: text(r, "queue")?,
                reason: DeathReason::parse(&text(r, "reason")?)?,
                exchange: text(r, "exchange")?,
                routing_keys,
                count: number(r, "count")?,
                first_time_ms: number(r, "first-time")?,
                last_time_ms: number(r, "last-time")?,
                original_expiration: match r.get("ttl") {
                    None => None,
                    Some(_) => Some(number(r, "ttl")?),
                },
            });
        }
        if records.is_empty() {
            return None;
        }
        Some(Deaths {
            records,
            first: summary(sub(table, "first")?)?,
            last: summary(sub(table, "last")?)?,
        })
    }
}

fn longstr(text: impl Into<String>) -> FieldValue {
    FieldValue::LongStr(Bytes::from(text.into()))
}

/// One death: which queue let the message go, why, and how the message had been published
/// (or last dead-lettered) to it.
#[derive(Debug, Clone, Copy)]
pub struct Death<'a> {
    pub queue: &'a str,
    pub reason: DeathReason,
    /// The exchange the message was published (or last dead-lettered) to; `""` for the default.
    pub exchange: &'a str,
    /// Its routing keys: the routing key then the `CC` keys, never the `BCC` ones.
    pub routing_keys: &'a [Bytes],
    /// Extra keys used only for routing the copy when there is no dead-letter routing key:
    /// RabbitMQ 3.10.8 was seen routing a dead-lettered message to its `BCC` keys too, while
    /// leaving them out of `x-death`. Empty if the caller does not keep them.
    pub bcc: &'a [Bytes],
    /// Milliseconds since the epoch.
    pub now_ms: u64,
}

/// The queue's dead-letter settings (`x-dead-letter-exchange`, `x-dead-letter-routing-key`).
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterTarget<'a> {
    pub exchange: &'a [u8],
    pub routing_key: Option<&'a [u8]>,
}

/// The dead-lettered copy: publish `properties` (with the same body) to `exchange`, routed
/// with `routing_keys` only (do not derive CC/BCC from the headers again), skipping every
/// target queue for which [`DeadLettered::is_cycle`] holds. Store `deaths` with the copy,
/// and `exchange` / `x_death_routing_keys` as how it was published, for its next death.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLettered {
    pub properties: BasicProperties,
    pub deaths: Deaths,
    pub reason: DeathReason,
    pub exchange: Bytes,
    /// The keys to route the copy with.
    pub routing_keys: Vec<Bytes>,
    /// The keys the copy counts as published with (what its next `x-death` entry shows):
    /// `routing_keys` without the BCC ones.
    pub x_death_routing_keys: Vec<Bytes>,
}

impl DeadLettered {
    /// `rabbit_dead_letter:detect_cycles/3`: a rejected message is never dropped as a cycle;
    /// otherwise see [`Deaths::returns_to`]. RabbitMQ logs and drops the copy for such a queue.
    pub fn is_cycle(&self, target_queue: &str) -> bool {
        is_cycle(self.reason, &self.deaths, target_queue)
    }
}

/// Whether a copy dead-lettered for `reason` with history `deaths` must not go to
/// `target_queue` (see [`DeadLettered::is_cycle`]).
pub fn is_cycle(reason: DeathReason, deaths: &Deaths, target_queue: &str) -> bool {
    reason != DeathReason::Rejected && deaths.returns_to(target_queue)
}

/// Dead-letters a message: records the death in its history and builds the copy's properties
/// and routing as RabbitMQ 4.x does (`rabbit_dead_letter:publish/5`, `mc:record_death/4`):
///
/// - `x-death` and the summary headers as [`Deaths::write_headers`] writes them;
/// - `expiration` is removed, and kept in the new `x-death` entry as `original-expiration`;
/// - routed with the dead-letter routing key if the queue has one (and then the `CC` header is
///   removed), else with the keys the message was published with;
/// - every other property and header is kept.
pub fn dead_letter(
    properties: &BasicProperties,
    history: Option<&Deaths>,
    death: &Death<'_>,
    target: &DeadLetterTarget<'_>,
) -> DeadLettered {
    // A message with an invalid expiration was refused at publish, so this is its TTL.
    let ttl = properties
        .expiration
        .as_ref()
        .and_then(|e| parse_expiration(e).ok());
    let deaths = Deaths::record(history, death, ttl);

    let mut headers = properties.headers.clone().unwrap_or_default();
    let (routing_keys, x_death_routing_keys) = match target.routing_key {
        Some(key) => {
            headers.remove("CC");
            let keys = vec![Bytes::copy_from_slice(key)];
            (keys.clone(), keys)
        }
        None => {
            let mut keys = death.routing_keys.to_vec();
            keys.extend(death.bcc.iter().cloned());
            (keys, death.routing_keys.to_vec())
        }
    };
    let mut copy = properties.clone();
    copy.expiration = None;
    copy.headers = Some(deaths.write_headers(headers));
    DeadLettered {
        properties: copy,
        deaths,
        reason: death.reason,
        exchange: Bytes::copy_from_slice(target.exchange),
        routing_keys,
        x_death_routing_keys,
    }
}

#[cfg(test)]
mod tests;
