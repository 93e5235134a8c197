//! A published message as the broker holds it: routing facts, properties, and the body, which
//! is a `Bytes` slice of the frame it arrived in. One `Arc<Message>` is shared by every queue
//! the message was routed to, so fan-out never copies the body.

use std::sync::Arc;

use bytes::Bytes;

use crate::broker::dead_letter::Deaths;

use crate::protocol::{BasicProperties, ShortStr};

#[derive(Debug, Clone)]
pub struct Message {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub properties: BasicProperties,
    pub body: Bytes,
    /// The TTL its `expiration` property asks for, in ms (parsed, and validated, at publish).
    pub ttl: Option<u64>,
    /// The broker's record of its deaths (`None` until it is first dead-lettered), which the
    /// next `x-death` is built from; never read back from the headers.
    pub deaths: Option<Arc<Deaths>>,
}

impl Message {
    /// The body size, which length limits in bytes count.
    pub fn body_size(&self) -> u64 {
        self.body.len() as u64
    }
}
