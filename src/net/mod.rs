//! Sockets and tasks: the listener, one task per connection over any [`Transport`]
//! (handshake, heartbeats, channel table) and a writer task per connection that batches
//! frames.

mod connection;
mod handshake;
mod listener;
mod reader;
pub mod sasl;
mod transport;
mod writer;

use std::sync::Arc;

pub use connection::missed_heartbeats_message;
pub use handshake::{
    log_advertised, negotiate, server_properties, Tuned, ADVERTISED_RABBITMQ_VERSION,
};
pub use listener::{BindError, Listener, Listening};
pub use transport::Transport;

use crate::alarm::Alarms;
use crate::broker::Broker;
use crate::config::Config;
use crate::protocol::FieldTable;

/// What every connection shares.
#[derive(Debug)]
pub struct Context {
    pub config: Arc<Config>,
    pub broker: Arc<Broker>,
    /// Memory and disk alarms: publishing connections are blocked while one is in force.
    pub alarms: Alarms,
    /// What `connection.start` tells clients: built once from the config at start.
    pub server_properties: FieldTable,
}
