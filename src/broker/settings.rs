//! Effective settings: the rules a queue runs by, computed from its declared arguments, the
//! policy that matches it and the operator policy that matches it, with RabbitMQ's
//! precedence. The declared arguments ([`QueueArgs`]) are kept once, for the redeclare
//! equivalence check; everything that applies the rules (publishers, the queue task, the
//! consumer timeout) reads a [`QueueSettings`], which the queue task recomputes when a policy
//! changes (`Command::Reconfigure`).
//!
//! Policies do not exist yet: [`PolicyValues`] is the part of a policy definition a queue
//! reads, for the policy work to fill.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::queue::Command;
use super::queue_args::{Overflow, QueueArgs};
use super::registry::Registry;
use crate::broker::error::BrokerError;
use crate::protocol::{FieldTable, FieldValue};

/// The keys of a policy (or operator policy) definition that shape a queue or an exchange,
/// already validated. `None`: the policy does not set the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyValues {
    /// `message-ttl` in ms.
    pub message_ttl: Option<u64>,
    /// `expires` in ms.
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Option<Overflow>,
    pub dead_letter_exchange: Option<Bytes>,
    pub dead_letter_routing_key: Option<Bytes>,
    pub delivery_limit: Option<u64>,
    /// `alternate-exchange`, for exchanges.
    pub alternate_exchange: Option<Arc<str>>,
}

/// A queue's rules in force. Invariant: `dead_letter_routing_key` is only set with
/// `dead_letter_exchange` when both come from the arguments (a policy may set a routing key
/// alone, as RabbitMQ allows; it is then unused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSettings {
    /// Message TTL in ms; 0 means "expire unless delivered at once".
    pub message_ttl: Option<u64>,
    /// Delete the queue after this long unused, in ms.
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<Bytes>,
    pub dead_letter_routing_key: Option<Bytes>,
    /// From the arguments only: the queue's priority levels are fixed at declare.
    pub max_priority: Option<u8>,
    /// From the arguments only.
    pub single_active_consumer: bool,
    /// `None`: unlimited (the quorum default of 20 already applied).
    pub delivery_limit: Option<u64>,
    /// From the arguments only, in ms.
    pub consumer_timeout: Option<u64>,
}

impl QueueSettings {
    /// Whether a full queue refuses publishes (and so publishers ask its admission counter).
    pub fn refuses_when_full(&self) -> bool {
        self.overflow != Overflow::DropHead
            && (self.max_length.is_some() || self.max_length_bytes.is_some())
    }

    /// Whether the queue may keep part of its messages on disk only: priority queues and
    /// length-limited ones need every message at hand (see `queue::paging`).
    pub fn can_page(&self) -> bool {
        self.max_priority.is_none() && self.max_length.is_none() && self.max_length_bytes.is_none()
    }
}

/// The settings of a queue with these declared arguments, user policy and operator policy,
/// with RabbitMQ's precedence (`rabbit_amqqueue_process:process_args_policy/1` for classic
/// queues, `rabbit_quorum_queue` for quorum ones, `rabbit_policies:merge_policy_value/3`):
///
/// - the user policy and the operator policy are merged first: for `message-ttl`, `expires`,
///   `max-length`, `max-length-bytes` and `delivery-limit` the smaller value wins; for
///   `overflow` the operator policy's; the dead-letter keys are not operator-policy keys, so
///   an operator policy's are ignored;
/// - that merged policy value against the queue's `x-` argument: for the numeric limits above
///   the smaller wins again (`res_min`, so neither side can loosen the other); for
///   `dead-letter-exchange`, `dead-letter-routing-key` and `overflow` the argument wins
///   (`res_arg`);
/// - `x-max-priority`, `x-single-active-consumer` and `x-consumer-timeout` come from the
///   arguments only;
/// - a negative `x-delivery-limit` (unlimited) gives way to a policy's limit, and a quorum
///   queue with neither gets RabbitMQ 4.x's default of 20.
pub fn effective(
    declared: &QueueArgs,
    policy: Option<&PolicyValues>,
    operator_policy: Option<&PolicyValues>,
) -> QueueSettings {
    let merged = merge_policies(policy, operator_policy);
    let p = merged.as_ref();
    let min = |arg: Option<u64>, pol: Option<u64>| match (arg, pol) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (dead_letter_exchange, dead_letter_routing_key) = match &declared.dead_letter_exchange {
        Some(x) => (Some(x.clone()), declared.dead_letter_routing_key.clone()),
        None => (
            p.and_then(|p| p.dead_letter_exchange.clone()),
            declared
                .dead_letter_routing_key
                .clone()
                .or_else(|| p.and_then(|p| p.dead_letter_routing_key.clone())),
        ),
    };
    let overflow = if declared.arguments.get("x-overflow").is_some() {
        declared.overflow
    } else {
        p.and_then(|p| p.overflow).unwrap_or(declared.overflow)
    };
    QueueSettings {
        message_ttl: min(declared.message_ttl, p.and_then(|p| p.message_ttl)),
        expires: min(declared.expires, p.and_then(|p| p.expires)),
        max_length: min(declared.max_length, p.and_then(|p| p.max_length)),
        max_length_bytes: min(
            declared.max_length_bytes,
            p.and_then(|p| p.max_length_bytes),
        ),
        overflow,
        dead_letter_exchange,
        dead_letter_routing_key,
        max_priority: declared.max_priority,
        single_active_consumer: declared.single_active_consumer,
        delivery_limit: delivery_limit(declared, p.and_then(|p| p.delivery_limit)),
        consumer_timeout: declared.consumer_timeout,
    }
}

/// A user policy merged with an operator policy (`rabbit_policy:merge_policy_value/3`).
fn merge_policies(
    policy: Option<&PolicyValues>,
    operator: Option<&PolicyValues>,
) -> Option<PolicyValues> {
    let (policy, operator) = match (policy, operator) {
        (None, None) => return None,
        (Some(p), None) => return Some(p.clone()),
        (p, Some(o)) => (p.cloned().unwrap_or_default(), o),
    };
    let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Some(PolicyValues {
        message_ttl: min(policy.message_ttl, operator.message_ttl),
        expires: min(policy.expires, operator.expires),
        max_length: min(policy.max_length, operator.max_length),
        max_length_bytes: min(policy.max_length_bytes, operator.max_length_bytes),
        overflow: operator.overflow.or(policy.overflow),
        delivery_limit: min(policy.delivery_limit, operator.delivery_limit),
        ..policy
    })
}

/// The delivery limit in force: the smaller of the declared one and the policy's; a declared
/// negative limit (unlimited) yields to a policy's (RabbitMQ 4.x); without a policy, the
/// declared one or the quorum default ([`QueueArgs::effective_delivery_limit`]).
fn delivery_limit(declared: &QueueArgs, policy: Option<u64>) -> Option<u64> {
    match (declared.delivery_limit, policy) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (None, Some(b)) => Some(b),
        (_, None) => declared.effective_delivery_limit(),
    }
}

/// An exchange's alternate exchange: its `alternate-exchange` argument (a longstr naming an
/// exchange; a name that is not UTF-8 can name none), else the policy's. The argument wins,
/// as in `rabbit_policy:get_arg/3`, which `rabbit_exchange` routes by.
pub fn effective_alternate(
    arguments: &FieldTable,
    policy: Option<&PolicyValues>,
) -> Option<Arc<str>> {
    match arguments.get("alternate-exchange") {
        Some(FieldValue::LongStr(name)) => std::str::from_utf8(name).ok().map(Arc::from),
        _ => policy.and_then(|p| p.alternate_exchange.clone()),
    }
}

impl Registry {
    /// Recomputes the live queue `name`'s settings from its declared arguments and these
    /// policies and has its task apply them; resolves once the queue runs by them. Kept beside
    /// [`effective`] so the registry stays about names and routing.
    pub async fn reconfigure_queue(
        &self,
        name: &str,
        policy: Option<&PolicyValues>,
        operator_policy: Option<&PolicyValues>,
    ) -> Result<(), BrokerError> {
        let q = self.queue(name).ok_or_else(|| self.queue_not_found(name))?;
        let settings = Arc::new(effective(&q.declared, policy, operator_policy));
        let (reply, done) = oneshot::channel();
        q.tx.send(Command::Reconfigure { settings, reply })
            .await
            .map_err(|_| self.queue_not_found(name))?;
        done.await.map_err(|_| self.queue_not_found(name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::broker::queue_args::QueueName;

    fn declared(pairs: &[(&str, FieldValue)]) -> QueueArgs {
        let mut table = FieldTable::new();
        for (k, v) in pairs {
            table.insert(*k, v.clone());
        }
        QueueArgs::parse(&QueueName::new("/", "q"), &table).unwrap()
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::LongStr(v.to_owned().into())
    }

    #[test]
    fn without_policies_the_arguments_are_the_settings() {
        let args = declared(&[
            ("x-message-ttl", FieldValue::I32(500)),
            ("x-max-length", FieldValue::I32(3)),
            ("x-overflow", s("reject-publish")),
            ("x-dead-letter-exchange", s("dlx")),
            ("x-max-priority", FieldValue::I32(5)),
        ]);
        let e = effective(&args, None, None);
        assert_eq!(e.message_ttl, Some(500));
        assert_eq!(e.max_length, Some(3));
        assert_eq!(e.overflow, Overflow::RejectPublish);
        assert_eq!(e.dead_letter_exchange.as_deref(), Some(&b"dlx"[..]));
        assert_eq!(e.max_priority, Some(5));
        assert!(e.refuses_when_full() && !e.can_page());
        let plain = effective(&QueueArgs::default(), None, None);
        assert_eq!(plain, QueueSettings::default());
        assert!(plain.can_page() && !plain.refuses_when_full());
    }

    #[test]
    fn numeric_limits_take_the_smaller_of_argument_and_policies() {
        let args = declared(&[
            ("x-max-length", FieldValue::I32(10)),
            ("x-message-ttl", FieldValue::I32(100)),
        ]);
        let policy = PolicyValues {
            max_length: Some(20),
            message_ttl: Some(50),
            max_length_bytes: Some(1000),
            expires: Some(60_000),
            ..PolicyValues::default()
        };
        let operator = PolicyValues {
            max_length_bytes: Some(500),
            expires: Some(90_000),
            ..PolicyValues::default()
        };
        let e = effective(&args, Some(&policy), Some(&operator));
        assert_eq!(e.max_length, Some(10), "the argument is smaller");
        assert_eq!(e.message_ttl, Some(50), "the policy is smaller");
        assert_eq!(
            e.max_length_bytes,
            Some(500),
            "the operator policy is smaller"
        );
        assert_eq!(e.expires, Some(60_000));
    }

    #[test]
    fn arguments_win_for_dead_lettering_and_overflow() {
        let args = declared(&[
            ("x-dead-letter-exchange", s("from-arg")),
            ("x-overflow", s("drop-head")),
        ]);
        let policy = PolicyValues {
            dead_letter_exchange: Some(Bytes::from_static(b"from-policy")),
            dead_letter_routing_key: Some(Bytes::from_static(b"rk")),
            overflow: Some(Overflow::RejectPublish),
            ..PolicyValues::default()
        };
        let e = effective(&args, Some(&policy), None);
        assert_eq!(e.dead_letter_exchange.as_deref(), Some(&b"from-arg"[..]));
        assert_eq!(e.dead_letter_routing_key, None);
        assert_eq!(e.overflow, Overflow::DropHead);
        let e = effective(&QueueArgs::default(), Some(&policy), None);
        assert_eq!(e.dead_letter_exchange.as_deref(), Some(&b"from-policy"[..]));
        assert_eq!(e.dead_letter_routing_key.as_deref(), Some(&b"rk"[..]));
        assert_eq!(e.overflow, Overflow::RejectPublish);
    }

    #[test]
    fn the_operator_policy_decides_overflow_between_policies_and_ignores_dead_lettering() {
        let policy = PolicyValues {
            overflow: Some(Overflow::RejectPublish),
            ..PolicyValues::default()
        };
        let operator = PolicyValues {
            overflow: Some(Overflow::RejectPublishDlx),
            dead_letter_exchange: Some(Bytes::from_static(b"op")),
            ..PolicyValues::default()
        };
        let e = effective(&QueueArgs::default(), Some(&policy), Some(&operator));
        assert_eq!(e.overflow, Overflow::RejectPublishDlx);
        assert_eq!(e.dead_letter_exchange, None);
    }

    #[test]
    fn an_alternate_exchange_argument_wins_over_the_policy() {
        let policy = PolicyValues {
            alternate_exchange: Some("from-policy".into()),
            ..PolicyValues::default()
        };
        let mut args = FieldTable::new();
        assert_eq!(effective_alternate(&args, None), None);
        assert_eq!(
            effective_alternate(&args, Some(&policy)).as_deref(),
            Some("from-policy")
        );
        args.insert("alternate-exchange", s("from-arg"));
        assert_eq!(
            effective_alternate(&args, Some(&policy)).as_deref(),
            Some("from-arg")
        );
    }

    #[test]
    fn delivery_limits_follow_rabbitmq_4() {
        let quorum = declared(&[("x-queue-type", s("quorum"))]);
        assert_eq!(effective(&quorum, None, None).delivery_limit, Some(20));
        let policy = PolicyValues {
            delivery_limit: Some(5),
            ..PolicyValues::default()
        };
        assert_eq!(
            effective(&quorum, Some(&policy), None).delivery_limit,
            Some(5)
        );
        let unlimited = declared(&[
            ("x-queue-type", s("quorum")),
            ("x-delivery-limit", FieldValue::I32(-1)),
        ]);
        assert_eq!(effective(&unlimited, None, None).delivery_limit, None);
        assert_eq!(
            effective(&unlimited, Some(&policy), None).delivery_limit,
            Some(5)
        );
        let three = declared(&[("x-delivery-limit", FieldValue::I32(3))]);
        assert_eq!(
            effective(&three, Some(&policy), None).delivery_limit,
            Some(3)
        );
        assert_eq!(
            effective(&QueueArgs::default(), None, None).delivery_limit,
            None
        );
    }
}
