//! A connection: the handshake, the reader and writer tasks, and the channel table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::channel::{Channel, ChannelShared};
use super::{lock, AmqpUrl, ClientError, CloseReason};
use crate::protocol::{
    encode_method, ConnectionClose, ConnectionCloseOk, ConnectionOpen, ConnectionStartOk,
    ConnectionTuneOk, FieldTable, Frame, FrameDecoder, Method, ReplyCode, FRAME_MIN_SIZE,
    PROTOCOL_HEADER,
};

/// Publishers wait while this much is queued for the writer: enough for big batches, small
/// enough that a stalled socket pushes back instead of growing memory.
const HIGH_WATER: usize = 1 << 20;

/// Read buffer growth step.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// How to connect. `Default` is guest/guest on 127.0.0.1:5672, vhost `/`.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    pub url: AmqpUrl,
    /// Heartbeat interval we ask for, in seconds. As in RabbitMQ's clients, 0 on either side
    /// means "use the other side's value", otherwise the smaller wins.
    pub heartbeat: u16,
    /// Largest frame we accept (whole frame, as RabbitMQ counts it); negotiated down.
    pub frame_max: u32,
    pub channel_max: u16,
    /// Shown in the management UI as the connection's name.
    pub connection_name: Option<String>,
    /// Limit for TCP connect plus the whole handshake.
    pub connect_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> ConnectionOptions {
        ConnectionOptions {
            url: AmqpUrl::default(),
            heartbeat: 60,
            frame_max: 131_072,
            channel_max: 2047,
            connection_name: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What the handshake settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

/// What waits for the writer task. `error` set means no new frames are accepted; the writer
/// still sends what is in `buf` (a close-ok, say) and then stops.
pub(crate) struct Outbox {
    pub(super) buf: BytesMut,
    pub(super) error: Option<ClientError>,
}

struct ChannelTable {
    map: HashMap<u16, Arc<ChannelShared>>,
    next: u16,
}

/// State shared by the connection handle, its channels and its two tasks.
pub(crate) struct ConnShared {
    pub(super) out: Mutex<Outbox>,
    /// Wakes the writer when the outbox goes from empty to non-empty or the connection fails.
    pub(super) wake_writer: Notify,
    /// Wakes publishers waiting for the outbox to drain below `HIGH_WATER`.
    pub(super) drained: Notify,
    channels: Mutex<ChannelTable>,
    pub(crate) tuning: Tuning,
    pub(super) blocked: AtomicBool,
    server_properties: FieldTable,
}

impl ConnShared {
    /// Appends frames through `encode`, waiting first while the outbox is over `HIGH_WATER`.
    /// Fails once the connection has failed or closed.
    pub(crate) async fn send_with<R>(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> R,
    ) -> Result<R, ClientError> {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let mut out = lock(&self.out);
                if let Some(error) = &out.error {
                    return Err(error.clone());
                }
                if out.buf.len() < HIGH_WATER {
                    let was_empty = out.buf.is_empty();
                    let result = encode(&mut out.buf);
                    drop(out);
                    // A non-empty outbox means the writer was already woken and will look again.
                    if was_empty {
                        self.wake_writer.notify_one();
                    }
                    return Ok(result);
                }
            }
            drained.await;
        }
    }

    /// Appends a method frame whatever the state: close-ok and friends must go out even after
    /// the connection has failed for everything else.
    pub(super) fn push_method_always(&self, channel: u16, method: &Method) {
        encode_method(channel, method, &mut lock(&self.out).buf);
        self.wake_writer.notify_one();
    }

    /// Ends the connection with `error` (the first error wins) and fails every channel.
    pub(crate) fn fail(&self, error: ClientError) {
        {
            let mut out = lock(&self.out);
            if out.error.is_none() {
                out.error = Some(error.clone());
            }
        }
        self.wake_writer.notify_one();
        self.drained.notify_waiters();
        let channels: Vec<_> = lock(&self.channels).map.drain().map(|(_, c)| c).collect();
        for channel in channels {
            channel.fail(error.clone());
        }
    }

    pub(crate) fn error(&self) -> Option<ClientError> {
        lock(&self.out).error.clone()
    }

    pub(super) fn channel(&self, id: u16) -> Option<Arc<ChannelShared>> {
        lock(&self.channels).map.get(&id).cloned()
    }

    pub(crate) fn remove_channel(&self, id: u16) {
        lock(&self.channels).map.remove(&id);
    }
}

/// An open AMQP connection. Dropping it without [`Connection::close`] aborts its tasks and drops
/// the socket.
pub struct Connection {
    shared: Arc<ConnShared>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Connection {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost`) with default options.
    pub async fn connect(url: &str) -> Result<Connection, ClientError> {
        Connection::connect_with(ConnectionOptions {
            url: AmqpUrl::parse(url)?,
            ..ConnectionOptions::default()
        })
        .await
    }

    /// Connects, runs the handshake (start/start-ok with PLAIN, tune/tune-ok, open) and starts
    /// the reader and writer tasks.
    pub async fn connect_with(options: ConnectionOptions) -> Result<Connection, ClientError> {
        let limit = options.connect_timeout;
        let (stream, buf, handshake) = timeout(limit, handshake(&options))
            .await
            .map_err(|_| ClientError::Timeout("connecting and handshake"))??;
        let (rd, wr) = stream.into_split();
        let shared = Arc::new(ConnShared {
            out: Mutex::new(Outbox {
                buf: BytesMut::with_capacity(READ_CHUNK),
                error: None,
            }),
            wake_writer: Notify::new(),
            drained: Notify::new(),
            channels: Mutex::new(ChannelTable {
                map: HashMap::new(),
                next: 1,
            }),
            tuning: handshake.tuning,
            blocked: AtomicBool::new(false),
            server_properties: handshake.server_properties,
        });
        let decoder = FrameDecoder::new(handshake.tuning.frame_max);
        let reader = tokio::spawn(super::tasks::reader_task(
            Arc::clone(&shared),
            rd,
            buf,
            decoder,
        ));
        let writer = tokio::spawn(super::tasks::writer_task(Arc::clone(&shared), wr));
        Ok(Connection {
            shared,
            reader: Some(reader),
            writer: Some(writer),
        })
    }

    /// What the handshake negotiated.
    pub fn tuning(&self) -> Tuning {
        self.shared.tuning
    }

    /// The server's `connection.start` properties (product, version, capabilities).
    pub fn server_properties(&self) -> &FieldTable {
        &self.shared.server_properties
    }

    /// Whether the server last said `connection.blocked` (a resource alarm: it has stopped
    /// reading from publishing connections).
    pub fn is_blocked(&self) -> bool {
        self.shared.blocked.load(Ordering::Relaxed)
    }

    /// Why the connection ended, once it has.
    pub fn error(&self) -> Option<ClientError> {
        self.shared.error()
    }

    /// Opens a channel on the lowest free number.
    pub async fn open_channel(&self) -> Result<Channel, ClientError> {
        if let Some(error) = self.shared.error() {
            return Err(error);
        }
        let channel_max = match self.shared.tuning.channel_max {
            0 => u16::MAX,
            n => n,
        };
        let shared = {
            let mut table = lock(&self.shared.channels);
            let mut id = table.next;
            let mut tried = 0u32;
            while table.map.contains_key(&id) || id == 0 || id > channel_max {
                id = if id >= channel_max { 1 } else { id + 1 };
                tried += 1;
                if tried > u32::from(channel_max) + 1 {
                    return Err(ClientError::ChannelsExhausted);
                }
            }
            table.next = if id >= channel_max { 1 } else { id + 1 };
            let shared = Arc::new(ChannelShared::new(id));
            table.map.insert(id, Arc::clone(&shared));
            shared
        };
        let channel = Channel::new(Arc::clone(&self.shared), shared);
        match channel.open().await {
            Ok(()) => Ok(channel),
            Err(error) => {
                self.shared.remove_channel(channel.id());
                Err(error)
            }
        }
    }

    /// Sends `connection.close` (200) and waits for `close-ok` and both tasks to finish. Returns
    /// the earlier error if the connection had already failed.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let close = Method::ConnectionClose(ConnectionClose {
            reply_code: ReplyCode::REPLY_SUCCESS.code(),
            reply_text: "Goodbye".into(),
            class_id: 0,
            method_id: 0,
        });
        let sent = self
            .shared
            .send_with(|buf| encode_method(0, &close, buf))
            .await;
        if let Err(error) = sent {
            return match error {
                ClientError::Closed => Ok(()),
                error => Err(error),
            };
        }
        let tasks = async {
            if let Some(reader) = self.reader.take() {
                let _ = reader.await;
            }
            if let Some(writer) = self.writer.take() {
                let _ = writer.await;
            }
        };
        if timeout(Duration::from_secs(10), tasks).await.is_err() {
            return Err(ClientError::Timeout("waiting for connection.close-ok"));
        }
        match self.shared.error() {
            None | Some(ClientError::Closed) => Ok(()),
            Some(error) => Err(error),
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("tuning", &self.shared.tuning)
            .field("error", &self.shared.error())
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        self.shared.fail(ClientError::Closed);
    }
}

struct Handshake {
    tuning: Tuning,
    server_properties: FieldTable,
}

/// 0 means "no limit" on either side; otherwise the smaller value wins.
fn negotiate<T: Copy + Ord + Default>(ours: T, theirs: T) -> T {
    if ours == T::default() || theirs == T::default() {
        ours.max(theirs)
    } else {
        ours.min(theirs)
    }
}

fn client_properties(options: &ConnectionOptions) -> FieldTable {
    let mut capabilities = FieldTable::new();
    for capability in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "exchange_exchange_bindings",
    ] {
        capabilities.insert(capability, true);
    }
    let mut properties = FieldTable::new();
    properties.insert("product", "warren-client");
    properties.insert("version", env!("CARGO_PKG_VERSION"));
    properties.insert("platform", "Rust");
    properties.insert("capabilities", capabilities);
    if let Some(name) = &options.connection_name {
        properties.insert("connection_name", name.as_str());
    }
    properties
}

/// Reads until one frame is decoded. EOF is reported as `Protocol` naming the step, because a
/// server that hangs up mid-handshake is refusing us (old RabbitMQs did that on bad passwords).
async fn read_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
    step: &str,
) -> Result<Frame, ClientError> {
    loop {
        if buf.starts_with(b"AMQP") && buf.len() >= PROTOCOL_HEADER.len() {
            return Err(ClientError::Protocol(format!(
                "server refused protocol 0-9-1 and offered {:?}",
                &buf[..PROTOCOL_HEADER.len()]
            )));
        }
        if !buf.starts_with(b"AMQP") {
            if let Some(frame) = decoder.decode(buf).map_err(ClientError::Frame)? {
                return Ok(frame);
            }
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await? == 0 {
            return Err(ClientError::Protocol(format!(
                "server closed the connection while we waited for {step}"
            )));
        }
    }
}

/// Reads the next channel-0 method, turning a `connection.close` into an error (after answering
/// it) and skipping heartbeats.
async fn expect_method(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
    step: &str,
) -> Result<Method, ClientError> {
    loop {
        match read_frame(stream, buf, decoder, step).await? {
            Frame::Heartbeat { .. } => continue,
            Frame::Method {
                channel: 0,
                method: Method::ConnectionClose(close),
            } => {
                let mut out = BytesMut::new();
                encode_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk), &mut out);
                // Best effort: the error to report is the server's close, not a failed write.
                let _ = stream.write_all(&out).await;
                return Err(ClientError::ConnectionClosed(close_reason(&close)));
            }
            Frame::Method { channel: 0, method } => return Ok(method),
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected {step} on channel 0, got {}",
                    frame_name(&other)
                )))
            }
        }
    }
}

async fn handshake(
    options: &ConnectionOptions,
) -> Result<(TcpStream, BytesMut, Handshake), ClientError> {
    let mut stream = TcpStream::connect(options.url.socket_addr()).await?;
    // Publishes are batched by the writer; Nagle would only add latency on top.
    stream.set_nodelay(true)?;
    stream.write_all(&PROTOCOL_HEADER).await?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut decoder = FrameDecoder::new(FRAME_MIN_SIZE);

    let start = match expect_method(&mut stream, &mut buf, &mut decoder, "connection.start").await?
    {
        Method::ConnectionStart(start) => start,
        other => return Err(unexpected("connection.start", &other)),
    };
    if (start.version_major, start.version_minor) != (0, 9) {
        return Err(ClientError::Protocol(format!(
            "server speaks AMQP {}-{}, not 0-9",
            start.version_major, start.version_minor
        )));
    }
    if !start
        .mechanisms
        .split(|b| *b == b' ')
        .any(|m| m == b"PLAIN")
    {
        return Err(ClientError::Protocol(format!(
            "server does not offer PLAIN authentication (offers {:?})",
            String::from_utf8_lossy(&start.mechanisms)
        )));
    }
    let url = &options.url;
    let mut response = Vec::with_capacity(url.user.len() + url.password.len() + 2);
    response.push(0);
    response.extend_from_slice(url.user.as_bytes());
    response.push(0);
    response.extend_from_slice(url.password.as_bytes());
    let start_ok = Method::ConnectionStartOk(ConnectionStartOk {
        client_properties: client_properties(options),
        mechanism: "PLAIN".into(),
        response: Bytes::from(response),
        locale: "en_US".into(),
    });
    let mut out = BytesMut::new();
    encode_method(0, &start_ok, &mut out);
    stream.write_all(&out).await?;

    let tune = match expect_method(&mut stream, &mut buf, &mut decoder, "connection.tune").await? {
        Method::ConnectionTune(tune) => tune,
        Method::ConnectionSecure(_) => {
            return Err(ClientError::Protocol(
                "server sent connection.secure, which PLAIN does not use".into(),
            ))
        }
        other => return Err(unexpected("connection.tune", &other)),
    };
    let mut tuning = Tuning {
        channel_max: negotiate(options.channel_max, tune.channel_max),
        frame_max: negotiate(options.frame_max, tune.frame_max),
        heartbeat: negotiate(options.heartbeat, tune.heartbeat),
    };
    if tuning.frame_max != 0 && tuning.frame_max < FRAME_MIN_SIZE {
        return Err(ClientError::Protocol(format!(
            "server frame_max {} is below the minimum {FRAME_MIN_SIZE}",
            tune.frame_max
        )));
    }
    if tuning.frame_max == 0 {
        // "No limit" from both sides; keep our buffer bounded anyway.
        tuning.frame_max = 1 << 24;
    }
    decoder.set_frame_max(tuning.frame_max);
    out.clear();
    encode_method(
        0,
        &Method::ConnectionTuneOk(ConnectionTuneOk {
            channel_max: tuning.channel_max,
            frame_max: tuning.frame_max,
            heartbeat: tuning.heartbeat,
        }),
        &mut out,
    );
    encode_method(
        0,
        &Method::ConnectionOpen(ConnectionOpen {
            virtual_host: crate::protocol::ShortStr::new(&url.vhost)?,
        }),
        &mut out,
    );
    stream.write_all(&out).await?;
    match expect_method(&mut stream, &mut buf, &mut decoder, "connection.open-ok").await? {
        Method::ConnectionOpenOk(_) => {}
        other => return Err(unexpected("connection.open-ok", &other)),
    }
    Ok((
        stream,
        buf,
        Handshake {
            tuning,
            server_properties: start.server_properties,
        },
    ))
}

pub(crate) fn close_reason(close: &ConnectionClose) -> CloseReason {
    CloseReason {
        reply_code: close.reply_code,
        reply_text: close.reply_text.as_str().to_owned(),
        class_id: close.class_id,
        method_id: close.method_id,
    }
}

pub(crate) fn unexpected(wanted: &str, got: &Method) -> ClientError {
    ClientError::Protocol(format!("expected {wanted}, got {}", got.name()))
}

fn frame_name(frame: &Frame) -> String {
    match frame {
        Frame::Method { channel, method } => format!("{} on channel {channel}", method.name()),
        Frame::Header { channel, .. } => format!("a content header on channel {channel}"),
        Frame::Body { channel, .. } => format!("a content body on channel {channel}"),
        Frame::Heartbeat { channel } => format!("a heartbeat on channel {channel}"),
    }
}
