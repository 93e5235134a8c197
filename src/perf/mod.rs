//! `warren perf`: load generators that measure any AMQP 0-9-1 broker by URL, after RabbitMQ's
//! PerfTest (same flags, same latency stamp layout). They use Warren's own client
//! ([`crate::client`]), so they measure Warren and RabbitMQ with the same yardstick.

mod args;
mod histogram;
mod report;
mod throughput;

pub use args::ThroughputArgs;
pub use histogram::Histogram;
pub use report::{Interval, Latency, Mode, Summary};
pub use throughput::{run_throughput, PerfError};
