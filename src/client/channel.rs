//! Channels: requests and replies, publishing with confirms, consumers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, Notify};

use super::connection::{unexpected, ConnShared};
use super::{lock, ClientError};
use crate::protocol::{
    encode_body, encode_method, BasicAck, BasicCancel, BasicConsume, BasicDeliver, BasicNack,
    BasicProperties, BasicPublish, BasicQos, BasicReject, ChannelClose, ChannelOpen, ConfirmSelect,
    ExchangeBind, ExchangeDeclare, ExchangeDelete, FieldTable, Method, QueueBind, QueueDeclare,
    QueueDeclareOk, QueueDelete, QueuePurge, QueueUnbind, ReplyCode, ShortStr, CLASS_BASIC,
    FRAME_END, FRAME_HEADER, FRAME_METHOD,
};

/// A message delivered to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub consumer_tag: ShortStr,
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub properties: BasicProperties,
    /// A view of the read buffer when the body came in one frame: no copy.
    pub body: Bytes,
}

/// What a content header and body complete, as the reader tracks it.
pub(crate) enum ContentKind {
    Deliver(BasicDeliver),
    /// Counted, then dropped: this client has no return handler yet.
    Return,
    /// Content for a channel we already closed.
    Dropped,
}

/// Where to publish, with the `basic.publish` method encoded once so that publishing copies
/// bytes instead of building strings per message.
#[derive(Debug, Clone)]
pub struct PublishTarget {
    /// The method frame payload (class id, method id, arguments).
    method: Bytes,
}

impl PublishTarget {
    /// Publish to `exchange` ("" is the default exchange) with `routing_key`.
    pub fn new(exchange: &str, routing_key: &str) -> Result<PublishTarget, ClientError> {
        PublishTarget::with_flags(exchange, routing_key, false)
    }

    /// As [`PublishTarget::new`], with the `mandatory` flag (unroutable messages come back as
    /// `basic.return`, which this client counts and drops).
    pub fn with_flags(
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
    ) -> Result<PublishTarget, ClientError> {
        let method = Method::BasicPublish(BasicPublish {
            exchange: ShortStr::new(exchange)?,
            routing_key: ShortStr::new(routing_key)?,
            mandatory,
            immediate: false,
        });
        let mut out = BytesMut::new();
        method.encode(&mut out);
        Ok(PublishTarget {
            method: out.freeze(),
        })
    }
}

/// Options for [`Channel::basic_consume`].
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Empty: the client picks a tag (it must know the tag before the first delivery arrives).
    pub consumer_tag: String,
    /// Autoack: the server considers a message acknowledged once sent.
    pub no_ack: bool,
    pub exclusive: bool,
    pub arguments: FieldTable,
    /// Deliveries buffered for the consumer before the connection's reader waits. That stops
    /// reading the socket for every channel of the connection, replies included: a task that
    /// stops draining its consumer while awaiting a request on the same connection can wait
    /// forever. Use a prefetch (`basic_qos`) or another connection for such requests.
    pub capacity: usize,
}

impl Default for ConsumeOptions {
    fn default() -> ConsumeOptions {
        ConsumeOptions {
            consumer_tag: String::new(),
            no_ack: false,
            exclusive: false,
            arguments: FieldTable::new(),
            capacity: 4096,
        }
    }
}

/// The deliveries of one consumer. The stream ends when the consumer is cancelled (by us or the
/// server) or its channel closes; [`Consumer::error`] then says why.
pub struct Consumer {
    tag: ShortStr,
    rx: mpsc::Receiver<Delivery>,
    channel: Arc<ChannelShared>,
}

impl Consumer {
    pub fn tag(&self) -> &str {
        self.tag.as_str()
    }

    /// The next delivery; `None` once the consumer has ended.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// Up to `limit` deliveries appended to `out` in one wake-up; 0 once the consumer has ended.
    pub async fn recv_many(&mut self, out: &mut Vec<Delivery>, limit: usize) -> usize {
        self.rx.recv_many(out, limit).await
    }

    /// Why the channel ended, if it has.
    pub fn error(&self) -> Option<ClientError> {
        lock(&self.channel.state).error.clone()
    }
}

/// One `basic.ack` or `basic.nack` from the server in confirm mode, as sent: with `multiple`,
/// it settles every sequence number up to `delivery_tag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    pub delivery_tag: u64,
    pub multiple: bool,
    /// false: a nack (the broker could not take responsibility for the message).
    pub ack: bool,
}

/// Publisher-confirm counters of a channel in confirm mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfirmCounts {
    pub published: u64,
    pub acked: u64,
    pub nacked: u64,
}

impl ConfirmCounts {
    pub fn outstanding(&self) -> u64 {
        self.published - self.acked - self.nacked
    }
}

#[derive(Default)]
struct ConfirmState {
    next_seq: u64,
    /// Sequence numbers not yet confirmed, ascending (they are assigned in order).
    unconfirmed: VecDeque<u64>,
    acked: u64,
    nacked: u64,
}

pub(crate) struct ChannelState {
    error: Option<ClientError>,
    rpc: Option<oneshot::Sender<Result<Method, ClientError>>>,
    consumers: HashMap<ShortStr, mpsc::Sender<Delivery>>,
    confirm: Option<ConfirmState>,
    confirm_events: Option<mpsc::UnboundedSender<Confirm>>,
    next_consumer: u64,
}

/// A channel's state, shared by the handle(s) and the connection's reader.
pub(crate) struct ChannelShared {
    id: u16,
    /// Mirrors `state.error.is_some()` so publishing checks it without the lock.
    closed: AtomicBool,
    confirm_mode: AtomicBool,
    returned: AtomicU64,
    state: Mutex<ChannelState>,
    /// One request at a time: AMQP replies carry no id, so they are matched by order.
    rpc_lock: tokio::sync::Mutex<()>,
    confirmed: Notify,
}

impl ChannelShared {
    pub(crate) fn new(id: u16) -> ChannelShared {
        ChannelShared {
            id,
            closed: AtomicBool::new(false),
            confirm_mode: AtomicBool::new(false),
            returned: AtomicU64::new(0),
            state: Mutex::new(ChannelState {
                error: None,
                rpc: None,
                consumers: HashMap::new(),
                confirm: None,
                confirm_events: None,
                next_consumer: 1,
            }),
            rpc_lock: tokio::sync::Mutex::new(()),
            confirmed: Notify::new(),
        }
    }

    /// Ends the channel: pending request, consumers and confirm waiters all see `error`.
    pub(crate) fn fail(&self, error: ClientError) {
        let (rpc, consumers) = {
            let mut state = lock(&self.state);
            if state.error.is_none() {
                state.error = Some(error.clone());
            }
            self.closed.store(true, Ordering::Release);
            (state.rpc.take(), std::mem::take(&mut state.consumers))
        };
        if let Some(rpc) = rpc {
            let _ = rpc.send(Err(error));
        }
        // Dropping the senders ends the consumers' streams.
        drop(consumers);
        self.confirmed.notify_waiters();
    }

    /// Hands a reply to the waiting request; the method's name if none is waiting.
    pub(crate) fn reply(&self, method: Method) -> Result<(), &'static str> {
        let rpc = lock(&self.state).rpc.take();
        match rpc {
            Some(rpc) => {
                let _ = rpc.send(Ok(method));
                Ok(())
            }
            None => Err(method.name()),
        }
    }

    /// A `basic.ack`/`basic.nack` from the server in confirm mode.
    pub(crate) fn confirm(&self, tag: u64, multiple: bool, nack: bool) {
        {
            let mut state = lock(&self.state);
            let Some(confirm) = state.confirm.as_mut() else {
                return;
            };
            let settled = if multiple {
                let count = confirm.unconfirmed.partition_point(|&seq| seq <= tag);
                confirm.unconfirmed.drain(..count);
                count
            } else {
                match confirm.unconfirmed.binary_search(&tag) {
                    Ok(at) => {
                        confirm.unconfirmed.remove(at);
                        1
                    }
                    Err(_) => 0,
                }
            } as u64;
            if nack {
                confirm.nacked += settled;
            } else {
                confirm.acked += settled;
            }
            if let Some(events) = &state.confirm_events {
                // A dropped receiver only means nobody listens any more.
                let _ = events.send(Confirm {
                    delivery_tag: tag,
                    multiple,
                    ack: !nack,
                });
            }
        }
        self.confirmed.notify_waiters();
    }

    /// The server cancelled a consumer (queue deleted, …): end its stream.
    pub(crate) fn cancelled(&self, tag: &str) {
        lock(&self.state).consumers.remove(tag);
    }

    /// A completed delivery or return. Waits while the consumer's buffer is full: that stops
    /// the reader, and so the socket, which is the flow control we want.
    pub(crate) async fn content(
        &self,
        kind: ContentKind,
        properties: BasicProperties,
        body: Bytes,
    ) {
        match kind {
            ContentKind::Deliver(deliver) => {
                let sender = lock(&self.state)
                    .consumers
                    .get(deliver.consumer_tag.as_str())
                    .cloned();
                let Some(sender) = sender else {
                    return;
                };
                let delivery = Delivery {
                    consumer_tag: deliver.consumer_tag,
                    delivery_tag: deliver.delivery_tag,
                    redelivered: deliver.redelivered,
                    exchange: deliver.exchange,
                    routing_key: deliver.routing_key,
                    properties,
                    body,
                };
                if let Err(mpsc::error::SendError(delivery)) = sender.send(delivery).await {
                    // The consumer handle was dropped; later deliveries are dropped too.
                    lock(&self.state)
                        .consumers
                        .remove(delivery.consumer_tag.as_str());
                }
            }
            ContentKind::Return => {
                self.returned.fetch_add(1, Ordering::Relaxed);
            }
            ContentKind::Dropped => {}
        }
    }

    fn error(&self) -> ClientError {
        lock(&self.state)
            .error
            .clone()
            .unwrap_or(ClientError::Closed)
    }
}

/// A channel. Cheap to clone: clones share the channel. Requests (declare, bind, qos, consume,
/// …) wait for the server's reply and are serialised per channel; publishing and acking only
/// queue frames for the writer.
#[derive(Clone)]
pub struct Channel {
    conn: Arc<ConnShared>,
    shared: Arc<ChannelShared>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id())
            .field("error", &self.error())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl Channel {
    pub(crate) fn new(conn: Arc<ConnShared>, shared: Arc<ChannelShared>) -> Channel {
        Channel { conn, shared }
    }

    pub fn id(&self) -> u16 {
        self.shared.id
    }

    /// Why the channel ended, if it has.
    pub fn error(&self) -> Option<ClientError> {
        lock(&self.shared.state).error.clone()
    }

    pub(crate) async fn open(&self) -> Result<(), ClientError> {
        match self.rpc(Method::ChannelOpen(ChannelOpen)).await? {
            Method::ChannelOpenOk(_) => Ok(()),
            other => Err(unexpected("channel.open-ok", &other)),
        }
    }

    /// Sends `method` and waits for the reply.
    async fn rpc(&self, method: Method) -> Result<Method, ClientError> {
        let _one_at_a_time = self.shared.rpc_lock.lock().await;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = lock(&self.shared.state);
            if let Some(error) = &state.error {
                return Err(error.clone());
            }
            state.rpc = Some(tx);
        }
        let id = self.id();
        self.conn
            .send_with(|buf| encode_method(id, &method, buf))
            .await?;
        match rx.await {
            Ok(reply) => reply,
            Err(_) => Err(self.shared.error()),
        }
    }

    /// `exchange.declare`; `no_wait` is ignored (we always wait for declare-ok).
    pub async fn exchange_declare(&self, mut declare: ExchangeDeclare) -> Result<(), ClientError> {
        declare.no_wait = false;
        match self.rpc(Method::ExchangeDeclare(declare)).await? {
            Method::ExchangeDeclareOk(_) => Ok(()),
            other => Err(unexpected("exchange.declare-ok", &other)),
        }
    }

    /// `queue.declare`; the reply carries the (possibly server-chosen) name and counts.
    pub async fn queue_declare(
        &self,
        mut declare: QueueDeclare,
    ) -> Result<QueueDeclareOk, ClientError> {
        declare.no_wait = false;
        match self.rpc(Method::QueueDeclare(declare)).await? {
            Method::QueueDeclareOk(ok) => Ok(ok),
            other => Err(unexpected("queue.declare-ok", &other)),
        }
    }

    pub async fn queue_bind(&self, mut bind: QueueBind) -> Result<(), ClientError> {
        bind.no_wait = false;
        match self.rpc(Method::QueueBind(bind)).await? {
            Method::QueueBindOk(_) => Ok(()),
            other => Err(unexpected("queue.bind-ok", &other)),
        }
    }

    /// `queue.unbind`.
    pub async fn queue_unbind(&self, unbind: QueueUnbind) -> Result<(), ClientError> {
        match self.rpc(Method::QueueUnbind(unbind)).await? {
            Method::QueueUnbindOk(_) => Ok(()),
            other => Err(unexpected("queue.unbind-ok", &other)),
        }
    }

    /// `queue.purge`; returns how many messages were purged.
    pub async fn queue_purge(&self, queue: &str) -> Result<u32, ClientError> {
        let purge = QueuePurge {
            queue: ShortStr::new(queue)?,
            no_wait: false,
        };
        match self.rpc(Method::QueuePurge(purge)).await? {
            Method::QueuePurgeOk(ok) => Ok(ok.message_count),
            other => Err(unexpected("queue.purge-ok", &other)),
        }
    }

    /// `queue.delete`; returns how many messages the queue held.
    pub async fn queue_delete(&self, mut delete: QueueDelete) -> Result<u32, ClientError> {
        delete.no_wait = false;
        match self.rpc(Method::QueueDelete(delete)).await? {
            Method::QueueDeleteOk(ok) => Ok(ok.message_count),
            other => Err(unexpected("queue.delete-ok", &other)),
        }
    }

    /// `exchange.delete`.
    pub async fn exchange_delete(&self, mut delete: ExchangeDelete) -> Result<(), ClientError> {
        delete.no_wait = false;
        match self.rpc(Method::ExchangeDelete(delete)).await? {
            Method::ExchangeDeleteOk(_) => Ok(()),
            other => Err(unexpected("exchange.delete-ok", &other)),
        }
    }

    /// `exchange.bind` (RabbitMQ's exchange-to-exchange binding).
    pub async fn exchange_bind(&self, mut bind: ExchangeBind) -> Result<(), ClientError> {
        bind.no_wait = false;
        match self.rpc(Method::ExchangeBind(bind)).await? {
            Method::ExchangeBindOk(_) => Ok(()),
            other => Err(unexpected("exchange.bind-ok", &other)),
        }
    }

    /// `basic.qos` with a message-count prefetch (0: unlimited) for consumers on this channel
    /// (`global` false, RabbitMQ's per-consumer meaning).
    pub async fn basic_qos(&self, prefetch_count: u16) -> Result<(), ClientError> {
        let qos = BasicQos {
            prefetch_size: 0,
            prefetch_count,
            global: false,
        };
        match self.rpc(Method::BasicQos(qos)).await? {
            Method::BasicQosOk(_) => Ok(()),
            other => Err(unexpected("basic.qos-ok", &other)),
        }
    }

    /// Puts the channel in confirm mode: from now on [`Channel::basic_publish`] returns sequence
    /// numbers and the server acks (or nacks) each message.
    pub async fn confirm_select(&self) -> Result<(), ClientError> {
        {
            let mut state = lock(&self.shared.state);
            if state.confirm.is_none() {
                state.confirm = Some(ConfirmState {
                    next_seq: 1,
                    ..ConfirmState::default()
                });
            }
        }
        match self
            .rpc(Method::ConfirmSelect(ConfirmSelect { nowait: false }))
            .await?
        {
            Method::ConfirmSelectOk(_) => {
                self.shared.confirm_mode.store(true, Ordering::Release);
                Ok(())
            }
            other => Err(unexpected("confirm.select-ok", &other)),
        }
    }

    /// Publishes one message: method, header and body frames (split at frame_max) are queued
    /// together, so concurrent publishers on one channel never interleave. Returns the
    /// confirm sequence number in confirm mode, 0 otherwise. Waits only while the writer is
    /// more than a megabyte behind.
    pub async fn basic_publish(
        &self,
        target: &PublishTarget,
        properties: &BasicProperties,
        body: &[u8],
    ) -> Result<u64, ClientError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.shared.error());
        }
        let id = self.id();
        let frame_max = self.conn.tuning.frame_max;
        let confirm = self.shared.confirm_mode.load(Ordering::Acquire);
        let shared = &self.shared;
        let seq = self
            .conn
            .send_with(|buf| {
                // Assigned under the outbox lock so sequence numbers follow wire order.
                let seq = if confirm {
                    let mut state = lock(&shared.state);
                    match state.confirm.as_mut() {
                        Some(c) => {
                            let seq = c.next_seq;
                            c.next_seq += 1;
                            c.unconfirmed.push_back(seq);
                            seq
                        }
                        None => 0,
                    }
                } else {
                    0
                };
                put_frame(buf, FRAME_METHOD, id, |buf| buf.put_slice(&target.method));
                put_frame(buf, FRAME_HEADER, id, |buf| {
                    buf.put_u16(CLASS_BASIC);
                    buf.put_u16(0);
                    buf.put_u64(body.len() as u64);
                    buf.put_u16(properties.flags());
                    properties.encode_fields(buf);
                });
                encode_body(id, body, frame_max, buf);
                seq
            })
            .await?;
        Ok(seq)
    }

    /// Confirm counters so far (all zero outside confirm mode).
    pub fn confirm_counts(&self) -> ConfirmCounts {
        let state = lock(&self.shared.state);
        match &state.confirm {
            Some(c) => ConfirmCounts {
                published: c.next_seq.saturating_sub(1),
                acked: c.acked,
                nacked: c.nacked,
            },
            None => ConfirmCounts::default(),
        }
    }

    /// Every confirm from now on, as the server sends them, for callers that track individual
    /// messages (confirm latency, say). Replaces an earlier listener. Unbounded: the caller must
    /// keep draining it.
    pub fn confirm_events(&self) -> mpsc::UnboundedReceiver<Confirm> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.state).confirm_events = Some(tx);
        rx
    }

    /// Waits until fewer than `limit` published messages are unconfirmed (a confirm window).
    pub async fn wait_unconfirmed_below(&self, limit: u64) -> Result<(), ClientError> {
        loop {
            let confirmed = self.shared.confirmed.notified();
            tokio::pin!(confirmed);
            confirmed.as_mut().enable();
            {
                let state = lock(&self.shared.state);
                if let Some(error) = &state.error {
                    return Err(error.clone());
                }
                let unconfirmed = state.confirm.as_ref().map_or(0, |c| c.unconfirmed.len());
                if (unconfirmed as u64) < limit.max(1) {
                    return Ok(());
                }
            }
            confirmed.await;
        }
    }

    /// Waits until every published message is confirmed; returns how many were nacked so far.
    pub async fn wait_for_confirms(&self) -> Result<u64, ClientError> {
        loop {
            let confirmed = self.shared.confirmed.notified();
            tokio::pin!(confirmed);
            confirmed.as_mut().enable();
            {
                let state = lock(&self.shared.state);
                if let Some(error) = &state.error {
                    return Err(error.clone());
                }
                match &state.confirm {
                    Some(c) if !c.unconfirmed.is_empty() => {}
                    Some(c) => return Ok(c.nacked),
                    None => return Ok(0),
                }
            }
            confirmed.await;
        }
    }

    /// Messages the server returned as unroutable (mandatory publishes).
    pub fn returned(&self) -> u64 {
        self.shared.returned.load(Ordering::Relaxed)
    }

    /// Starts a consumer on `queue`. Deliveries arrive through the returned [`Consumer`].
    pub async fn basic_consume(
        &self,
        queue: &str,
        options: ConsumeOptions,
    ) -> Result<Consumer, ClientError> {
        let queue = ShortStr::new(queue)?;
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        // Registered before the request: the first delivery can follow consume-ok at once.
        let tag = {
            let mut state = lock(&self.shared.state);
            if let Some(error) = &state.error {
                return Err(error.clone());
            }
            let tag = if options.consumer_tag.is_empty() {
                let n = state.next_consumer;
                state.next_consumer += 1;
                ShortStr::from(format!("warren-ctag-{}-{n}", self.id()))
            } else {
                ShortStr::new(&options.consumer_tag)?
            };
            state.consumers.insert(tag.clone(), tx);
            tag
        };
        let consume = BasicConsume {
            queue,
            consumer_tag: tag.clone(),
            no_local: false,
            no_ack: options.no_ack,
            exclusive: options.exclusive,
            no_wait: false,
            arguments: options.arguments,
        };
        match self.rpc(Method::BasicConsume(consume)).await {
            Ok(Method::BasicConsumeOk(_)) => Ok(Consumer {
                tag,
                rx,
                channel: Arc::clone(&self.shared),
            }),
            Ok(other) => Err(unexpected("basic.consume-ok", &other)),
            Err(error) => {
                lock(&self.shared.state).consumers.remove(tag.as_str());
                Err(error)
            }
        }
    }

    /// Cancels a consumer; its stream ends after deliveries already received.
    pub async fn basic_cancel(&self, consumer_tag: &str) -> Result<(), ClientError> {
        let cancel = BasicCancel {
            consumer_tag: ShortStr::new(consumer_tag)?,
            no_wait: false,
        };
        let reply = self.rpc(Method::BasicCancel(cancel)).await;
        lock(&self.shared.state).consumers.remove(consumer_tag);
        match reply? {
            Method::BasicCancelOk(_) => Ok(()),
            other => Err(unexpected("basic.cancel-ok", &other)),
        }
    }

    /// Acknowledges `delivery_tag` (and all before it if `multiple`).
    pub async fn basic_ack(&self, delivery_tag: u64, multiple: bool) -> Result<(), ClientError> {
        self.send(&Method::BasicAck(BasicAck {
            delivery_tag,
            multiple,
        }))
        .await
    }

    /// Rejects `delivery_tag` (and all before it if `multiple`), requeueing if `requeue`.
    pub async fn basic_nack(
        &self,
        delivery_tag: u64,
        multiple: bool,
        requeue: bool,
    ) -> Result<(), ClientError> {
        self.send(&Method::BasicNack(BasicNack {
            delivery_tag,
            multiple,
            requeue,
        }))
        .await
    }

    /// Rejects one delivery, requeueing it if `requeue`.
    pub async fn basic_reject(&self, delivery_tag: u64, requeue: bool) -> Result<(), ClientError> {
        self.send(&Method::BasicReject(BasicReject {
            delivery_tag,
            requeue,
        }))
        .await
    }

    async fn send(&self, method: &Method) -> Result<(), ClientError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.shared.error());
        }
        let id = self.id();
        self.conn
            .send_with(|buf| encode_method(id, method, buf))
            .await
    }

    /// Closes the channel (200) and waits for close-ok. Returns the server's error instead if
    /// it had already closed the channel.
    pub async fn close(&self) -> Result<(), ClientError> {
        let close = ChannelClose {
            reply_code: ReplyCode::REPLY_SUCCESS.code(),
            reply_text: "Goodbye".into(),
            class_id: 0,
            method_id: 0,
        };
        match self.rpc(Method::ChannelClose(close)).await {
            Ok(Method::ChannelCloseOk(_)) | Err(ClientError::Closed) => Ok(()),
            Ok(other) => Err(unexpected("channel.close-ok", &other)),
            Err(error) => Err(error),
        }
    }
}

/// Writes one frame around what `payload` appends, patching the size in afterwards (the
/// codec's helper for this is private; the layout is the frame layout of the spec).
fn put_frame(
    buf: &mut BytesMut,
    frame_type: u8,
    channel: u16,
    payload: impl FnOnce(&mut BytesMut),
) {
    buf.put_u8(frame_type);
    buf.put_u16(channel);
    let at = buf.len();
    buf.put_u32(0);
    payload(buf);
    let size = u32::try_from(buf.len() - at - 4).unwrap_or(u32::MAX);
    buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
    buf.put_u8(FRAME_END);
}
