//! The composition root: build the broker, start the listener, shut down in order.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use tracing::info;

use crate::alarm::{self, Alarms, Limits};
use crate::broker::persist::Persistence;
use crate::broker::{recovery, Broker, BrokerError};
use crate::config::{Config, ConfigError};
use crate::net::{self, BindError, Context, Listener, Listening};
use crate::store::{RocksOptions, RocksStore, StoreError};

/// How long shutdown waits for the queue tasks to stop and the store to close.
const STORE_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Entry point of the broker as a library (the binary and the tests use it).
pub struct Server;

impl Server {
    /// Validates `config`, creates the data directory, builds the broker and starts accepting
    /// on every address of `config.listen` (use port 0 for an ephemeral port).
    pub async fn start(config: Config) -> Result<ServerHandle, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| ServerError::DataDir {
            path: config.data_dir.clone(),
            message: e.to_string(),
        })?;
        let store_dir = config.data_dir.join("store");
        let store =
            RocksStore::open(&store_dir, &RocksOptions::default()).map_err(ServerError::Store)?;
        let persistence = Arc::new(Persistence::new(Arc::new(store)).map_err(ServerError::Store)?);
        let broker = Broker::with_persistence(&config, Arc::clone(&persistence))
            .map_err(ServerError::Broker)?;
        let report = recovery::recover(&broker, &persistence).map_err(ServerError::Store)?;
        info!(
            path = %store_dir.display(),
            exchanges = report.exchanges,
            queues = report.queues,
            bindings = report.bindings,
            messages = report.messages,
            elapsed_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
            "store opened, definitions and messages recovered"
        );
        let server_properties = net::server_properties(&config).map_err(ServerError::Config)?;
        let listener = Listener::bind(config.listen.addrs()).map_err(ServerError::Bind)?;
        for local_addr in listener.local_addrs() {
            info!(%local_addr, version = env!("CARGO_PKG_VERSION"), "Warren listening for AMQP 0-9-1");
        }
        net::log_advertised(&server_properties);
        let alarms = start_alarms(&config);
        let broker = Arc::new(broker);
        let handles = (Arc::downgrade(&broker), Arc::downgrade(&persistence));
        drop(persistence);
        let ctx = Arc::new(Context {
            config: Arc::new(config),
            broker,
            alarms: alarms.clone(),
            server_properties,
        });
        Ok(ServerHandle {
            listening: listener.start(ctx),
            alarms,
            broker: handles.0,
            persistence: handles.1,
        })
    }
}

/// The memory and disk monitor, watching the data directory's filesystem.
fn start_alarms(config: &Config) -> Alarms {
    let limits = Limits {
        memory_high_watermark: config.vm_memory_high_watermark,
        disk_free_limit: config.disk_free_limit,
    };
    Alarms::start(&config.data_dir, limits, alarm::DEFAULT_INTERVAL)
}

/// A running server. Dropping it without `shutdown` also closes every connection with 320,
/// but nobody waits for them.
pub struct ServerHandle {
    /// The listeners (one per address of `config.listen`, never none) and their connections.
    listening: Listening,
    alarms: Alarms,
    broker: Weak<Broker>,
    /// Gone once every queue task has stopped and the store is closed (its lock released).
    persistence: Weak<Persistence>,
}

impl ServerHandle {
    /// The first listener's address (the only one unless `listen` names several). There is
    /// always one: `bind_all` fails rather than bind nothing.
    pub fn local_addr(&self) -> SocketAddr {
        self.listening.local_addrs()[0]
    }

    /// Every listener's address, in the order of `config.listen` (an IPv6 address skipped on a
    /// host without IPv6 is missing).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.listening.local_addrs()
    }

    /// The resource monitor: its thresholds can be changed while the server runs.
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// The broker, for run-time definition changes ([`Broker::apply`]); `None` once it is gone.
    /// Drop it before [`ServerHandle::shutdown`]: it keeps the store open.
    pub fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.upgrade()
    }

    /// Stops accepting, closes every connection with 320 CONNECTION_FORCED, and returns once
    /// each has finished its close handshake (or given up waiting for close-ok).
    pub async fn shutdown(self) {
        info!("shutting down");
        self.listening.shutdown().await;
        // Queue tasks stop once nothing holds their queues; the last one to go closes the
        // store (finishing the commits already submitted), which releases the data dir.
        if let Some(broker) = self.broker.upgrade() {
            for registry in broker.registries() {
                registry.forget_queues();
            }
        }
        let deadline = tokio::time::Instant::now() + STORE_CLOSE_TIMEOUT;
        while self.persistence.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if self.persistence.strong_count() > 0 {
            tracing::warn!("store still in use after shutdown; it closes when the process exits");
        }
        info!("shutdown complete");
    }
}

/// Why the server could not start.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerError {
    Config(ConfigError),
    Broker(BrokerError),
    DataDir {
        path: PathBuf,
        message: String,
    },
    /// The store cannot be opened (in use, another format version, damaged) or recovered.
    Store(StoreError),
    Bind(BindError),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Config(e) => e.fmt(f),
            ServerError::Broker(e) => write!(f, "invalid configuration: {e}"),
            ServerError::DataDir { path, message } => {
                write!(
                    f,
                    "cannot create data directory {}: {message}",
                    path.display()
                )
            }
            ServerError::Bind(e) => e.fmt(f),
            ServerError::Store(e) => write!(f, "cannot start: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}
