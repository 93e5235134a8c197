//! Warren: an AMQP 0-9-1 message broker.
pub mod client;
pub mod perf;
pub mod protocol;
