//! A small async AMQP 0-9-1 client on tokio, built on [`crate::protocol`] for framing.
//!
//! It exists for Warren's own tools and tests: `warren perf` drives brokers with it, and
//! integration tests talk to the server through it. It speaks what RabbitMQ's clients speak
//! (PLAIN auth, publisher confirms, consumer cancel notifications, connection.blocked) and is
//! built for throughput: one reader task and one writer task per connection; publishers append
//! encoded frames to a shared buffer that the writer sends as one batch per wake-up.
//!
//! ```no_run
//! # async fn demo() -> Result<(), warren::client::ClientError> {
//! use warren::client::{Connection, ConsumeOptions, PublishTarget};
//! use warren::protocol::{BasicProperties, QueueDeclare};
//!
//! let conn = Connection::connect("amqp://guest:guest@127.0.0.1:5672/").await?;
//! let ch = conn.open_channel().await?;
//! let ok = ch.queue_declare(QueueDeclare { queue: "hello".into(), ..Default::default() }).await?;
//! ch.basic_publish(&PublishTarget::new("", "hello")?, &BasicProperties::default(), b"hi").await?;
//! let mut consumer = ch.basic_consume(ok.queue.as_str(), ConsumeOptions::default()).await?;
//! if let Some(delivery) = consumer.recv().await {
//!     ch.basic_ack(delivery.delivery_tag, false).await?;
//! }
//! conn.close().await
//! # }
//! ```
//!
//! Flow control: publishers wait while more than 1 MiB of frames is queued for the writer (a
//! slow or blocked broker pushes back through TCP); each consumer has a bounded buffer, and a
//! full one stops the connection's reader.
//!
//! Not supported (yet): TLS (`amqps://`), mechanisms other than PLAIN, `basic.get`, `tx.*`,
//! a handler for `basic.return` (returns are counted by [`Channel::returned`] and dropped),
//! URL query parameters.
//!
//! Lock order (std mutexes, never held across an await): the connection's outbox before a
//! channel's state; the channel table is never held while taking either.
//!
//! Server input never panics the client: a frame we cannot decode, an unexpected frame or a
//! close from the server ends the connection (or channel) with a [`ClientError`].

mod channel;
mod connection;
mod tasks;
#[cfg(test)]
mod tests;
mod url;

use std::fmt;
use std::sync::Arc;

pub use channel::{
    Channel, Confirm, ConfirmCounts, ConsumeOptions, Consumer, Delivery, PublishTarget,
};
pub use connection::{Connection, ConnectionOptions, Tuning};
pub use url::{AmqpUrl, UrlError, DEFAULT_PORT};

use crate::protocol::{FrameError, ShortStrError};

/// Why the server closed a connection or channel: the fields of its `close` method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub reply_code: u16,
    pub reply_text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.reply_code, self.reply_text)?;
        if self.class_id != 0 {
            write!(f, " (method {}.{})", self.class_id, self.method_id)?;
        }
        Ok(())
    }
}

/// Everything the client can fail with. Cloneable because one connection failure is reported to
/// every channel and waiter.
#[derive(Debug, Clone)]
pub enum ClientError {
    Url(UrlError),
    /// A name longer than 255 bytes where AMQP wants a shortstr.
    Name(ShortStrError),
    Io(Arc<std::io::Error>),
    /// Connecting, the handshake or a heartbeat took too long; the text says which.
    Timeout(&'static str),
    /// The server sent something AMQP forbids at that point, or we cannot use (no PLAIN, a
    /// header frame without a method before it, …).
    Protocol(String),
    /// A frame the codec rejected; the connection was closed with its reply code.
    Frame(FrameError),
    /// The server closed the connection (`connection.close`).
    ConnectionClosed(CloseReason),
    /// The server closed the channel (`channel.close`).
    ChannelClosed(CloseReason),
    /// We closed the connection or channel, or the socket ended after we asked to.
    Closed,
    /// Every channel number up to the negotiated channel_max is in use.
    ChannelsExhausted,
}

impl ClientError {
    /// The server's reply code when it closed the connection or channel.
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            ClientError::ConnectionClosed(r) | ClientError::ChannelClosed(r) => Some(r.reply_code),
            _ => None,
        }
    }

    pub(crate) fn io(error: std::io::Error) -> ClientError {
        ClientError::Io(Arc::new(error))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url(e) => write!(f, "{e}"),
            ClientError::Name(e) => write!(f, "bad name: {e}"),
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Timeout(what) => write!(f, "timed out: {what}"),
            ClientError::Protocol(text) => write!(f, "protocol error: {text}"),
            ClientError::Frame(e) => write!(f, "bad frame from server: {e}"),
            ClientError::ConnectionClosed(r) => write!(f, "connection closed by server: {r}"),
            ClientError::ChannelClosed(r) => write!(f, "channel closed by server: {r}"),
            ClientError::Closed => write!(f, "closed"),
            ClientError::ChannelsExhausted => write!(f, "no free channel number"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<UrlError> for ClientError {
    fn from(e: UrlError) -> ClientError {
        ClientError::Url(e)
    }
}

impl From<ShortStrError> for ClientError {
    fn from(e: ShortStrError) -> ClientError {
        ClientError::Name(e)
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> ClientError {
        ClientError::io(e)
    }
}

/// Locks a std mutex, ignoring poisoning: our critical sections do not panic, and a poisoned
/// lock must not turn into a panic in the caller either.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
