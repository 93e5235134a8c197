//! The writing half of a connection: one task that batches frames and sends heartbeats.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use crate::broker::persist::ConfirmGate;
use crate::protocol::{encode_heartbeat, encode_method, Method};

/// Frames queued but not yet written; a full queue makes the connection wait, which stops it
/// reading and lets TCP push back on the client.
const QUEUE_DEPTH: usize = 256;
/// Write once this much is batched even if more is queued.
const BATCH_BYTES: usize = 128 * 1024;

enum Out {
    Bytes(Bytes),
    /// Bytes to write only once the gate's syncs are done (they hold publisher confirms for
    /// persistent messages). Everything queued after them waits too, so order is kept.
    Gated(ConfirmGate, Bytes),
    /// Start sending heartbeats at this interval (from tune-ok).
    Heartbeat(Duration),
}

/// The connection's handle on its writer task. Dropping it lets the task write what is
/// queued, shut the socket's write side and end.
pub struct Writer {
    tx: mpsc::Sender<Out>,
}

/// The writer task has ended (the peer is gone or the socket failed).
#[derive(Debug)]
pub struct WriterGone;

impl Writer {
    pub fn spawn<W>(socket: W) -> (Writer, JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(run(socket, rx));
        (Writer { tx }, task)
    }

    pub async fn send_bytes(&self, bytes: Bytes) -> Result<(), WriterGone> {
        self.tx
            .send(Out::Bytes(bytes))
            .await
            .map_err(|_| WriterGone)
    }

    /// Writes `bytes` once every sync in `gate` is done. A failed one ends the writer (and so
    /// the connection) without writing them: no confirm for a message not on disk.
    pub async fn send_gated(&self, gate: ConfirmGate, bytes: Bytes) -> Result<(), WriterGone> {
        let out = if gate.is_empty() {
            Out::Bytes(bytes)
        } else {
            Out::Gated(gate, bytes)
        };
        self.tx.send(out).await.map_err(|_| WriterGone)
    }

    pub async fn send_method(&self, channel: u16, method: &Method) -> Result<(), WriterGone> {
        let mut buf = BytesMut::new();
        encode_method(channel, method, &mut buf);
        self.send_bytes(buf.freeze()).await
    }

    /// Heartbeats go out whenever nothing else was written for half the interval, so the
    /// client sees traffic at least once per interval.
    pub async fn start_heartbeats(&self, interval: Duration) -> Result<(), WriterGone> {
        self.tx
            .send(Out::Heartbeat(interval))
            .await
            .map_err(|_| WriterGone)
    }
}

async fn run<W: AsyncWrite + Unpin>(mut socket: W, mut rx: mpsc::Receiver<Out>) {
    let mut buf = BytesMut::new();
    let mut tick: Option<(Duration, Instant)> = None;
    let mut wrote_since_tick = false;
    loop {
        let next = match tick {
            Some((period, at)) => match timeout_at(at, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    if !wrote_since_tick {
                        encode_heartbeat(&mut buf);
                    }
                    wrote_since_tick = false;
                    tick = Some((period, Instant::now() + period));
                    if buf.is_empty() {
                        continue;
                    }
                    if socket.write_all(&buf).await.is_err() {
                        return;
                    }
                    buf.clear();
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = next else { break };
        let mut next = Some(first);
        while let Some(out) = next.take() {
            if let Out::Gated(gate, bytes) = out {
                // What is batched already goes out first: it does not wait for the disk.
                if !buf.is_empty() {
                    if socket.write_all(&buf).await.is_err() {
                        return;
                    }
                    buf.clear();
                }
                if let Err(e) = gate.wait().await {
                    tracing::error!(error = %e, "store commit failed; closing the connection without its confirms");
                    let _ = socket.shutdown().await;
                    return;
                }
                buf.extend_from_slice(&bytes);
            } else {
                take(out, &mut buf, &mut tick);
            }
            if buf.len() < BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if buf.is_empty() {
            continue;
        }
        if socket.write_all(&buf).await.is_err() || socket.flush().await.is_err() {
            return;
        }
        buf.clear();
        wrote_since_tick = true;
    }
    let _ = socket.shutdown().await;
}

fn take(out: Out, buf: &mut BytesMut, tick: &mut Option<(Duration, Instant)>) {
    match out {
        Out::Bytes(bytes) | Out::Gated(_, bytes) => buf.extend_from_slice(&bytes),
        Out::Heartbeat(interval) => {
            let period = interval / 2;
            *tick = (!period.is_zero()).then(|| (period, Instant::now() + period));
        }
    }
}
