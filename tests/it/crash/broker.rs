//! The `warren` binary as a child process, and the waiting helpers every step uses.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::time::timeout;
use warren::client::{AmqpUrl, ClientError, Connection, ConnectionOptions};

/// Limit for one client request or one wait; generous, the machine is small and shared.
pub(crate) const STEP: Duration = Duration::from_secs(20);
/// Limit for a broker to accept AMQP after it was spawned (recovery included).
pub(crate) const READY: Duration = Duration::from_secs(60);

/// A `warren server` child. Dropping it SIGKILLs the child; if the test is panicking, the tail
/// of the child's log is printed first.
pub(crate) struct Broker {
    pub(crate) child: Option<Child>,
    pub(crate) addr: SocketAddr,
    /// stdout (the tracing log) and stderr of the child, in one file.
    pub(crate) log: PathBuf,
    pub(crate) name: String,
}

/// A port that was free a moment ago: bind 127.0.0.1:0 and let it go.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Broker {
    /// Spawns `warren server` on a free port with `data_dir`, logging to `log`, without waiting.
    pub(crate) fn spawn(data_dir: &Path, log: PathBuf, name: &str) -> Broker {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("server")
            .env_remove("WARREN_CONFIG")
            .env("WARREN_LISTEN", addr.to_string())
            .env("WARREN_DATA_DIR", data_dir)
            .env("WARREN_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Broker {
            child: Some(child),
            addr,
            log,
            name: name.to_owned(),
        }
    }

    /// Spawns and waits until the broker completes an AMQP handshake. Retries on another port
    /// if the one picked was taken in the meantime.
    pub(crate) async fn start(data_dir: &Path, log_dir: &Path, name: &str) -> Broker {
        for attempt in 0..3 {
            let log = log_dir.join(format!("{name}.{attempt}.log"));
            let mut broker = Broker::spawn(data_dir, log, name);
            match broker.wait_ready().await {
                Ok(()) => return broker,
                Err(status) => {
                    let log = tail(&broker.log, 40);
                    if log.contains("ddress already in use") {
                        continue;
                    }
                    panic!(
                        "broker {name} exited before accepting AMQP ({status}); log tail:\n{log}"
                    );
                }
            }
        }
        panic!("broker {name}: no free port after 3 attempts");
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@{}/", self.addr)
    }

    pub(crate) fn options(&self, connection_name: &str) -> ConnectionOptions {
        ConnectionOptions {
            url: AmqpUrl::parse(&self.url()).unwrap(),
            connection_name: Some(connection_name.to_owned()),
            connect_timeout: Duration::from_secs(5),
            ..ConnectionOptions::default()
        }
    }

    pub(crate) async fn connect(&self, connection_name: &str) -> Connection {
        Connection::connect_with(self.options(connection_name))
            .await
            .unwrap_or_else(|e| panic!("{}: connecting as {connection_name}: {e}", self.name))
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("broker already stopped")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker already stopped").id()
    }

    /// Until a handshake succeeds; `Err` with the exit status if the child exits first.
    pub(crate) async fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                return Err(status);
            }
            let options = ConnectionOptions {
                connect_timeout: Duration::from_secs(2),
                ..self.options("crash-test/ready-probe")
            };
            if let Ok(conn) = Connection::connect_with(options).await {
                let _ = timeout(STEP, conn.close()).await;
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "broker {} did not accept AMQP within {READY:?}; log tail:\n{}",
                self.name,
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on unix) and reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (up to `STEP`) for the exit status.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait_exit(STEP)
            .unwrap_or_else(|| panic!("broker {} did not exit after SIGTERM", self.name))
    }

    /// The exit status if the child exits within `limit`.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- tail of broker {} log ({}) ----\n{}\n----",
                self.name,
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }
}

/// Awaits `future` for at most `limit`, panicking with `what` if it takes longer.
pub(crate) async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A client request that must succeed within `STEP`.
pub(crate) async fn ok<T>(what: &str, future: impl Future<Output = Result<T, ClientError>>) -> T {
    match within(what, STEP, future).await {
        Ok(value) => value,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// splitmix64: the kill delays, reproducible from the printed seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `lo..=hi` for test delays.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

pub(crate) fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}
