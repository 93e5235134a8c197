//! The reading half of a connection: bytes from the stream, frames out.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::protocol::{
    check_protocol_header, Frame, FrameDecoder, FrameError, HeaderCheck, FRAME_MIN_SIZE,
    PROTOCOL_HEADER,
};

/// Why no frame came.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the socket.
    Eof,
    Io(io::Error),
    Frame(FrameError),
}

/// Reads frames. `next_frame` is cancel-safe: partial frames stay in `buf`.
///
/// Invariant: `buf` holds at most one frame's worth beyond what was decoded, because the
/// decoder rejects a frame whose declared size exceeds frame_max before buffering it.
pub struct Reader<R> {
    socket: R,
    buf: BytesMut,
    decoder: FrameDecoder,
    last_read: Instant,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Before tune-ok the frame limit is `FRAME_MIN_SIZE` (4096), as in RabbitMQ 3.x
    /// (RabbitMQ 4.1 allows 8192 before authentication).
    pub fn new(socket: R) -> Reader<R> {
        Reader {
            socket,
            buf: BytesMut::with_capacity(FRAME_MIN_SIZE as usize),
            decoder: FrameDecoder::new(FRAME_MIN_SIZE),
            last_read: Instant::now(),
        }
    }

    /// When bytes last arrived: any traffic proves the peer alive.
    pub fn last_read(&self) -> Instant {
        self.last_read
    }

    /// Whether a whole frame is already buffered, so `next_frame` will not wait on the socket.
    pub fn frame_ready(&self) -> bool {
        let Some(&[_, _, _, s1, s2, s3, s4]) = self.buf.get(..7) else {
            return false;
        };
        let size = u32::from_be_bytes([s1, s2, s3, s4]) as usize;
        self.buf.len() >= size.saturating_add(8)
    }

    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.decoder.set_frame_max(frame_max);
    }

    /// Reads the 8-octet protocol header, deciding as early as the octets allow.
    pub async fn protocol_header(&mut self) -> Result<HeaderCheck, ReadError> {
        loop {
            match check_protocol_header(&self.buf) {
                HeaderCheck::Incomplete => self.fill().await?,
                HeaderCheck::Valid => {
                    let _ = self.buf.split_to(PROTOCOL_HEADER.len());
                    return Ok(HeaderCheck::Valid);
                }
                HeaderCheck::Invalid => return Ok(HeaderCheck::Invalid),
            }
        }
    }

    pub async fn next_frame(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(ReadError::Frame)?
            {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), ReadError> {
        if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(FRAME_MIN_SIZE as usize);
        }
        match self.socket.read_buf(&mut self.buf).await {
            Ok(0) => Err(ReadError::Eof),
            Ok(_) => {
                self.last_read = Instant::now();
                Ok(())
            }
            Err(e) => Err(ReadError::Io(e)),
        }
    }
}
