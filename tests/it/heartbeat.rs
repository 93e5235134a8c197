//! Heartbeats: the server sends them, keeps talking clients, and drops silent ones after two
//! intervals with RabbitMQ's log line.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{raw_frame, start_server, RawClient};
use warren::protocol::Frame;

#[tokio::test]
async fn the_server_sends_heartbeats() {
    let server = start_server(|config| config.heartbeat = 2).await;
    let mut c = RawClient::open(server.addr, "heartbeat/server_sends", 2).await;
    let started = Instant::now();
    let frame = c.next_frame().await;
    assert_eq!(frame, Some(Frame::Heartbeat { channel: 0 }));
    assert!(started.elapsed() < Duration::from_secs(5));
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_client_that_sends_heartbeats_stays_connected() {
    let server = start_server(|config| config.heartbeat = 2).await;
    let mut c = RawClient::open(server.addr, "heartbeat/idle_but_alive", 2).await;
    c.open_channel(1).await;
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        c.send_raw(&raw_frame(8, 0, b"")).await;
        match tokio::time::timeout(Duration::from_secs(1), c.next_frame()).await {
            Err(_) | Ok(Some(Frame::Heartbeat { channel: 0 })) => {}
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    c.ping(1).await;
    server.handle.shutdown().await;
}

/// Collects what the tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// The default (current-thread) runtime runs the server's tasks on this thread, so a
// thread-local subscriber sees their events.
#[tokio::test]
async fn a_silent_client_is_dropped_after_two_intervals() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = start_server(|config| config.heartbeat = 2).await;
    let mut c = RawClient::open(server.addr, "heartbeat/silent", 2).await;
    let silent_since = Instant::now();
    c.expect_eof().await;
    let elapsed = silent_since.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed <= Duration::from_secs(7),
        "closed after {elapsed:?}"
    );
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("missed heartbeats from client, timeout: 2s"),
        "log was:\n{text}"
    );
    server.handle.shutdown().await;
}
