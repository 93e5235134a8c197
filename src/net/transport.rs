//! What a connection runs over: a byte stream that reads and writes, split into the halves the
//! frame reader and the writer task own. TCP is one; a TLS stream (issue 11) is another.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A stream a client connection can be served over.
///
/// The halves are the stream's own where it has lock-free ones (TCP); a stream without them
/// (a TLS session, whose reads and writes share one state) uses `tokio::io::split`:
///
/// ```ignore
/// impl Transport for TlsStream<TcpStream> {
///     type Read = ReadHalf<Self>;
///     type Write = WriteHalf<Self>;
///     fn split(self) -> (Self::Read, Self::Write) {
///         tokio::io::split(self)
///     }
/// }
/// ```
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;

    fn split(self) -> (Self::Read, Self::Write);
}

impl Transport for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

/// An in-memory stream, to serve a connection without a socket in tests.
#[cfg(test)]
impl Transport for tokio::io::DuplexStream {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;

    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}
