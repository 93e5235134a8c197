//! The one place where failures become AMQP closes.
//!
//! Every layer reports a protocol-visible failure as an [`AmqpError`]; the connection turns it
//! into `channel.close` (soft codes) or `connection.close` (hard codes, per RabbitMQ's
//! `amqp-rabbitmq-0.9.1.json`: 320, 402, 501–506, 530, 540, 541).

use std::fmt;

use crate::protocol::{FrameError, Method, ReplyCode, ShortStr};

/// Whether an error closes one channel or the whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Connection,
    Channel,
}

/// A failure to report to the peer with a close method.
///
/// `text` is the explanation alone; [`AmqpError::reply_text`] prefixes the code name the way
/// RabbitMQ does ("NOT_FOUND - no queue 'q' in vhost '/'"). `class_id`/`method_id` name the
/// method that caused it, 0/0 when no method did (frame errors, login).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub scope: Scope,
    pub code: ReplyCode,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl AmqpError {
    /// An error whose scope follows its code: hard codes close the connection.
    pub fn new(code: ReplyCode, text: impl Into<String>) -> AmqpError {
        let scope = if code.is_hard() {
            Scope::Connection
        } else {
            Scope::Channel
        };
        AmqpError {
            scope,
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    /// Names the method the error is about.
    pub fn on(mut self, class_id: u16, method_id: u16) -> AmqpError {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    /// Names `method` as the one the error is about.
    pub fn on_method(self, method: &Method) -> AmqpError {
        self.on(method.class_id(), method.method_id())
    }

    /// Forces the error to close the connection (RabbitMQ does so for some soft codes, such
    /// as 403 at login).
    pub fn on_connection(mut self) -> AmqpError {
        self.scope = Scope::Connection;
        self
    }

    pub fn access_refused(text: impl Into<String>) -> AmqpError {
        AmqpError::new(ReplyCode::ACCESS_REFUSED, text)
    }

    pub fn connection_forced(text: impl Into<String>) -> AmqpError {
        AmqpError::new(ReplyCode::CONNECTION_FORCED, text)
    }

    pub fn frame_error(text: impl Into<String>) -> AmqpError {
        AmqpError::new(ReplyCode::FRAME_ERROR, text)
    }

    pub fn command_invalid(text: impl Into<String>) -> AmqpError {
        AmqpError::new(ReplyCode::COMMAND_INVALID, text)
    }

    pub fn channel_error(text: impl Into<String>) -> AmqpError {
        AmqpError::new(ReplyCode::CHANNEL_ERROR, text)
    }

    pub fn unexpected_frame(text: impl Into<String>) -> AmqpError {
        AmqpError::new(ReplyCode::UNEXPECTED_FRAME, text)
    }

    pub fn not_allowed(text: impl Into<String>) -> AmqpError {
        AmqpError::new(ReplyCode::NOT_ALLOWED, text)
    }

    pub fn not_implemented(text: impl Into<String>) -> AmqpError {
        AmqpError::new(ReplyCode::NOT_IMPLEMENTED, text)
    }

    pub fn internal_error(text: impl Into<String>) -> AmqpError {
        AmqpError::new(ReplyCode::INTERNAL_ERROR, text)
    }

    /// The reply text as sent: "CODE_NAME - explanation", cut to a shortstr's 255 bytes on a
    /// character boundary.
    pub fn reply_text(&self) -> ShortStr {
        let mut full = format!("{} - {}", self.code.name(), self.text);
        if full.len() > ShortStr::MAX_LEN {
            let mut end = ShortStr::MAX_LEN;
            while !full.is_char_boundary(end) {
                end -= 1;
            }
            full.truncate(end);
        }
        ShortStr::from(full)
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} - {}",
            self.code.code(),
            self.code.name(),
            self.text
        )
    }
}

impl std::error::Error for AmqpError {}

/// Malformed input found by the codec: always a connection error with the codec's code.
impl From<&FrameError> for AmqpError {
    fn from(error: &FrameError) -> AmqpError {
        let code = error.reply_code();
        // The codec's Display is the full reply text; keep only the explanation.
        let full = error.to_string();
        let prefix = format!("{} - ", code.name());
        let text = full.strip_prefix(&prefix).unwrap_or(&full).to_owned();
        AmqpError {
            scope: Scope::Connection,
            code,
            text,
            class_id: error.class_id(),
            method_id: error.method_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_follows_the_code() {
        assert_eq!(AmqpError::not_allowed("x").scope, Scope::Connection);
        assert_eq!(AmqpError::access_refused("x").scope, Scope::Channel);
        assert_eq!(
            AmqpError::access_refused("x").on_connection().scope,
            Scope::Connection
        );
    }

    #[test]
    fn reply_text_has_the_code_name_and_fits_a_shortstr() {
        let e = AmqpError::channel_error("expected 'channel.open'");
        assert_eq!(
            e.reply_text().as_str(),
            "CHANNEL_ERROR - expected 'channel.open'"
        );
        let long = AmqpError::not_allowed("é".repeat(300));
        let text = long.reply_text();
        assert!(text.as_str().len() <= 255);
        assert!(text.as_str().starts_with("NOT_ALLOWED - é"));
    }
}
