//! The one way a message enters a vhost: [`publish`] routes it (exchanges, bindings,
//! alternate exchanges, direct reply-to), offers it to each queue it reaches (each queue's
//! admission and store entry, [`QueueShared::offer`]) and says what happened. Every producer
//! of messages calls it: a channel's `basic.publish`, dead-lettering, and next the management
//! API's publish and new exchange types.
//!
//! It sends nothing to queue mailboxes: the caller does, in the way its task allows (a
//! channel holds the entries for its connection's ordered send, waiting on full mailboxes;
//! a queue task dead-lettering must never wait on another queue's mailbox and try-sends).
//! A direct reply-to consumer is sent to at once: its connection's inbox is unbounded.

use std::sync::Arc;

use super::dead_letter::{self, DeathReason};
use super::message::Message;
use super::persist::PublishWrites;
use super::queue::{self, ConnEvent, Enqueued, Outgoing, QueueRef, Refused};
use super::registry::Registry;
use crate::broker::error::BrokerError;

/// The direct reply-to pseudo-queue; a requester's `reply_to` becomes `REPLY_TO.<key>`.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Who publishes, which decides two rules RabbitMQ applies differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client's `basic.publish`: `amq.rabbitmq.reply-to.<key>` on the default exchange
    /// reaches that direct reply-to consumer, and a full `reject-publish-dlx` queue
    /// dead-letters the message it refuses.
    Client,
    /// A copy dead-lettered for `reason`: the queues its death history makes a cycle are left
    /// out, and a full queue only refuses it (as the dead-lettering in `rabbit_dead_letter`,
    /// which neither reaches direct reply-to nor dead-letters again).
    DeadLetter(DeathReason),
}

/// What one publish did.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// The queues that took the message, each with the entry for its mailbox (position and
    /// store entry taken already), in routing order.
    pub accepted: Vec<(QueueRef, Enqueued)>,
    /// The queues that refused it, and why (a `reject-publish-dlx` refusal of a client's
    /// message was dead-lettered already).
    pub refused: Vec<(QueueRef, Refused)>,
    /// A direct reply-to consumer was sent the message.
    pub replied: bool,
}

impl PublishOutcome {
    /// Whether any destination matched (a queue that refused counts: RabbitMQ returns only
    /// what no queue matched).
    pub fn routed(&self) -> bool {
        self.replied || !self.accepted.is_empty() || !self.refused.is_empty()
    }
}

/// Publishes `message` to its exchange with `keys` (the routing key first, then CC and BCC
/// already expanded). Persistent messages to durable queues get their store entries in
/// `writes` (the body once), for the caller to submit before it sends the entries. A missing
/// exchange is 404 and an internal one 403, before anything is taken.
pub fn publish(
    registry: &Registry,
    message: &Arc<Message>,
    keys: &[String],
    origin: Origin,
    writes: &mut PublishWrites,
) -> Result<PublishOutcome, BrokerError> {
    let mut outcome = PublishOutcome::default();
    if origin == Origin::Client {
        if let Some(key) = reply_key(message) {
            outcome.replied = reply(registry, key, message);
            return Ok(outcome);
        }
    }
    let mut queues = Vec::new();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    registry.route(
        message.exchange.as_str(),
        &keys,
        message.properties.headers.as_ref(),
        &mut queues,
    )?;
    if let Origin::DeadLetter(reason) = origin {
        if let Some(deaths) = message.deaths.as_deref() {
            queues.retain(|q| !dead_letter::is_cycle(reason, deaths, &q.name));
        }
    }
    if queues.is_empty() {
        return Ok(outcome);
    }
    let persistence = registry.persistence().map(|p| &**p);
    let mut stored_id = None;
    outcome.accepted.reserve_exact(queues.len());
    for q in queues {
        match q.offer(message, persistence, writes, &mut stored_id) {
            Ok(e) => outcome.accepted.push((q, e)),
            Err(why) => {
                if why == Refused::RejectPublishDlx && origin == Origin::Client {
                    let settings = q.settings();
                    queue::dead_letter_message(
                        registry,
                        &q.name,
                        &settings,
                        message,
                        DeathReason::Maxlen,
                    );
                }
                outcome.refused.push((q, why));
            }
        }
    }
    Ok(outcome)
}

/// The direct reply-to key a message is addressed to: `amq.rabbitmq.reply-to.<key>` on the
/// default exchange.
fn reply_key(message: &Message) -> Option<&str> {
    if !message.exchange.as_str().is_empty() {
        return None;
    }
    message
        .routing_key
        .as_str()
        .strip_prefix(REPLY_TO)?
        .strip_prefix('.')
}

/// Sends a reply to the direct reply-to consumer `key`; `false` when there is none (any
/// more): the reply is then unroutable.
fn reply(registry: &Registry, key: &str, message: &Arc<Message>) -> bool {
    let Some(c) = registry.reply_consumer(key) else {
        return false;
    };
    let outgoing = Outgoing {
        channel: c.channel,
        owner: c.owner,
        tag: c.tag,
        ack: None,
        message: Arc::clone(message),
        redelivered: false,
        counted: false,
    };
    c.events.send(ConnEvent::Deliver(vec![outgoing])).is_ok()
}
