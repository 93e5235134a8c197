//! Warren: an AMQP 0-9-1 message broker.
pub mod alarm;
pub mod broker;
pub mod channel;
pub mod client;
pub mod config;
pub mod error;
pub mod net;
pub mod perf;
pub mod protocol;
pub mod server;
pub mod store;
