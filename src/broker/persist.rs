//! What the broker keeps in the store, and how it is encoded: the bridge between the AMQP model
//! (vhosts, exchanges, queues, bindings, users, messages) and the opaque records of
//! [`crate::store`].
//!
//! One [`Persistence`] per broker owns the store and its [`GroupCommitter`]; every registry and
//! queue task holds an `Arc` of it. Who writes what:
//!
//! - **Definitions** are written by the registry when a durable exchange, queue or binding is
//!   created or removed (synced; a confirm that follows in the committer's order is therefore
//!   never durable before the queue it went to), and by the broker at boot for users, vhosts and
//!   permissions.
//! - **Persistent messages** (delivery mode 2) routed to durable queues are written by the
//!   publishing channel: one `PutMessage` (the body, once) and one `Enqueue` per durable queue,
//!   at the position the channel took from the queue's position counter. The confirm goes out
//!   once that batch is synced. Dead-lettered copies are written the same way by the queue
//!   task that dead-letters them.
//! - **Acks, purges and deletions** are written by the queue task, batched per wake-up, without
//!   sync: a crash that loses an ack redelivers the message (at-least-once), never loses one.
//! - **Pages** of transient messages are written by the queue task when it pages out.
//!
//! Because the committer applies batches in submission order, a queue's `Dequeue` always
//! follows the `Enqueue` the channel submitted before handing the message over.
//!
//! # Encodings
//!
//! Every variable-length field is a `u32` big-endian length then the bytes; integers are
//! big-endian. The first byte of each value is a version ([`VERSION`]), so a later format can
//! be told apart (the store's own format version guards the key layout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use crate::broker::dead_letter::Deaths;
use crate::broker::message::Message;
use crate::protocol::{ContentHeader, FieldTable, ShortStr, CLASS_BASIC};
use crate::store::{
    Batch, CommitTicket, DefinitionKind, Durability, GroupCommitter, MessageId, Op, Store,
    StoreError,
};

/// The first byte of every value this module writes.
const VERSION: u8 = 1;

/// Most operations one group commit merges.
const GROUP_MAX_OPS: usize = 64 * 1024;

pub const KIND_VHOST: DefinitionKind = DefinitionKind(1);
pub const KIND_USER: DefinitionKind = DefinitionKind(2);
pub const KIND_PERMISSION: DefinitionKind = DefinitionKind(3);
pub const KIND_EXCHANGE: DefinitionKind = DefinitionKind(4);
pub const KIND_QUEUE: DefinitionKind = DefinitionKind(5);
pub const KIND_BINDING: DefinitionKind = DefinitionKind(6);
/// Per queue: the highest position handed to a consumer, so that messages delivered before a
/// restart come back with `redelivered=true`.
pub const KIND_DELIVERED: DefinitionKind = DefinitionKind(7);
/// Topic permissions: (vhost, user, exchange) -> (write, read).
pub const KIND_TOPIC_PERMISSION: DefinitionKind = DefinitionKind(8);

/// The broker's handle on its store.
pub struct Persistence {
    store: Arc<dyn Store>,
    committer: GroupCommitter,
    next_message: AtomicU64,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("committer", &self.committer)
            .finish_non_exhaustive()
    }
}

impl Persistence {
    /// Starts the committer over `store`; message ids resume after the highest one stored.
    pub fn new(store: Arc<dyn Store>) -> Result<Persistence, StoreError> {
        let next = store.max_message_id()?.map_or(1, |id| id + 1);
        let committer = GroupCommitter::spawn(Arc::clone(&store), GROUP_MAX_OPS).map_err(|e| {
            StoreError::Rocks {
                path: Default::default(),
                detail: format!("cannot start the store's commit thread: {e}"),
            }
        })?;
        Ok(Persistence {
            store,
            committer,
            next_message: AtomicU64::new(next),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn submit(&self, batch: Batch, durability: Durability) -> CommitTicket {
        self.committer.submit(batch, durability)
    }

    /// Resolves once every batch submitted before it is applied (an empty, unsynced commit
    /// behind them in the committer's order).
    pub fn barrier(&self) -> CommitTicket {
        self.committer.submit(Batch::new(), Durability::NoSync)
    }

    pub fn next_message_id(&self) -> MessageId {
        self.next_message.fetch_add(1, Ordering::Relaxed)
    }

    pub fn stats(&self) -> crate::store::GroupStats {
        self.committer.stats()
    }

    /// Submits a burst's publish writes, synced: the ticket resolves once they are on disk,
    /// and only then may their confirms go out.
    pub fn submit_publishes(&self, writes: PublishWrites) -> SyncedTicket {
        SyncedTicket(self.submit(writes.0, Durability::Sync))
    }

    /// Resolves once every batch submitted before it is applied and synced (an empty synced
    /// commit behind them in the committer's order).
    pub fn synced_barrier(&self) -> SyncedTicket {
        SyncedTicket(self.submit(Batch::new(), Durability::Sync))
    }

    /// Submits publish writes nobody confirms (dead-lettered copies), without waiting for
    /// the disk.
    pub fn submit_publishes_unsynced(&self, writes: PublishWrites) {
        drop(self.submit(writes.0, Durability::NoSync));
    }
}

/// The store writes of a burst of publishes: a body per persistent message, an index entry
/// per durable queue it went to. The channel gathers them while routing and hands them to
/// [`Persistence::submit_publishes`] in one piece, without seeing the store's types.
#[derive(Debug, Default)]
pub struct PublishWrites(Batch);

impl PublishWrites {
    pub fn new() -> PublishWrites {
        PublishWrites::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(in crate::broker) fn push(&mut self, op: Op) {
        self.0.push(op);
    }

    #[cfg(test)]
    pub(in crate::broker) fn into_batch(self) -> Batch {
        self.0
    }
}

/// Resolves once the publish writes it was returned for are synced, or failed.
#[derive(Debug)]
#[must_use = "the confirms it holds go out only once it resolves"]
pub struct SyncedTicket(CommitTicket);

impl Future for SyncedTicket {
    type Output = Result<(), WriteFailed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_err(WriteFailed)
    }
}

/// Publish writes that did not reach the disk: their confirms must never be sent.
#[derive(Debug)]
pub struct WriteFailed(StoreError);

impl fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for WriteFailed {}

/// The syncs that output holding publisher confirms waits for: it may be written only once
/// every ticket resolved, and not at all if one failed.
#[derive(Debug, Default)]
pub struct ConfirmGate(Vec<SyncedTicket>);

impl ConfirmGate {
    pub fn new() -> ConfirmGate {
        ConfirmGate::default()
    }

    pub fn push(&mut self, ticket: SyncedTicket) {
        self.0.push(ticket);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tickets so far, leaving this gate open (empty).
    pub fn take(&mut self) -> ConfirmGate {
        std::mem::take(self)
    }

    /// Resolves once every ticket did, or at the first failure.
    pub async fn wait(self) -> Result<(), WriteFailed> {
        for ticket in self.0 {
            ticket.await?;
        }
        Ok(())
    }
}

/// Appends length-prefixed fields.
#[derive(Default)]
pub struct Enc(BytesMut);

impl Enc {
    pub fn new() -> Enc {
        Enc(BytesMut::new())
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.put_u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.put_slice(b);
        self
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.put_u8(v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.put_u64(v);
        self
    }

    pub fn table(&mut self, t: &FieldTable) -> &mut Self {
        let mut buf = BytesMut::new();
        t.encode(&mut buf);
        self.bytes(&buf)
    }

    pub fn finish(self) -> Bytes {
        self.0.freeze()
    }
}

/// Reads what [`Enc`] wrote; every getter is `None` on a short or damaged record.
pub struct Dec {
    src: Bytes,
    at: usize,
}

impl Dec {
    pub fn new(src: Bytes) -> Dec {
        Dec { src, at: 0 }
    }

    pub fn bytes(&mut self) -> Option<Bytes> {
        let len = usize::try_from(self.u32()?).ok()?;
        let end = self.at.checked_add(len)?;
        if end > self.src.len() {
            return None;
        }
        let out = self.src.slice(self.at..end);
        self.at = end;
        Some(out)
    }

    pub fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.src.get(self.at..self.at + 4)?;
        self.at += 4;
        Some(u32::from_be_bytes(b.try_into().ok()?))
    }

    pub fn u8(&mut self) -> Option<u8> {
        let b = *self.src.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    pub fn u64(&mut self) -> Option<u64> {
        let b = self.src.get(self.at..self.at + 8)?;
        self.at += 8;
        Some(u64::from_be_bytes(b.try_into().ok()?))
    }

    pub fn table(&mut self) -> Option<FieldTable> {
        FieldTable::decode_exact(&self.bytes()?)
    }

    pub fn is_done(&self) -> bool {
        self.at == self.src.len()
    }
}

/// A message as stored: routing facts, properties, TTL, dead-letter history, body.
pub fn encode_message(m: &Message) -> Bytes {
    let header = ContentHeader {
        class_id: CLASS_BASIC,
        body_size: m.body_size(),
        properties: m.properties.clone(),
    };
    let mut props = BytesMut::new();
    header.encode(&mut props);
    let mut e = Enc::new();
    e.u8(VERSION)
        .bytes(m.exchange.as_bytes())
        .bytes(m.routing_key.as_bytes())
        .bytes(&props)
        .u64(m.ttl.map_or(0, |t| t.saturating_add(1)));
    match &m.deaths {
        Some(deaths) => e.u8(1).table(&deaths.to_table()),
        None => e.u8(0),
    };
    e.bytes(&m.body);
    e.finish()
}

pub fn decode_message(src: Bytes) -> Option<Message> {
    let mut d = Dec::new(src);
    if d.u8()? != VERSION {
        return None;
    }
    let exchange = ShortStr::try_from(d.bytes()?).ok()?;
    let routing_key = ShortStr::try_from(d.bytes()?).ok()?;
    let header = ContentHeader::decode(d.bytes()?).ok()?;
    let ttl = d.u64()?.checked_sub(1);
    let deaths = match d.u8()? {
        0 => None,
        _ => Some(Arc::new(Deaths::from_table(&d.table()?)?)),
    };
    let body = d.bytes()?;
    d.is_done().then_some(Message {
        exchange,
        routing_key,
        properties: header.properties,
        body,
        ttl,
        deaths,
    })
}

/// A queue's per-message state, kept in the queue index entry (and at the head of a page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub redelivered: bool,
    pub deliveries: u32,
    /// Wall-clock expiry in ms since the epoch, so that TTL keeps counting across a restart.
    pub expires_unix_ms: Option<u64>,
    pub priority: u8,
    pub body_size: u64,
}

pub const META_LEN: usize = 1 + 4 + 8 + 1 + 8;

impl Meta {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(u8::from(self.redelivered));
        out.put_u32(self.deliveries);
        out.put_u64(self.expires_unix_ms.unwrap_or(0));
        out.put_u8(self.priority);
        out.put_u64(self.body_size);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(META_LEN);
        self.encode(&mut out);
        out.freeze()
    }

    pub fn decode(b: &[u8]) -> Option<Meta> {
        let b = b.get(..META_LEN)?;
        let expires = u64::from_be_bytes(b[5..13].try_into().ok()?);
        Some(Meta {
            redelivered: b[0] != 0,
            deliveries: u32::from_be_bytes(b[1..5].try_into().ok()?),
            expires_unix_ms: (expires != 0).then_some(expires),
            priority: b[13],
            body_size: u64::from_be_bytes(b[14..22].try_into().ok()?),
        })
    }
}

/// A transient message paged out: its meta, then the message.
pub fn encode_page(meta: &Meta, m: &Message) -> Bytes {
    let mut out = BytesMut::new();
    meta.encode(&mut out);
    out.put_slice(&encode_message(m));
    out.freeze()
}

pub fn decode_page(src: Bytes) -> Option<(Meta, Message)> {
    let meta = Meta::decode(&src)?;
    let message = decode_message(src.slice(META_LEN..))?;
    Some((meta, message))
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall-clock expiry of an instant on the queue's clock.
pub fn instant_to_unix_ms(at: Instant) -> u64 {
    let now = Instant::now();
    let now_ms = now_unix_ms();
    if at >= now {
        now_ms.saturating_add(u64::try_from((at - now).as_millis()).unwrap_or(u64::MAX))
    } else {
        now_ms.saturating_sub(u64::try_from((now - at).as_millis()).unwrap_or(u64::MAX))
    }
}

/// The queue-clock instant of a wall-clock expiry (already past: a moment ago).
pub fn unix_ms_to_instant(ms: u64) -> Instant {
    let now = Instant::now();
    let now_ms = now_unix_ms();
    if ms >= now_ms {
        now + Duration::from_millis(ms - now_ms)
    } else {
        now.checked_sub(Duration::from_millis((now_ms - ms).min(1)))
            .unwrap_or(now)
    }
}

/// The key of a named thing in a vhost (exchange, queue, permission).
pub fn vhost_key(vhost: &str, name: &str) -> Bytes {
    let mut e = Enc::new();
    e.bytes(vhost.as_bytes()).bytes(name.as_bytes());
    e.finish()
}

pub fn decode_vhost_key(key: Bytes) -> Option<(String, String)> {
    let mut d = Dec::new(key);
    let out = (d.string()?, d.string()?);
    d.is_done().then_some(out)
}

/// A durable exchange's record.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeRecord {
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

impl ExchangeRecord {
    pub fn encode(&self) -> Bytes {
        let mut e = Enc::new();
        e.u8(VERSION)
            .bytes(self.kind.as_bytes())
            .u8(u8::from(self.auto_delete))
            .u8(u8::from(self.internal))
            .table(&self.arguments);
        e.finish()
    }

    pub fn decode(src: Bytes) -> Option<ExchangeRecord> {
        let mut d = Dec::new(src);
        (d.u8()? == VERSION).then_some(())?;
        let out = ExchangeRecord {
            kind: d.string()?,
            auto_delete: d.u8()? != 0,
            internal: d.u8()? != 0,
            arguments: d.table()?,
        };
        d.is_done().then_some(out)
    }
}

/// A durable queue's record: its store id ties it to its index entries.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRecord {
    pub id: u64,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

impl QueueRecord {
    pub fn encode(&self) -> Bytes {
        let mut e = Enc::new();
        e.u8(VERSION)
            .u64(self.id)
            .u8(u8::from(self.auto_delete))
            .table(&self.arguments);
        e.finish()
    }

    pub fn decode(src: Bytes) -> Option<QueueRecord> {
        let mut d = Dec::new(src);
        (d.u8()? == VERSION).then_some(())?;
        let out = QueueRecord {
            id: d.u64()?,
            auto_delete: d.u8()? != 0,
            arguments: d.table()?,
        };
        d.is_done().then_some(out)
    }
}

/// A durable binding; the whole binding is the key (a binding has no other state).
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRecord {
    pub vhost: String,
    pub source: String,
    /// Whether the destination is an exchange (else a queue).
    pub to_exchange: bool,
    pub destination: String,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl BindingRecord {
    pub fn key(&self) -> Bytes {
        let mut e = Enc::new();
        e.bytes(self.vhost.as_bytes())
            .bytes(self.source.as_bytes())
            .u8(u8::from(self.to_exchange))
            .bytes(self.destination.as_bytes())
            .bytes(self.routing_key.as_bytes())
            .table(&self.arguments);
        e.finish()
    }

    pub fn decode(key: Bytes) -> Option<BindingRecord> {
        let mut d = Dec::new(key);
        let out = BindingRecord {
            vhost: d.string()?,
            source: d.string()?,
            to_exchange: d.u8()? != 0,
            destination: d.string()?,
            routing_key: d.string()?,
            arguments: d.table()?,
        };
        d.is_done().then_some(out)
    }
}

/// Puts and deletes of definitions, gathered under the registry's lock and submitted after.
#[derive(Debug, Default)]
pub struct DefinitionChanges {
    pub batch: Batch,
}

impl DefinitionChanges {
    pub fn put(&mut self, kind: DefinitionKind, key: Bytes, value: Bytes) {
        self.batch.push(Op::PutDefinition { kind, key, value });
    }

    pub fn delete(&mut self, kind: DefinitionKind, key: Bytes) {
        self.batch.push(Op::DeleteDefinition { kind, key });
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::broker::dead_letter::{Death, DeathReason};
    use crate::protocol::{BasicProperties, FieldValue};

    fn message() -> Message {
        let mut headers = FieldTable::new();
        headers.insert("h", FieldValue::LongStr(Bytes::from_static(b"v")));
        let death = Death {
            queue: "q",
            reason: DeathReason::Rejected,
            exchange: "x",
            routing_keys: &[Bytes::from_static(b"k")],
            bcc: &[],
            now_ms: 1_700_000_000_000,
        };
        Message {
            exchange: "x".into(),
            routing_key: "k".into(),
            properties: BasicProperties {
                headers: Some(headers),
                delivery_mode: Some(2),
                priority: Some(3),
                message_id: Some("id-1".into()),
                ..Default::default()
            },
            body: Bytes::from_static(b"hello"),
            ttl: Some(5000),
            deaths: Some(Arc::new(Deaths::record(None, &death, None))),
        }
    }

    #[test]
    fn a_message_round_trips_with_properties_ttl_and_deaths() {
        let m = message();
        let back = decode_message(encode_message(&m)).unwrap();
        assert_eq!(back.exchange, m.exchange);
        assert_eq!(back.routing_key, m.routing_key);
        assert_eq!(back.properties, m.properties);
        assert_eq!(back.body, m.body);
        assert_eq!(back.ttl, Some(5000));
        assert_eq!(
            back.deaths.unwrap().to_table(),
            m.deaths.as_ref().unwrap().to_table()
        );
        let plain = Message {
            ttl: None,
            deaths: None,
            ..message()
        };
        let back = decode_message(encode_message(&plain)).unwrap();
        assert_eq!((back.ttl, back.deaths.is_none()), (None, true));
    }

    #[test]
    fn damaged_records_decode_to_none_never_panic() {
        let bytes = encode_message(&message());
        for cut in 0..bytes.len() {
            assert!(decode_message(bytes.slice(..cut)).is_none(), "cut at {cut}");
        }
        assert!(decode_page(Bytes::from_static(b"\x01")).is_none());
        assert!(QueueRecord::decode(Bytes::from_static(b"\x01\x00")).is_none());
    }

    #[test]
    fn meta_pages_and_definitions_round_trip() {
        let meta = Meta {
            redelivered: true,
            deliveries: 7,
            expires_unix_ms: Some(123),
            priority: 4,
            body_size: 5,
        };
        assert_eq!(Meta::decode(&meta.to_bytes()), Some(meta));
        let (m2, msg) = decode_page(encode_page(&meta, &message())).unwrap();
        assert_eq!((m2, msg.body), (meta, Bytes::from_static(b"hello")));
        let mut args = FieldTable::new();
        args.insert("x-max-length", FieldValue::I64(10));
        let q = QueueRecord {
            id: 42,
            auto_delete: true,
            arguments: args.clone(),
        };
        assert_eq!(QueueRecord::decode(q.encode()), Some(q));
        let x = ExchangeRecord {
            kind: "topic".into(),
            auto_delete: false,
            internal: true,
            arguments: args.clone(),
        };
        assert_eq!(ExchangeRecord::decode(x.encode()), Some(x));
        let b = BindingRecord {
            vhost: "/".into(),
            source: "x".into(),
            to_exchange: true,
            destination: "y".into(),
            routing_key: "#".into(),
            arguments: args,
        };
        assert_eq!(BindingRecord::decode(b.key()), Some(b));
        assert_eq!(
            decode_vhost_key(vhost_key("/", "q")),
            Some(("/".into(), "q".into()))
        );
    }

    #[test]
    fn expiry_converts_between_clocks() {
        let at = Instant::now() + Duration::from_secs(10);
        let ms = instant_to_unix_ms(at);
        let back = unix_ms_to_instant(ms);
        let diff = if back > at { back - at } else { at - back };
        assert!(diff < Duration::from_millis(50), "{diff:?}");
        assert!(unix_ms_to_instant(1) <= Instant::now());
    }
}
