//! Per-message TTL: the `expiration` property, parsed as RabbitMQ does
//! (`rabbit_basic:parse_expiration/1`: Erlang's `string:to_integer/1`, then
//! `rabbit_misc:check_expiry/1`), and the TTL that applies to a message in a queue.

use std::fmt;

use bytes::Bytes;

use crate::broker::queue_args::erl_term::Term;
use crate::broker::queue_args::MAX_EXPIRY_MS;

/// `~p` in `invalid expiration '~s': ~p` has the default line length.
const EXPIRATION_ERROR_WIDTH: usize = 80;

/// A refused `expiration`: 406 PRECONDITION_FAILED on the publishing channel. `Display` is
/// RabbitMQ's text: `invalid expiration '10x': {leftover_string,"x"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpirationError {
    /// The property as published.
    pub value: Bytes,
    pub problem: ExpirationProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpirationProblem {
    /// `no_integer`: it does not start with `[+-]?[0-9]` (spaces included).
    NoInteger,
    /// `{leftover_string,"x"}`: text after the digits.
    LeftoverString(Bytes),
    /// `{value_negative,-1}`; the integer in decimal (it may exceed 64 bits).
    Negative(String),
    /// `{value_too_large,315360000001}`: above ten years.
    TooLarge(String),
}

impl ExpirationError {
    pub fn text_bytes(&self) -> Vec<u8> {
        let mut out = b"invalid expiration '".to_vec();
        out.extend_from_slice(&self.value);
        out.extend_from_slice(b"': ");
        let term = match &self.problem {
            ExpirationProblem::NoInteger => Term::Atom("no_integer"),
            ExpirationProblem::LeftoverString(rest) => {
                Term::tagged("leftover_string", Term::Str(rest.clone()))
            }
            ExpirationProblem::Negative(n) => Term::tagged("value_negative", Term::int(n)),
            ExpirationProblem::TooLarge(n) => Term::tagged("value_too_large", Term::int(n)),
        };
        let column = out.len();
        out.extend_from_slice(&term.pretty(column, EXPIRATION_ERROR_WIDTH));
        out
    }
}

impl fmt::Display for ExpirationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.text_bytes()))
    }
}

impl std::error::Error for ExpirationError {}

/// The message TTL in ms an `expiration` property asks for. `"+5"`, `"007"` and `"-0"` are
/// valid (as in RabbitMQ); `" 5"`, `"5 "`, `""` and `"1.5"` are not.
pub fn parse_expiration(value: &str) -> Result<u64, ExpirationError> {
    let bytes = value.as_bytes();
    let fail = |problem| ExpirationError {
        value: Bytes::copy_from_slice(bytes),
        problem,
    };
    let (negative, unsigned) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let digits_len = unsigned.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits_len == 0 {
        return Err(fail(ExpirationProblem::NoInteger));
    }
    let (digits, rest) = unsigned.split_at(digits_len);
    if !rest.is_empty() {
        return Err(fail(ExpirationProblem::LeftoverString(
            Bytes::copy_from_slice(rest),
        )));
    }
    // Erlang integers are unbounded: keep the digits (without leading zeros) for the text.
    let significant = match digits.iter().position(|&d| d != b'0') {
        Some(start) => &digits[start..],
        None => &b"0"[..],
    };
    let text = String::from_utf8_lossy(significant).into_owned();
    let is_zero = significant == b"0";
    if negative && !is_zero {
        return Err(fail(ExpirationProblem::Negative(format!("-{text}"))));
    }
    match text.parse::<u64>() {
        Ok(ms) if ms <= MAX_EXPIRY_MS as u64 => Ok(ms),
        _ => Err(fail(ExpirationProblem::TooLarge(text))),
    }
}

/// The TTL that applies to a message in a queue: the lower of the queue's `x-message-ttl` and
/// the message's `expiration`.
pub fn effective_ttl(queue_ttl: Option<u64>, message_ttl: Option<u64>) -> Option<u64> {
    match (queue_ttl, message_ttl) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When a message enqueued at `enqueued_ms` expires under `ttl` (both in ms); requeueing keeps
/// the original expiry, so this is computed once, at enqueue.
pub fn expires_at(enqueued_ms: u64, ttl: Option<u64>) -> Option<u64> {
    ttl.map(|ttl| enqueued_ms.saturating_add(ttl))
}
