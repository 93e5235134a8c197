//! What the broker refuses, as a type, and the one mapping of it to protocol replies.
//!
//! Broker operations (declare, bind, delete, consume, ...) return a [`BrokerError`], not an AMQP
//! close: the channel turns it into one through `From<BrokerError> for AmqpError`, and the
//! management API (to come) into an HTTP status with [`BrokerError::http_status`]. The texts are
//! RabbitMQ's, since clients and operators match on them.

use std::fmt;

use crate::error::AmqpError;
use crate::protocol::ReplyCode;

/// A refusal by the broker. `resource` fields read like RabbitMQ's `rabbit_misc:rs/1`:
/// "queue 'q' in vhost '/'".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// The object does not exist.
    NotFound { resource: String },
    /// The request asked for an unused or empty object and it is not (`if-unused`,
    /// `if-empty`); `what` is "in use" or "not empty".
    InUse {
        resource: String,
        what: &'static str,
    },
    /// Another connection's exclusive queue.
    Locked { resource: String },
    /// A name or object only the broker may declare or delete: the default exchange, `amq.*`.
    Reserved { text: String },
    /// A redeclaration that differs from the object that exists.
    NotEquivalent { text: String },
    /// A request whose arguments the broker does not accept.
    Precondition { text: String },
    /// Refused by a rule of use: an internal exchange published to, an exclusive consume on a
    /// queue that has consumers.
    AccessRefused { text: String },
    /// The broker itself failed (a definition could not be stored).
    Internal { text: String },
}

impl BrokerError {
    pub fn not_found(kind: &str, name: &str, vhost: &str) -> BrokerError {
        BrokerError::NotFound {
            resource: resource(kind, name, vhost),
        }
    }

    pub fn precondition(text: impl Into<String>) -> BrokerError {
        BrokerError::Precondition { text: text.into() }
    }

    pub fn access_refused(text: impl Into<String>) -> BrokerError {
        BrokerError::AccessRefused { text: text.into() }
    }

    /// RabbitMQ's 403 for the default exchange.
    pub fn default_exchange() -> BrokerError {
        BrokerError::Reserved {
            text: "operation not permitted on the default exchange".into(),
        }
    }

    /// The AMQP reply code RabbitMQ closes the channel with.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            BrokerError::NotFound { .. } => ReplyCode::NOT_FOUND,
            BrokerError::Locked { .. } => ReplyCode::RESOURCE_LOCKED,
            BrokerError::Reserved { .. } | BrokerError::AccessRefused { .. } => {
                ReplyCode::ACCESS_REFUSED
            }
            BrokerError::InUse { .. }
            | BrokerError::NotEquivalent { .. }
            | BrokerError::Precondition { .. } => ReplyCode::PRECONDITION_FAILED,
            BrokerError::Internal { .. } => ReplyCode::INTERNAL_ERROR,
        }
    }

    /// The HTTP status for the same refusal through the management API (RabbitMQ's
    /// management plugin answers 404 for a missing object, 400 for a refused request body or
    /// inequivalent redeclare, 403 for reserved objects, 405 for a locked queue).
    pub fn http_status(&self) -> u16 {
        match self {
            BrokerError::NotFound { .. } => 404,
            BrokerError::Locked { .. } => 405,
            BrokerError::Reserved { .. } | BrokerError::AccessRefused { .. } => 403,
            BrokerError::InUse { .. }
            | BrokerError::NotEquivalent { .. }
            | BrokerError::Precondition { .. } => 400,
            BrokerError::Internal { .. } => 500,
        }
    }
}

/// "exchange 'x' in vhost '/'": RabbitMQ's `rabbit_misc:rs/1`.
pub fn resource(kind: &str, name: &str, vhost: &str) -> String {
    format!("{kind} '{name}' in vhost '{vhost}'")
}

/// The explanation RabbitMQ sends (without the code name, which `AmqpError` adds).
impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::NotFound { resource } => write!(f, "no {resource}"),
            BrokerError::InUse { resource, what } => write!(f, "{resource} {what}"),
            BrokerError::Locked { resource } => write!(
                f,
                "cannot obtain exclusive access to locked {resource}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
            ),
            BrokerError::Reserved { text }
            | BrokerError::NotEquivalent { text }
            | BrokerError::Precondition { text }
            | BrokerError::AccessRefused { text }
            | BrokerError::Internal { text } => f.write_str(text),
        }
    }
}

impl std::error::Error for BrokerError {}

/// The one mapping to AMQP: a channel close with RabbitMQ's code and text.
impl From<BrokerError> for AmqpError {
    fn from(e: BrokerError) -> AmqpError {
        AmqpError::new(e.reply_code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Scope;

    #[test]
    fn maps_to_rabbitmq_codes_and_texts() {
        let e = AmqpError::from(BrokerError::not_found("queue", "q", "/"));
        assert_eq!(e.code, ReplyCode::NOT_FOUND);
        assert_eq!(e.scope, Scope::Channel);
        assert_eq!(
            e.reply_text().as_str(),
            "NOT_FOUND - no queue 'q' in vhost '/'"
        );
        let e = AmqpError::from(BrokerError::InUse {
            resource: resource("exchange", "x", "v"),
            what: "in use",
        });
        assert_eq!(e.code, ReplyCode::PRECONDITION_FAILED);
        assert_eq!(e.text, "exchange 'x' in vhost 'v' in use");
        assert_eq!(
            AmqpError::from(BrokerError::default_exchange()).code,
            ReplyCode::ACCESS_REFUSED
        );
        let locked = BrokerError::Locked {
            resource: resource("queue", "q", "/"),
        };
        assert_eq!(locked.http_status(), 405);
        assert!(AmqpError::from(locked)
            .text
            .starts_with("cannot obtain exclusive access to locked queue 'q' in vhost '/'."));
    }
}
