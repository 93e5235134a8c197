//! One task per client connection: handshake, then frames in, replies out, heartbeats, and
//! the close handshake in either direction.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tracing::{debug, error, info, warn};

use super::handshake::read_end;
use super::reader::{ReadError, Reader};
use super::transport::Transport;
use super::writer::Writer;
use super::Context;
use crate::alarm::AlarmState;
use crate::broker::definitions::Revocation;
use crate::broker::queue::ConnEvent;
use crate::channel::{ChannelTable, Input, Out};
use crate::error::AmqpError;
use crate::protocol::{
    ConnectionBlocked, ConnectionClose, ConnectionCloseOk, ConnectionUnblocked, Frame, Method,
};

/// How long we wait for close-ok after sending connection.close.
const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);
/// RabbitMQ's `SILENT_CLOSE_DELAY`: a client failing the handshake before login waits this
/// long for its socket to close, so failed logins cannot be retried in a tight loop.
const SILENT_CLOSE_DELAY: Duration = Duration::from_secs(3);

/// How a connection ends; the reason goes to the log.
#[derive(Debug)]
pub(super) enum End {
    /// Close the socket without a close handshake.
    Drop(String),
    /// Close the socket without a close handshake after `SILENT_CLOSE_DELAY`.
    Refuse(String),
    /// Send connection.close with this error, wait for close-ok, close the socket.
    Close(AmqpError),
    /// The client sent connection.close (its reply text) and got its close-ok.
    ClientClosed(String),
}

/// A client connection, reading from `R` (the read half of its transport). `user` is set
/// once a login is attempted, `vhost` once open-ok is sent; `channels` is replaced by the
/// negotiated one at tune-ok.
pub(super) struct Connection<R> {
    pub(super) peer: SocketAddr,
    pub(super) ctx: Arc<Context>,
    pub(super) reader: Reader<R>,
    pub(super) writer: Writer,
    pub(super) user: Option<String>,
    pub(super) vhost: Option<String>,
    pub(super) name: Option<String>,
    pub(super) heartbeat: u16,
    pub(super) frame_max: u32,
    pub(super) channels: ChannelTable,
    /// Deliveries and consumer cancellations from queues; the sender goes to the channels'
    /// session at open-ok.
    pub(super) events_tx: mpsc::UnboundedSender<ConnEvent>,
    events: mpsc::UnboundedReceiver<ConnEvent>,
    /// The client has the `consumer_cancel_notify` capability.
    pub(super) cancel_notify: bool,
    /// The client has the `connection.blocked` capability.
    pub(super) blocked_notify: bool,
    /// The memory and disk alarms in force.
    alarms: watch::Receiver<AlarmState>,
    /// Set while the connection is blocked by an alarm (RabbitMQ's publisher throttling).
    blocked: Option<Blocked>,
    /// Replies and deliveries not yet handed to the writer. They are held while more frames
    /// are already buffered, so that a burst is written at once and its confirms merge.
    pending: Vec<Out>,
    /// Fires when the connection's vhost or user is deleted (set at open-ok).
    pub(super) revoked: Option<Revocation>,
}

/// A connection blocked by a resource alarm. Invariant: while it exists, the socket is not
/// read (TCP pushes back on the publisher) and silence from the client is not a missed
/// heartbeat; it ends only when every alarm has cleared.
#[derive(Debug)]
struct Blocked {
    /// `connection.blocked` was sent, so `connection.unblocked` is owed.
    notified: bool,
}

/// Most frames' worth of output held before writing.
const PENDING_MAX: usize = 256;

/// Most queue events handled before writing.
const EVENT_BATCH: usize = 64;

/// Longest wait between consumer-timeout checks while deliveries await acknowledgement
/// (RabbitMQ checks about once a minute).
const ACK_TIMEOUT_TICK: Duration = Duration::from_secs(1);

/// Serves one client until either side closes or the broker shuts down. `peer` is the
/// client's address as the listener accepted it.
pub(super) async fn run<T: Transport>(
    stream: T,
    peer: SocketAddr,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) {
    info!(%peer, "accepting AMQP connection");
    let (read_half, write_half) = stream.split();
    let (writer, writer_task) = Writer::spawn(write_half);
    let handshake_timeout = ctx.config.handshake_timeout();
    let (events_tx, events) = mpsc::unbounded_channel();
    let alarms = ctx.alarms.subscribe();
    let mut conn = Connection {
        peer,
        ctx,
        reader: Reader::new(read_half),
        writer,
        user: None,
        vhost: None,
        name: None,
        heartbeat: 0,
        frame_max: 0,
        channels: ChannelTable::new(0),
        events_tx,
        events,
        cancel_notify: false,
        blocked_notify: false,
        alarms,
        blocked: None,
        pending: Vec::new(),
        revoked: None,
    };
    let handshake = tokio::select! {
        result = timeout(handshake_timeout, conn.handshake()) => result,
        () = shutdown_signalled(&mut shutdown) => Ok(Err(End::Drop("broker shutting down".into()))),
    };
    let end = match handshake {
        Err(_) => End::Drop(format!(
            "handshake_timeout: handshake not finished in {}s",
            handshake_timeout.as_secs()
        )),
        Ok(Err(end)) => end,
        Ok(Ok(())) => conn.serve(&mut shutdown).await,
    };
    // Unacknowledged messages go back to their queues before the client hears the close.
    conn.channels.close_all().await;
    let reason = conn.finish(end).await;
    let Connection {
        writer,
        user,
        vhost,
        name,
        ..
    } = conn;
    drop(writer);
    // A client that stopped reading can leave the writer stuck on a full socket forever.
    let mut writer_task = writer_task;
    if timeout(CLOSE_OK_TIMEOUT, &mut writer_task).await.is_err() {
        writer_task.abort();
    }
    info!(
        %peer,
        user = user.as_deref().unwrap_or_default(),
        vhost = vhost.as_deref().unwrap_or_default(),
        name = name.as_deref().unwrap_or_default(),
        reason = %reason,
        "closing AMQP connection"
    );
}

/// Resolves once the broker is shutting down (or its handle is gone).
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// RabbitMQ's log line for a client that stopped sending anything.
pub fn missed_heartbeats_message(heartbeat: u16) -> String {
    format!("missed heartbeats from client, timeout: {heartbeat}s")
}

impl<R: AsyncRead + Unpin + Send> Connection<R> {
    pub(super) async fn send(&mut self, channel: u16, method: &Method) -> Result<(), End> {
        self.writer
            .send_method(channel, method)
            .await
            .map_err(|_| End::Drop("socket closed while writing".into()))
    }

    /// The running connection: frames until something ends it.
    async fn serve(&mut self, shutdown: &mut watch::Receiver<bool>) -> End {
        let silence_limit = Duration::from_secs(u64::from(self.heartbeat) * 2);
        // When we last waited on something other than the socket (a full queue mailbox): bytes
        // the peer sent meanwhile are unread, not missing.
        let mut busy_until = Instant::now();
        // The next consumer-timeout check: at the earliest deadline seen by the last one, and
        // at least every `ACK_TIMEOUT_TICK` while deliveries await acknowledgement (a newer
        // one may come from a queue with a shorter timeout). No timer per delivery.
        let mut next_ack_check = Instant::now();
        loop {
            let blocked = self.blocked.is_some();
            let quiet_since = self.reader.last_read().max(busy_until);
            // A blocked client's heartbeats sit unread in the socket: RabbitMQ pauses its
            // heartbeat monitor while blocked, and so do we.
            let deadline = (self.heartbeat > 0 && !blocked).then(|| quiet_since + silence_limit);
            let ack_check = self.channels.any_unacked().then_some(next_ack_check);
            // Not biased: a client that publishes without pause must still get its deliveries,
            // and one that is flooded with deliveries must still have its acks read.
            let frame = tokio::select! {
                () = shutdown_signalled(shutdown) => {
                    return End::Close(AmqpError::connection_forced(
                        "broker forced connection closure with reason 'shutdown'",
                    ));
                }
                reason = revoked(&mut self.revoked) => {
                    return End::Close(AmqpError::connection_forced(reason));
                }
                () = sleep_until_some(deadline) => {
                    let quiet_since = self.reader.last_read().max(busy_until);
                    if Instant::now() >= quiet_since + silence_limit {
                        let message = missed_heartbeats_message(self.heartbeat);
                        error!(peer = %self.peer, "{message}");
                        return End::Drop(message);
                    }
                    continue;
                }
                () = sleep_until_some(ack_check) => {
                    let now = Instant::now();
                    let earliest = self
                        .channels
                        .check_ack_timeouts(now.into_std(), &mut self.pending)
                        .await;
                    let tick = now + ACK_TIMEOUT_TICK;
                    next_ack_check = earliest.map_or(tick, |at| Instant::from_std(at).min(tick));
                    if let Err(end) = self.flush().await {
                        return end;
                    }
                    continue;
                }
                frame = self.reader.next_frame(), if !blocked => frame,
                Ok(()) = self.alarms.changed() => {
                    if blocked && !self.alarms.borrow_and_update().any() {
                        if let Err(end) = self.unblock().await {
                            return end;
                        }
                        busy_until = Instant::now();
                    }
                    continue;
                }
                Some(event) = self.events.recv() => {
                    if let Err(end) = self.on_events(event).await {
                        return end;
                    }
                    continue;
                }
            };
            let result = match frame {
                Ok(frame) => {
                    let content = matches!(frame, Frame::Header { .. } | Frame::Body { .. });
                    match self.dispatch(frame).await {
                        // As RabbitMQ: a content frame read while an alarm is in force blocks
                        // the connection, so only connections that publish are blocked, and
                        // one that was mid-message when the alarm set is blocked at its next
                        // frame of content.
                        Ok(()) if content => {
                            let alarms = *self.alarms.borrow_and_update();
                            match alarms.reason() {
                                Some(reason) => self.block(reason).await,
                                None => Ok(()),
                            }
                        }
                        result => result,
                    }
                }
                Err(e) => Err(read_end(e)),
            };
            if let Err(end) = result {
                return end;
            }
            busy_until = Instant::now();
        }
    }

    /// Stops reading from the client until the alarms clear; tells it so if it has the
    /// `connection.blocked` capability. What the channels produced goes out first.
    async fn block(&mut self, reason: &str) -> Result<(), End> {
        if self.blocked.is_some() {
            return Ok(());
        }
        self.flush().await?;
        if self.blocked_notify {
            let blocked = Method::ConnectionBlocked(ConnectionBlocked {
                reason: reason.into(),
            });
            self.send(0, &blocked).await?;
        }
        debug!(peer = %self.peer, reason, "connection blocked by a resource alarm");
        self.blocked = Some(Blocked {
            notified: self.blocked_notify,
        });
        Ok(())
    }

    /// Every alarm has cleared: reading resumes, and a client told of the block is told of
    /// its end.
    async fn unblock(&mut self) -> Result<(), End> {
        let Some(blocked) = self.blocked.take() else {
            return Ok(());
        };
        debug!(peer = %self.peer, "connection unblocked");
        if blocked.notified {
            self.send(0, &Method::ConnectionUnblocked(ConnectionUnblocked))
                .await?;
        }
        Ok(())
    }

    async fn dispatch(&mut self, frame: Frame) -> Result<(), End> {
        let (channel, input) = match frame {
            Frame::Heartbeat { channel: 0 } => return Ok(()),
            Frame::Heartbeat { .. } => {
                return Err(End::Close(AmqpError::unexpected_frame(
                    "type 8, all octets = <<>>",
                )))
            }
            Frame::Method {
                channel: 0,
                method: Method::ConnectionClose(close),
            } => {
                self.flush().await?;
                self.channels.close_all().await;
                self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk))
                    .await?;
                return Err(End::ClientClosed(close.reply_text.as_str().to_owned()));
            }
            Frame::Method {
                channel: 0,
                method: Method::ConnectionUpdateSecret(update),
            } => {
                let ok = self.update_secret(&update);
                // After what the channels already owe, as RabbitMQ writes it.
                self.pending.push(Out::Method(0, ok));
                return self.flush().await;
            }
            Frame::Method { channel: 0, method } => {
                return Err(End::Close(
                    AmqpError::channel_error("unexpected method in connection state running")
                        .on_method(&method),
                ))
            }
            Frame::Header { channel: 0, .. } | Frame::Body { channel: 0, .. } => {
                return Err(End::Close(AmqpError::unexpected_frame(
                    "expected method frame, got non method frame instead",
                )))
            }
            Frame::Method { channel, method } => (channel, Input::Method(method)),
            Frame::Header { channel, header } => (channel, Input::Header(Box::new(header))),
            Frame::Body { channel, payload } => (channel, Input::Body(payload)),
        };
        let cancel = matches!(input, Input::Method(Method::BasicCancel(_)));
        let mark = self.pending.len();
        let result = self
            .channels
            .handle(channel, input, &mut self.pending)
            .await;
        if cancel {
            // Deliveries the queue made before it dropped the consumer are already in our
            // inbox: they go out before cancel-ok, as RabbitMQ sends them.
            let reply = self.pending.split_off(mark);
            while let Ok(event) = self.events.try_recv() {
                self.apply_event(event).await;
            }
            self.channels.end_draining();
            self.pending.extend(reply);
        }
        if result.is_err()
            || !self.reader.frame_ready()
            || self.pending.len() >= PENDING_MAX
            || self.channels.held_count() >= PENDING_MAX
        {
            self.flush().await?;
        }
        result.map_err(End::Close)
    }

    /// Deliveries and cancellations from queues, as many as are waiting (up to a batch),
    /// written at once.
    async fn on_events(&mut self, first: ConnEvent) -> Result<(), End> {
        // Appended after any pending replies, so a consume-ok precedes its first delivery.
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(event) = next.take() {
            self.apply_event(event).await;
            taken += 1;
            if taken < EVENT_BATCH {
                next = self.events.try_recv().ok();
            }
        }
        self.flush().await
    }

    async fn apply_event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Deliver(batch) => self.channels.deliver(batch, &mut self.pending).await,
            ConnEvent::Cancelled {
                channel,
                owner,
                tag,
            } => self
                .channels
                .consumer_cancelled(channel, owner, tag, &mut self.pending),
        }
    }

    /// Encodes what the channels produced and hands it to the writer in one piece; publisher
    /// confirms for consecutive sequence numbers become one `basic.ack multiple=true`.
    async fn flush(&mut self) -> Result<(), End> {
        // Confirms in `pending` promise the messages are in their queues, and on disk: the
        // writer holds them until the store commits of this burst are synced.
        self.channels.send_held().await;
        let gate = self.channels.take_commits();
        if self.pending.is_empty() {
            return Ok(());
        }
        let out = merge_confirms(std::mem::take(&mut self.pending));
        let mut buf = BytesMut::new();
        for o in &out {
            o.encode(self.frame_max, &mut buf);
        }
        self.writer
            .send_gated(gate, buf.freeze())
            .await
            .map_err(|_| End::Drop("socket closed while writing".into()))
    }

    /// Carries out `end` and returns the reason to log.
    async fn finish(&mut self, end: End) -> String {
        match end {
            End::Drop(reason) => reason,
            End::Refuse(reason) => {
                warn!(peer = %self.peer, reason = %reason, "refusing connection");
                tokio::time::sleep(SILENT_CLOSE_DELAY).await;
                reason
            }
            End::ClientClosed(text) => {
                self.await_peer_close().await;
                format!("client closed the connection: {text}")
            }
            End::Close(error) => {
                warn!(peer = %self.peer, error = %error, "closing connection with an error");
                let close = Method::ConnectionClose(ConnectionClose {
                    reply_code: error.code.code(),
                    reply_text: error.reply_text(),
                    class_id: error.class_id,
                    method_id: error.method_id,
                });
                let sent = timeout(CLOSE_OK_TIMEOUT, self.send(0, &close)).await;
                if matches!(sent, Ok(Ok(()))) {
                    self.await_close_ok().await;
                }
                error.to_string()
            }
        }
    }

    /// After our close-ok the client closes the socket: closing it first races the client's
    /// own shutdown, and amqp091-go then reports its clean `Close()` as a 501 EOF. RabbitMQ
    /// leaves the socket to the client too; we give it `CLOSE_OK_TIMEOUT`.
    async fn await_peer_close(&mut self) {
        let deadline = Instant::now() + CLOSE_OK_TIMEOUT;
        while let Ok(Ok(_)) = timeout_at(deadline, self.reader.next_frame()).await {}
    }

    /// After our connection.close only close and close-ok matter; anything else is dropped.
    async fn await_close_ok(&mut self) {
        let deadline = Instant::now() + CLOSE_OK_TIMEOUT;
        loop {
            match timeout_at(deadline, self.reader.next_frame()).await {
                Ok(Ok(Frame::Method {
                    channel: 0,
                    method: Method::ConnectionCloseOk(_),
                })) => return,
                Ok(Ok(Frame::Method {
                    channel: 0,
                    method: Method::ConnectionClose(_),
                })) => {
                    let _ = self
                        .writer
                        .send_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk))
                        .await;
                    return;
                }
                Ok(Ok(_)) => continue,
                Ok(Err(ReadError::Frame(_))) | Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

/// Merges runs of confirms (server-sent `basic.ack`s) on one channel whose sequence numbers
/// follow each other: the last one with `multiple=true` acknowledges them all.
fn merge_confirms(out: Vec<Out>) -> Vec<Out> {
    let mut merged: Vec<Out> = Vec::with_capacity(out.len());
    for o in out {
        if let (
            Out::Method(channel, Method::BasicAck(ack)),
            Some(Out::Method(last_channel, Method::BasicAck(last))),
        ) = (&o, merged.last_mut())
        {
            if channel == last_channel && ack.delivery_tag == last.delivery_tag + 1 {
                last.delivery_tag = ack.delivery_tag;
                last.multiple = true;
                continue;
            }
        }
        merged.push(o);
    }
    merged
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The close reason once the vhost or user of an open connection is deleted (RabbitMQ's 320
/// "vhost 'v' is deleted"); pending forever before open-ok.
async fn revoked(revocation: &mut Option<Revocation>) -> String {
    match revocation {
        Some(r) => r.revoked().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_confirms_merge() {
        use crate::protocol::BasicAck;
        let confirm = |channel, tag| {
            Out::Method(
                channel,
                Method::BasicAck(BasicAck {
                    delivery_tag: tag,
                    multiple: false,
                }),
            )
        };
        let merged = merge_confirms(vec![
            confirm(1, 1),
            confirm(1, 2),
            confirm(1, 3),
            confirm(2, 1),
            confirm(1, 5),
        ]);
        let acks: Vec<(u16, u64, bool)> = merged
            .iter()
            .map(|o| match o {
                Out::Method(c, Method::BasicAck(a)) => (*c, a.delivery_tag, a.multiple),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(acks, [(1, 3, true), (2, 1, false), (1, 5, false)]);
    }

    #[test]
    fn missed_heartbeats_log_line_is_rabbitmqs() {
        assert_eq!(
            missed_heartbeats_message(60),
            "missed heartbeats from client, timeout: 60s"
        );
    }

    /// The client's end of an in-memory stream.
    struct MemoryClient {
        stream: tokio::io::DuplexStream,
        decoder: crate::protocol::FrameDecoder,
        buf: BytesMut,
    }

    impl MemoryClient {
        /// Writes `bytes` and each of `methods`, then reads up to the next method and names it.
        #[allow(clippy::unwrap_used)]
        async fn send(&mut self, bytes: &[u8], methods: &[Method]) -> &'static str {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut out = BytesMut::from(bytes);
            for method in methods {
                crate::protocol::encode_method(0, method, &mut out);
            }
            self.stream.write_all(&out).await.unwrap();
            loop {
                if let Some(Frame::Method { method, .. }) =
                    self.decoder.decode(&mut self.buf).unwrap()
                {
                    return method.name();
                }
                let read = self.stream.read_buf(&mut self.buf).await.unwrap();
                assert_ne!(read, 0, "the server closed the stream");
            }
        }
    }

    /// The connection code knows no sockets: an in-memory stream is served as TCP is, from the
    /// protocol header to the 320 of a shutdown.
    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn a_connection_is_served_over_any_transport() {
        use crate::alarm::{Alarms, Limits};
        use crate::broker::Broker;
        use crate::config::Config;
        use crate::protocol::{
            ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, FieldTable, FrameDecoder,
            PROTOCOL_HEADER,
        };

        let config = Config {
            data_dir: std::env::temp_dir(),
            ..Config::default()
        };
        let limits = Limits {
            memory_high_watermark: config.vm_memory_high_watermark,
            disk_free_limit: 0,
        };
        let ctx = Arc::new(Context {
            broker: Arc::new(Broker::from_config(&config).unwrap()),
            alarms: Alarms::start(&config.data_dir, limits, Duration::from_secs(60)),
            server_properties: super::super::server_properties(&config).unwrap(),
            config: Arc::new(config),
        });
        let (stream, server) = tokio::io::duplex(64 * 1024);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        let served = tokio::spawn(run(server, peer, ctx, shutdown_rx));
        let mut client = MemoryClient {
            stream,
            decoder: FrameDecoder::new(131_072),
            buf: BytesMut::new(),
        };

        assert_eq!(client.send(&PROTOCOL_HEADER, &[]).await, "connection.start");
        let start_ok = Method::ConnectionStartOk(ConnectionStartOk {
            client_properties: FieldTable::new(),
            mechanism: "PLAIN".into(),
            response: bytes::Bytes::from_static(b"\0guest\0guest"),
            locale: "en_US".into(),
        });
        assert_eq!(client.send(&[], &[start_ok]).await, "connection.tune");
        let tune_ok = Method::ConnectionTuneOk(ConnectionTuneOk {
            channel_max: 16,
            frame_max: 131_072,
            heartbeat: 0,
        });
        let open = Method::ConnectionOpen(ConnectionOpen {
            virtual_host: "/".into(),
        });
        assert_eq!(
            client.send(&[], &[tune_ok, open]).await,
            "connection.open-ok"
        );

        shutdown.send(true).unwrap();
        assert_eq!(client.send(&[], &[]).await, "connection.close");
        let close_ok = Method::ConnectionCloseOk(ConnectionCloseOk);
        use tokio::io::AsyncWriteExt;
        let mut out = BytesMut::new();
        crate::protocol::encode_method(0, &close_ok, &mut out);
        client.stream.write_all(&out).await.unwrap();
        timeout(Duration::from_secs(5), served)
            .await
            .unwrap()
            .unwrap();
    }
}
