//! The real `warren` binary: signals and configuration errors.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{self, Close, RawClient};

/// Kills the child if a test fails half-way.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_broker(data_dir: &std::path::Path) -> (Broker, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("WARREN_CONFIG")
        .env("WARREN_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("local_addr="))
            {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx
        .recv_timeout(common::WAIT)
        .expect("broker did not log its address");
    (Broker(child), addr)
}

fn wait_exit(broker: &mut Broker) -> std::process::ExitStatus {
    let deadline = Instant::now() + common::WAIT;
    loop {
        if let Some(status) = broker.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "broker did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn sigterm_closes_connections_with_320_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (mut broker, addr) = spawn_broker(&data_dir);
    assert!(data_dir.is_dir(), "data dir created");
    let mut client = RawClient::open(addr, "binary/sigterm", 0).await;
    client.open_channel(1).await;
    let status = Command::new("kill")
        .args(["-TERM", &broker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        client.expect_close().await,
        Close::new(
            320,
            "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
            0,
            0
        )
    );
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut broker))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_bad_config_file_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "heartbeat = \"often\"\n").unwrap();
    for (file, expected) in [
        (&missing, "cannot read config file"),
        (&bad, "invalid config file"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["server", "--listen", "127.0.0.1:0", "--config"])
            .arg(file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(expected), "stderr: {stderr}");
        assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    }
}
