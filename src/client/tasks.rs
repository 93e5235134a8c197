//! The two tasks of a connection: the writer that sends the outbox in batches, and the reader
//! that decodes frames and hands them to channels.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{timeout, Instant};

use super::channel::ContentKind;
use super::connection::{close_reason, ConnShared, READ_CHUNK};
use super::{lock, ClientError, CloseReason};
use crate::protocol::{
    encode_heartbeat, BasicProperties, ChannelCloseOk, ChannelFlowOk, ConnectionClose,
    ConnectionCloseOk, Frame, FrameDecoder, Method, ReplyCode,
};

/// Sends the outbox in batches: swap the shared buffer with an empty one under the lock, write
/// the whole batch with one `write_all`, repeat. Sends a heartbeat when idle for half the
/// negotiated interval.
pub(crate) async fn writer_task(shared: Arc<ConnShared>, mut wr: OwnedWriteHalf) {
    let mut batch = BytesMut::with_capacity(READ_CHUNK);
    let interval = match shared.tuning.heartbeat {
        0 => None,
        secs => Some(Duration::from_millis(u64::from(secs) * 500)),
    };
    let mut last_write = Instant::now();
    loop {
        let done = {
            let mut out = lock(&shared.out);
            if out.buf.is_empty() {
                out.error.is_some()
            } else {
                std::mem::swap(&mut out.buf, &mut batch);
                false
            }
        };
        if !batch.is_empty() {
            let written = wr.write_all(&batch).await;
            batch.clear();
            shared.drained.notify_waiters();
            if let Err(error) = written {
                shared.fail(ClientError::io(error));
                break;
            }
            last_write = Instant::now();
            continue;
        }
        if done {
            break;
        }
        match interval {
            Some(interval) => {
                tokio::select! {
                    _ = shared.wake_writer.notified() => {}
                    _ = tokio::time::sleep_until(last_write + interval) => {
                        encode_heartbeat(&mut batch);
                    }
                }
            }
            None => shared.wake_writer.notified().await,
        }
    }
    let _ = wr.shutdown().await;
}

/// Reads frames and dispatches them until the connection ends, then fails everything with why.
pub(crate) async fn reader_task(
    shared: Arc<ConnShared>,
    rd: OwnedReadHalf,
    buf: BytesMut,
    decoder: FrameDecoder,
) {
    let mut reader = Reader {
        shared: Arc::clone(&shared),
        rd,
        buf,
        decoder,
        content: HashMap::new(),
    };
    let error = reader.run().await;
    shared.fail(error);
}

/// A delivery or return waiting for its header and body frames.
struct PendingContent {
    kind: ContentKind,
    properties: Option<BasicProperties>,
    body_size: u64,
    /// The first body frame, kept as is so single-frame bodies are never copied.
    first: Option<Bytes>,
    /// Used once a second body frame arrives.
    rest: BytesMut,
}

struct Reader {
    shared: Arc<ConnShared>,
    rd: OwnedReadHalf,
    buf: BytesMut,
    decoder: FrameDecoder,
    content: HashMap<u16, PendingContent>,
}

impl Reader {
    async fn run(&mut self) -> ClientError {
        // RabbitMQ's rule: two missed intervals and the peer is gone.
        let limit = match self.shared.tuning.heartbeat {
            0 => None,
            secs => Some(Duration::from_secs(u64::from(secs) * 2)),
        };
        loop {
            loop {
                match self.decoder.decode(&mut self.buf) {
                    Ok(Some(frame)) => {
                        if let Err(error) = self.dispatch(frame).await {
                            return error;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        let text = error.to_string();
                        return self.close_with(
                            error.reply_code(),
                            &text,
                            ClientError::Frame(error),
                        );
                    }
                }
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let read = self.rd.read_buf(&mut self.buf);
            let read = match limit {
                Some(limit) => match timeout(limit, read).await {
                    Ok(read) => read,
                    Err(_) => return ClientError::Timeout("no data or heartbeat from the server"),
                },
                None => read.await,
            };
            match read {
                Ok(0) => {
                    return match self.shared.error() {
                        Some(error) => error,
                        None => ClientError::io(std::io::ErrorKind::UnexpectedEof.into()),
                    }
                }
                Ok(_) => {}
                Err(error) => return ClientError::io(error),
            }
        }
    }

    /// Sends `connection.close` for a fault of the server's and returns `error` to end with.
    fn close_with(&self, code: ReplyCode, text: &str, error: ClientError) -> ClientError {
        let mut reply_text = text.to_owned();
        reply_text.truncate(
            (0..=reply_text.len().min(255))
                .rev()
                .find(|&i| reply_text.is_char_boundary(i))
                .unwrap_or(0),
        );
        self.shared.push_method_always(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: code.code(),
                reply_text: reply_text.into(),
                class_id: 0,
                method_id: 0,
            }),
        );
        error
    }

    fn unexpected_frame(&self, text: String) -> ClientError {
        self.close_with(
            ReplyCode::UNEXPECTED_FRAME,
            &text,
            ClientError::Protocol(text.clone()),
        )
    }

    async fn dispatch(&mut self, frame: Frame) -> Result<(), ClientError> {
        match frame {
            Frame::Heartbeat { .. } => Ok(()),
            Frame::Method { channel: 0, method } => self.connection_method(method),
            Frame::Method { channel, method } => self.channel_method(channel, method),
            Frame::Header { channel, header } => {
                let Some(pending) = self.content.get_mut(&channel) else {
                    return Err(self.unexpected_frame(format!(
                        "content header on channel {channel} without a method before it"
                    )));
                };
                if pending.properties.is_some() {
                    return Err(self
                        .unexpected_frame(format!("second content header on channel {channel}")));
                }
                pending.body_size = header.body_size;
                pending.properties = Some(header.properties);
                if header.body_size == 0 {
                    return self.finish_content(channel).await;
                }
                Ok(())
            }
            Frame::Body { channel, payload } => {
                let Some(pending) = self.content.get_mut(&channel) else {
                    return Err(self.unexpected_frame(format!(
                        "content body on channel {channel} without a method before it"
                    )));
                };
                if pending.properties.is_none() {
                    return Err(self.unexpected_frame(format!(
                        "content body on channel {channel} before its header"
                    )));
                }
                // `rest` holds everything once in use, `first` only until then.
                let so_far = match pending.rest.is_empty() {
                    true => pending.first.as_ref().map_or(0, Bytes::len),
                    false => pending.rest.len(),
                };
                let have = so_far as u64 + payload.len() as u64;
                if have > pending.body_size {
                    let size = pending.body_size;
                    return Err(self.unexpected_frame(format!(
                        "content body on channel {channel} longer than the {size} octets announced"
                    )));
                }
                match &pending.first {
                    None => pending.first = Some(payload),
                    Some(first) => {
                        if pending.rest.is_empty() {
                            // Bounded by what has arrived, never by the announced size alone.
                            pending.rest.reserve(first.len() * 2 + payload.len());
                            pending.rest.extend_from_slice(first);
                        }
                        pending.rest.extend_from_slice(&payload);
                    }
                }
                if have == pending.body_size {
                    return self.finish_content(channel).await;
                }
                Ok(())
            }
        }
    }

    async fn finish_content(&mut self, channel: u16) -> Result<(), ClientError> {
        let Some(pending) = self.content.remove(&channel) else {
            return Ok(());
        };
        let body = if pending.rest.is_empty() {
            pending.first.unwrap_or_default()
        } else {
            pending.rest.freeze()
        };
        let properties = pending.properties.unwrap_or_default();
        if let Some(shared) = self.shared.channel(channel) {
            shared.content(pending.kind, properties, body).await;
        }
        Ok(())
    }

    fn connection_method(&mut self, method: Method) -> Result<(), ClientError> {
        match method {
            Method::ConnectionClose(close) => {
                self.shared
                    .push_method_always(0, &Method::ConnectionCloseOk(ConnectionCloseOk));
                Err(ClientError::ConnectionClosed(close_reason(&close)))
            }
            // The answer to our own close.
            Method::ConnectionCloseOk(_) => Err(ClientError::Closed),
            Method::ConnectionBlocked(_) => {
                self.shared.blocked.store(true, Ordering::Relaxed);
                Ok(())
            }
            Method::ConnectionUnblocked(_) => {
                self.shared.blocked.store(false, Ordering::Relaxed);
                Ok(())
            }
            other => Err(self.unexpected_frame(format!("{} on channel 0", other.name()))),
        }
    }

    fn channel_method(&mut self, channel: u16, method: Method) -> Result<(), ClientError> {
        if self.content.contains_key(&channel) {
            return Err(self.unexpected_frame(format!(
                "{} on channel {channel} while content was expected",
                method.name()
            )));
        }
        let Some(shared) = self.shared.channel(channel) else {
            // A channel we already forgot (closed on our side): RabbitMQ may still have sent a
            // few frames for it. Content frames that follow are dropped the same way.
            if method.has_content() {
                self.content
                    .insert(channel, PendingContent::new(ContentKind::Dropped));
            }
            return Ok(());
        };
        match method {
            Method::BasicDeliver(deliver) => {
                self.content
                    .insert(channel, PendingContent::new(ContentKind::Deliver(deliver)));
            }
            Method::BasicReturn(_) => {
                self.content
                    .insert(channel, PendingContent::new(ContentKind::Return));
            }
            Method::BasicAck(ack) => shared.confirm(ack.delivery_tag, ack.multiple, false),
            Method::BasicNack(nack) => shared.confirm(nack.delivery_tag, nack.multiple, true),
            Method::BasicCancel(cancel) => shared.cancelled(&cancel.consumer_tag),
            Method::ChannelFlow(flow) => self.shared.push_method_always(
                channel,
                &Method::ChannelFlowOk(ChannelFlowOk {
                    active: flow.active,
                }),
            ),
            Method::ChannelClose(close) => {
                self.shared.remove_channel(channel);
                shared.fail(ClientError::ChannelClosed(CloseReason {
                    reply_code: close.reply_code,
                    reply_text: close.reply_text.as_str().to_owned(),
                    class_id: close.class_id,
                    method_id: close.method_id,
                }));
                self.shared
                    .push_method_always(channel, &Method::ChannelCloseOk(ChannelCloseOk));
            }
            Method::ChannelCloseOk(ok) => {
                self.shared.remove_channel(channel);
                // Nobody waits if the close raced with one from the server.
                let _ = shared.reply(Method::ChannelCloseOk(ok));
                shared.fail(ClientError::Closed);
            }
            other if other.has_content() => {
                // basic.get-ok: this client never sends basic.get.
                return Err(self.unexpected_frame(format!(
                    "{} on channel {channel}, which this client never asks for",
                    other.name()
                )));
            }
            other => {
                if let Err(name) = shared.reply(other) {
                    return Err(self.unexpected_frame(format!(
                        "{name} on channel {channel} with no request waiting"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl PendingContent {
    fn new(kind: ContentKind) -> PendingContent {
        PendingContent {
            kind,
            properties: None,
            body_size: 0,
            first: None,
            rest: BytesMut::new(),
        }
    }
}
