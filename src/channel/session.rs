//! What a connection's channels share: the vhost's registry, the connection's identity and
//! event inbox, limits from the configuration; and `Out`, what the channels ask the connection
//! to send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::{mpsc, oneshot};

use crate::broker::message::Message;
use crate::broker::persist::{Persistence, PublishWrites, SyncedTicket};
use crate::broker::queue::{Backlog, Command, ConnEvent, Enqueued, QueueRef};
use crate::broker::registry::Registry;
use crate::protocol::{
    encode_body, encode_header, encode_method, ContentHeader, Method, CLASS_BASIC,
};

/// The connection-wide part of channel state.
///
/// Invariant: `exclusive_queues` holds the queues this connection declared exclusive and has
/// not deleted; they are deleted when the connection ends.
#[derive(Debug)]
pub struct Session {
    /// Unique in the process; owns exclusive queues.
    pub connection: u64,
    pub registry: Arc<Registry>,
    /// The registry's store, kept here so routing can write to `store_batch` beside it.
    pub persistence: Option<Arc<Persistence>>,
    /// Where queues send this connection's deliveries.
    pub events: mpsc::UnboundedSender<ConnEvent>,
    pub max_message_size: u64,
    /// The client has the `consumer_cancel_notify` capability.
    pub cancel_notify: bool,
    pub exclusive_queues: Vec<QueueRef>,
    /// Deliveries sent to this connection by queues and not yet handled.
    pub backlog: Arc<Backlog>,
    /// The server-wide consumer timeout in ms (0: none); a queue's `x-consumer-timeout`
    /// overrides it.
    pub consumer_timeout: u64,
    /// Publishes routed but not yet sent, one batch per queue (keyed by queue id), so a burst
    /// crosses to each queue task as one command.
    held: HashMap<u64, (QueueRef, Vec<Enqueued>)>,
    held_count: usize,
    /// The store writes of the held publishes (persistent messages to durable queues),
    /// committed and synced before their confirms go out.
    pub store_batch: PublishWrites,
}

/// Most deliveries queues may have on their way to one connection.
const BACKLOG: usize = 4096;

impl Session {
    pub fn new(
        registry: Arc<Registry>,
        events: mpsc::UnboundedSender<ConnEvent>,
        max_message_size: u64,
        cancel_notify: bool,
    ) -> Session {
        static IDS: AtomicU64 = AtomicU64::new(1);
        Session {
            connection: IDS.fetch_add(1, Ordering::Relaxed),
            persistence: registry.persistence().cloned(),
            registry,
            events,
            max_message_size,
            cancel_notify,
            exclusive_queues: Vec::new(),
            backlog: Arc::new(Backlog::new(BACKLOG)),
            consumer_timeout: crate::config::DEFAULT_CONSUMER_TIMEOUT,
            held: HashMap::new(),
            held_count: 0,
            store_batch: PublishWrites::new(),
        }
    }

    /// Holds a routed message for `q` until `send_held`.
    pub fn hold_publish(&mut self, q: QueueRef, message: Enqueued) {
        self.held
            .entry(q.id)
            .or_insert_with(|| (q, Vec::new()))
            .1
            .push(message);
        self.held_count += 1;
    }

    /// How many routed messages wait for `send_held`.
    pub fn held_count(&self) -> usize {
        self.held_count
    }

    /// Sends the held publishes, one batch per queue, waiting while a mailbox is full (that
    /// wait is the flow control that slows a publisher down). A queue deleted meanwhile just
    /// loses them, as if it had been deleted a moment earlier.
    ///
    /// The store writes go to the committer first, then the messages to the queues without
    /// waiting for the disk; the returned ticket resolves once the writes are synced, and the
    /// connection writes the confirms only then. Submitting first keeps a queue's later
    /// removal of an entry behind its creation in the committer's order.
    pub async fn send_held(&mut self) -> Option<SyncedTicket> {
        self.held_count = 0;
        let ticket = match &self.persistence {
            Some(p) if !self.store_batch.is_empty() => {
                Some(p.submit_publishes(std::mem::take(&mut self.store_batch)))
            }
            _ => None,
        };
        for (_, (q, messages)) in self.held.drain() {
            let _ = q.tx.send(Command::Publish(messages)).await;
        }
        ticket
    }

    /// Deletes the connection's exclusive queues (the connection is ending).
    pub async fn delete_exclusive_queues(&mut self) {
        for q in self.exclusive_queues.drain(..) {
            let (reply, done) = oneshot::channel();
            let delete = Command::Delete {
                if_unused: false,
                if_empty: false,
                reply,
            };
            if q.tx.send(delete).await.is_ok() {
                let _ = done.await;
            }
        }
    }
}

/// Something for the connection to send on a channel.
#[derive(Debug)]
pub enum Out {
    Method(u16, Method),
    /// A content-carrying method (deliver, get-ok, return) with the message's header and body.
    Content {
        channel: u16,
        method: Method,
        message: Arc<Message>,
    },
}

impl Out {
    /// Appends the frames; bodies are split at `frame_max`.
    pub fn encode(&self, frame_max: u32, buf: &mut BytesMut) {
        match self {
            Out::Method(channel, method) => encode_method(*channel, method, buf),
            Out::Content {
                channel,
                method,
                message,
            } => {
                encode_method(*channel, method, buf);
                let header = ContentHeader {
                    class_id: CLASS_BASIC,
                    body_size: message.body_size(),
                    properties: message.properties.clone(),
                };
                encode_header(*channel, &header, buf);
                encode_body(*channel, &message.body, frame_max, buf);
            }
        }
    }
}
