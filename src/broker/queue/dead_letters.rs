//! Dead-lettering from a queue task: the copy is built by [`crate::broker::dead_letter`] and
//! published through [`crate::broker::publish`], like a client's message, but from the queue.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;

use super::task::Command;
use crate::broker::dead_letter::{dead_letter, DeadLetterTarget, Death, DeathReason};
use crate::broker::message::Message;
use crate::broker::persist::PublishWrites;
use crate::broker::publish::{publish, Origin};
use crate::broker::registry::Registry;
use crate::broker::settings::QueueSettings;
use crate::protocol::{FieldValue, ShortStr};

/// Dead-letters `message`, which left the queue `queue` (running by `settings`) for
/// `reason`. Without a dead-letter exchange, or when that exchange does not exist, the
/// message is dropped silently (RabbitMQ). The copy shares the body (`Bytes`), only its
/// properties are new.
pub fn dead_letter_message(
    registry: &Registry,
    queue: &str,
    settings: &QueueSettings,
    message: &Message,
    reason: DeathReason,
) {
    let Some(exchange) = &settings.dead_letter_exchange else {
        return;
    };
    let keys = death_routing_keys(message);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let death = Death {
        queue,
        reason,
        exchange: message.exchange.as_str(),
        routing_keys: &keys,
        // BCC keys are not kept after routing (they are removed from the headers).
        bcc: &[],
        now_ms,
    };
    let target = DeadLetterTarget {
        exchange,
        routing_key: settings.dead_letter_routing_key.as_deref(),
    };
    let dl = dead_letter(
        &message.properties,
        message.deaths.as_deref(),
        &death,
        &target,
    );
    let route_keys: Vec<String> = dl
        .routing_keys
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let first_key = dl
        .x_death_routing_keys
        .first()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let copy = Arc::new(Message {
        exchange: ShortStr::from(String::from_utf8_lossy(&dl.exchange).into_owned()),
        routing_key: ShortStr::from(first_key),
        properties: dl.properties,
        body: message.body.clone(),
        ttl: None,
        deaths: Some(Arc::new(dl.deaths)),
    });
    // The copy is stored like a publish (unsynced: the source's removal is committed after
    // it, so a crash loses neither or only the removal, which redelivers). A full queue that
    // refuses publishes refuses dead-lettered copies too.
    let mut writes = PublishWrites::new();
    let Ok(outcome) = publish(
        registry,
        &copy,
        &route_keys,
        Origin::DeadLetter(reason),
        &mut writes,
    ) else {
        return;
    };
    if let (Some(p), false) = (registry.persistence(), writes.is_empty()) {
        p.submit_publishes_unsynced(writes);
    }
    for (q, e) in outcome.accepted {
        // Never wait on another queue's mailbox from a queue task (two queues dead-lettering
        // into each other would deadlock): a full mailbox gets the copy from a helper task.
        match q.tx.try_send(Command::Publish(vec![e])) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(cmd)) => {
                tokio::spawn(async move {
                    let _ = q.tx.send(cmd).await;
                });
            }
        }
    }
}

/// The keys the message was published with, as `x-death` shows them: its routing key, then
/// the `CC` header's keys.
fn death_routing_keys(message: &Message) -> Vec<Bytes> {
    let mut keys = vec![Bytes::copy_from_slice(
        message.routing_key.as_str().as_bytes(),
    )];
    if let Some(FieldValue::Array(cc)) = message
        .properties
        .headers
        .as_ref()
        .and_then(|h| h.get("CC"))
    {
        for key in cc {
            if let FieldValue::LongStr(k) = key {
                keys.push(Bytes::copy_from_slice(k));
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::super::task::QueueShared;
    use super::*;
    use crate::broker::registry::QueueSpec;
    use crate::protocol::{BasicProperties, FieldTable};

    /// The dead-lettered copy must point at the very bytes of the original body: routing a
    /// message to its DLX costs new properties, never a body copy.
    #[test]
    fn the_dead_lettered_copy_shares_the_body() {
        let registry = Registry::new("/");
        let (tx, mut rx) = mpsc::channel(8);
        let spec = QueueSpec {
            name: "dlq".into(),
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        registry
            .declare_queue(&spec, 1, || {
                Ok(Arc::new(QueueShared {
                    name: "dlq".into(),
                    id: 1,
                    durable: false,
                    auto_delete: false,
                    exclusive_owner: None,
                    declared: Default::default(),
                    settings: Default::default(),
                    admission: Default::default(),
                    tx,
                    positions: Default::default(),
                }))
            })
            .unwrap();
        let settings = QueueSettings {
            dead_letter_exchange: Some(Bytes::from_static(b"")),
            dead_letter_routing_key: Some(Bytes::from_static(b"dlq")),
            ..QueueSettings::default()
        };
        let original = Message {
            exchange: "work-exchange".into(),
            routing_key: "work".into(),
            properties: BasicProperties::default(),
            body: Bytes::from(vec![7u8; 64 * 1024]),
            ttl: None,
            deaths: None,
        };
        dead_letter_message(
            &registry,
            "work",
            &settings,
            &original,
            DeathReason::Rejected,
        );

        let Ok(Command::Publish(copies)) = rx.try_recv() else {
            panic!("the DLX route should have delivered one publish to dlq");
        };
        assert_eq!(copies.len(), 1);
        let copy = &copies[0].message;
        assert_eq!(
            copy.body.as_ptr(),
            original.body.as_ptr(),
            "body was copied"
        );
        assert_eq!(copy.body.len(), original.body.len());
        assert_eq!(copy.routing_key.as_str(), "dlq");
        let headers = copy.properties.headers.as_ref().unwrap();
        assert!(matches!(headers.get("x-death"), Some(FieldValue::Array(a)) if a.len() == 1));
    }
}
