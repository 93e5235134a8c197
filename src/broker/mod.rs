//! The broker model: vhosts, exchanges, queues, messages. It knows no sockets.

pub mod exchange;
pub mod message;
pub mod queue;
