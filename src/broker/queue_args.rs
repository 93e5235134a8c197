//! Queue declare arguments: parsed into [`QueueArgs`] and validated with RabbitMQ's exact
//! 406 PRECONDITION_FAILED texts, plus the redeclare equivalence check.
//!
//! Everything here was checked against RabbitMQ 3.10.8 (see `docs/queue-arguments.md` for the
//! table and the texts). The order of the checks is RabbitMQ's, because with several bad
//! arguments the client sees only the first error:
//!
//! 1. `x-dead-letter-exchange` must be a longstr (`rabbit_channel`, before the queue code);
//! 2. `x-queue-type` (RabbitMQ resolves the queue type before validating anything else);
//! 3. the validators in `rabbit_amqqueue:declare_args/0` order ([`VALIDATION_ORDER`]), then
//!    Warren's own (`x-delivery-limit`, `x-consumer-timeout`);
//! 4. arguments RabbitMQ knows but the queue type does not support, in wire order;
//! 5. [`QueueArgs::check_flags`]: quorum queues cannot be auto-delete, exclusive or transient.
//!
//! A redeclare of an existing queue skips all of that: RabbitMQ only compares
//! ([`check_equivalence`]).

pub(crate) mod erl_term;

use std::fmt;

use bytes::Bytes;

use crate::protocol::{FieldTable, FieldValue};

use erl_term::{integer, value_term, Term};

/// The largest `x-message-ttl` / `x-expires` (and per-message `expiration`): ten years in
/// milliseconds (`?MAX_EXPIRY_TIMER`; 3.10.8 accepts 315360000000 and refuses one more).
pub const MAX_EXPIRY_MS: i64 = 315_360_000_000;

/// The largest `x-max-priority` (`?MAX_SUPPORTED_PRIORITY`).
pub const MAX_PRIORITY: i64 = 255;

/// RabbitMQ 4.0+ gives quorum queues a delivery limit of 20 when none is declared.
pub const QUORUM_DEFAULT_DELIVERY_LIMIT: u64 = 20;

/// The line length of the `~255p` RabbitMQ formats argument errors with.
const ARG_ERROR_WIDTH: usize = 255;

/// RabbitMQ's validators in `rabbit_amqqueue:declare_args/0` order (3.10.8, confirmed pairwise
/// by declaring with two bad arguments). The redeclare check compares these keys in this order.
pub const VALIDATION_ORDER: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
    // Not a classic-queue argument in 3.10.8 but compared on quorum queues there; Warren
    // offers it on every queue, so a changed limit is a changed queue.
    "x-delivery-limit",
];

/// Arguments RabbitMQ 3.10.8 knows but refuses on a classic queue ("invalid arg … of queue type
/// rabbit_classic_queue"). `x-delivery-limit` is missing on purpose: Warren supports it on every
/// queue.
const NOT_FOR_CLASSIC: &[&str] = &[
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-dead-letter-strategy",
    "x-queue-leader-locator",
    "x-quorum-initial-group-size",
    "x-initial-cluster-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
];

/// Arguments RabbitMQ 3.10.8 refuses on a quorum queue.
const NOT_FOR_QUORUM: &[&str] = &[
    "x-max-priority",
    "x-queue-mode",
    "x-queue-version",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
];

/// A queue as RabbitMQ names it in texts (`rabbit_misc:rs/1`): `queue 'q' in vhost '/'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueName {
    pub vhost: String,
    pub name: String,
}

impl QueueName {
    pub fn new(vhost: impl Into<String>, name: impl Into<String>) -> QueueName {
        QueueName {
            vhost: vhost.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue '{}' in vhost '{}'", self.name, self.vhost)
    }
}

/// `x-overflow`: what a full queue does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (dead-letter with reason `maxlen`) from the head to make room.
    #[default]
    DropHead,
    /// Refuse the new message (a nack under confirms).
    RejectPublish,
    /// Refuse it and dead-letter it.
    RejectPublishDlx,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::DropHead => "drop-head",
            Overflow::RejectPublish => "reject-publish",
            Overflow::RejectPublishDlx => "reject-publish-dlx",
        }
    }
}

/// `x-queue-type`. Warren runs both kinds as the same single-node queue; `Quorum` keeps
/// RabbitMQ's quorum-queue rules (the arguments and flags it refuses, the default delivery
/// limit) so that an application written against Warren keeps working on RabbitMQ.
/// `stream` is refused: its non-destructive, offset-based reads cannot be faked by a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }

    /// The Erlang module RabbitMQ names the type by in its texts.
    pub fn module(self) -> &'static str {
        match self {
            QueueType::Classic => "rabbit_classic_queue",
            QueueType::Quorum => "rabbit_quorum_queue",
        }
    }

    /// The type an argument table asks for; `None` for anything Warren does not run
    /// (absent means classic).
    fn of(args: &FieldTable) -> Option<QueueType> {
        match args.get("x-queue-type") {
            None => Some(QueueType::Classic),
            Some(FieldValue::LongStr(value)) => match &value[..] {
                b"classic" => Some(QueueType::Classic),
                b"quorum" => Some(QueueType::Quorum),
                _ => None,
            },
            Some(_) => None,
        }
    }
}

/// `x-queue-mode`: validated like RabbitMQ 3.10.8 and otherwise ignored (every Warren queue
/// keeps its messages in the store; 3.12+ ignores `lazy` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMode {
    Default,
    Lazy,
}

/// The declare flags the argument rules depend on. `durable` is the effective one: RabbitMQ
/// ignores the durable flag of an exclusive queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueFlags {
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
}

/// A queue's validated arguments.
///
/// Invariants (from the validation): TTLs are at most [`MAX_EXPIRY_MS`], `expires` is not 0,
/// `dead_letter_routing_key` is only set with `dead_letter_exchange`, and `arguments` is the
/// table exactly as declared (unknown `x-` arguments included), which the redeclare check
/// compares against.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueArgs {
    /// `x-message-ttl` in ms; 0 means "expire unless delivered at once".
    pub message_ttl: Option<u64>,
    /// `x-expires` in ms: delete the queue after this long unused.
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-dead-letter-exchange` as declared (a longstr: RabbitMQ accepts any bytes; a name no
    /// exchange can have just means dead-lettered messages are dropped). `""` is the default
    /// exchange.
    pub dead_letter_exchange: Option<Bytes>,
    pub dead_letter_routing_key: Option<Bytes>,
    /// `x-max-priority`; 0 is accepted (as RabbitMQ does) and means one level.
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    /// `x-delivery-limit` (Warren: every queue type). A negative value means no limit, as in
    /// RabbitMQ 4.x. See [`QueueArgs::effective_delivery_limit`] for the quorum default.
    pub delivery_limit: Option<u64>,
    /// `x-consumer-timeout` in ms.
    pub consumer_timeout: Option<u64>,
    pub queue_type: QueueType,
    pub queue_mode: Option<QueueMode>,
    /// `x-queue-version` (1 or 2): accepted and ignored.
    pub queue_version: Option<u8>,
    pub arguments: FieldTable,
}

/// `x-queue-type`: RabbitMQ resolves it before validating anything else.
fn queue_type(value: Option<&FieldValue>) -> Result<QueueType, ArgProblem> {
    match value {
        None => Ok(QueueType::Classic),
        Some(FieldValue::LongStr(value)) => match &value[..] {
            b"classic" => Ok(QueueType::Classic),
            b"quorum" => Ok(QueueType::Quorum),
            other => Err(ArgProblem::UnsupportedQueueType(Bytes::copy_from_slice(
                other,
            ))),
        },
        Some(other) => Err(ArgProblem::UnacceptableType(other.type_name())),
    }
}

impl QueueArgs {
    /// Validates a new queue's arguments in RabbitMQ's order (see the module doc).
    pub fn parse(queue: &QueueName, args: &FieldTable) -> Result<QueueArgs, QueueArgError> {
        let fail = |kind| QueueArgError {
            queue: queue.clone(),
            kind: Box::new(kind),
        };
        let invalid = |arg: &str, problem| {
            fail(QueueArgErrorKind::Invalid {
                arg: arg.to_owned(),
                problem,
            })
        };

        if let Some(value) = args.get("x-dead-letter-exchange") {
            if !matches!(value, FieldValue::LongStr(_)) {
                return Err(fail(QueueArgErrorKind::DeadLetterExchangeType(
                    value.type_name(),
                )));
            }
        }

        let queue_type =
            queue_type(args.get("x-queue-type")).map_err(|p| invalid("x-queue-type", p))?;

        let mut parsed = QueueArgs {
            queue_type,
            arguments: args.clone(),
            ..QueueArgs::default()
        };
        parsed
            .validate(args)
            .map_err(|(key, problem)| invalid(key, problem))?;

        let refused = match queue_type {
            QueueType::Classic => NOT_FOR_CLASSIC,
            QueueType::Quorum => NOT_FOR_QUORUM,
        };
        if let Some((key, _)) = args.iter().find(|(key, _)| refused.contains(&key.as_str())) {
            return Err(fail(QueueArgErrorKind::NotForQueueType {
                arg: key.to_string(),
                queue_type,
            }));
        }
        Ok(parsed)
    }

    /// Step 3 of the module doc: RabbitMQ's validators in its order, then Warren's own, each
    /// filling its field; the first argument that fails, with its problem.
    fn validate(&mut self, args: &FieldTable) -> Result<(), (&'static str, ArgProblem)> {
        let get = |key: &str| args.get(key);
        let check =
            |key: &'static str, result: Result<(), ArgProblem>| result.map_err(|p| (key, p));

        if let Some(v) = get("x-expires") {
            check("x-expires", expires(v).map(|ms| self.expires = Some(ms)))?;
        }
        if let Some(v) = get("x-message-ttl") {
            check(
                "x-message-ttl",
                expiry(v).map(|ms| self.message_ttl = Some(ms)),
            )?;
        }
        if let Some(FieldValue::LongStr(name)) = get("x-dead-letter-exchange") {
            self.dead_letter_exchange = Some(name.clone());
        }
        if let Some(v) = get("x-dead-letter-routing-key") {
            let result = match v {
                FieldValue::LongStr(key) if self.dead_letter_exchange.is_some() => {
                    self.dead_letter_routing_key = Some(key.clone());
                    Ok(())
                }
                FieldValue::LongStr(_) => Err(ArgProblem::RoutingKeyButNoDlx),
                other => Err(ArgProblem::UnacceptableType(other.type_name())),
            };
            check("x-dead-letter-routing-key", result)?;
        }
        if let Some(v) = get("x-max-length") {
            check(
                "x-max-length",
                non_negative(v).map(|n| self.max_length = Some(n)),
            )?;
        }
        if let Some(v) = get("x-max-length-bytes") {
            check(
                "x-max-length-bytes",
                non_negative(v).map(|n| self.max_length_bytes = Some(n)),
            )?;
        }
        if let Some(v) = get("x-max-priority") {
            check(
                "x-max-priority",
                max_priority(v).map(|n| self.max_priority = Some(n)),
            )?;
        }
        if let Some(v) = get("x-overflow") {
            check("x-overflow", overflow(v).map(|o| self.overflow = o))?;
        }
        if let Some(v) = get("x-queue-mode") {
            check(
                "x-queue-mode",
                queue_mode(v).map(|m| self.queue_mode = Some(m)),
            )?;
        }
        if let Some(v) = get("x-queue-version") {
            check(
                "x-queue-version",
                queue_version(v).map(|n| self.queue_version = Some(n)),
            )?;
        }
        if let Some(v) = get("x-single-active-consumer") {
            let result = match v {
                FieldValue::Bool(on) => {
                    self.single_active_consumer = *on;
                    Ok(())
                }
                other => Err(ArgProblem::UnacceptableType(other.type_name())),
            };
            check("x-single-active-consumer", result)?;
        }
        // Warren's own validators: 3.10.8 does not look at these on a classic queue (and
        // accepts anything for x-delivery-limit on a quorum queue); we use them, so a value we
        // cannot act on is refused with RabbitMQ's generic integer texts.
        if let Some(v) = get("x-delivery-limit") {
            check(
                "x-delivery-limit",
                int(v).map(|n| self.delivery_limit = u64::try_from(n).ok()),
            )?;
        }
        if let Some(v) = get("x-consumer-timeout") {
            check(
                "x-consumer-timeout",
                non_negative(v).map(|n| self.consumer_timeout = Some(n)),
            )?;
        }
        Ok(())
    }

    /// The declare flags a queue type refuses: RabbitMQ's quorum queues cannot be auto-delete,
    /// exclusive or transient (checked in that order, as 3.10.8 does).
    pub fn check_flags(&self, queue: &QueueName, flags: QueueFlags) -> Result<(), QueueArgError> {
        if self.queue_type != QueueType::Quorum {
            return Ok(());
        }
        let property = if flags.auto_delete {
            "auto-delete"
        } else if flags.exclusive {
            "exclusive-owner"
        } else if !flags.durable {
            "non-durable"
        } else {
            return Ok(());
        };
        Err(QueueArgError {
            queue: queue.clone(),
            kind: Box::new(QueueArgErrorKind::InvalidProperty(property)),
        })
    }

    /// The delivery limit in force: the declared one, else RabbitMQ 4.x's default of 20 for a
    /// quorum queue; `None` means unlimited.
    pub fn effective_delivery_limit(&self) -> Option<u64> {
        match (self.delivery_limit, self.arguments.get("x-delivery-limit")) {
            (Some(limit), _) => Some(limit),
            (None, None) if self.queue_type == QueueType::Quorum => {
                Some(QUORUM_DEFAULT_DELIVERY_LIMIT)
            }
            _ => None,
        }
    }
}

/// A server-named queue (`queue.declare` with an empty name) cannot be a quorum queue. RabbitMQ
/// checks this before generating the name, so the text names no queue.
pub fn check_server_named(args: &FieldTable) -> Result<(), ServerNamedError> {
    match QueueType::of(args) {
        Some(QueueType::Quorum) => Err(ServerNamedError(QueueType::Quorum)),
        _ => Ok(()),
    }
}

/// Compares a redeclare with the existing queue, as `rabbit_amqqueue:assert_equivalence/5`
/// does: `durable`, then `auto_delete`, then the arguments of [`VALIDATION_ORDER`] in that
/// order. Other arguments (unknown `x-` ones, `x-consumer-timeout`) are not compared.
/// The new arguments are not validated: RabbitMQ only compares on a redeclare.
pub fn check_equivalence(
    queue: &QueueName,
    current: (QueueFlags, &FieldTable),
    requested: (QueueFlags, &FieldTable),
) -> Result<(), QueueArgError> {
    let fail = |arg: &str, received, current| QueueArgError {
        queue: queue.clone(),
        kind: Box::new(QueueArgErrorKind::Inequivalent {
            arg: arg.to_owned(),
            received,
            current,
        }),
    };
    let (current_flags, current_args) = current;
    let (requested_flags, requested_args) = requested;
    for (arg, was, now) in [
        ("durable", current_flags.durable, requested_flags.durable),
        (
            "auto_delete",
            current_flags.auto_delete,
            requested_flags.auto_delete,
        ),
    ] {
        if was != now {
            return Err(fail(
                arg,
                Shown::Bare(FieldValue::Bool(now)),
                Shown::Bare(FieldValue::Bool(was)),
            ));
        }
    }
    for &key in VALIDATION_ORDER {
        // An absent x-queue-type means classic, so `{}` and `classic` are the same queue.
        if key == "x-queue-type" && QueueType::of(current_args) == QueueType::of(requested_args) {
            continue;
        }
        match (current_args.get(key), requested_args.get(key)) {
            (None, None) => {}
            // Erlang's `=:=` on the values: 10 and 10.0 differ, a longstr and a byte array
            // with the same bytes do not, and neither do a signedint and a long.
            (Some(was), Some(now)) if value_term(was) == value_term(now) => {}
            (Some(was), Some(now)) => {
                return Err(fail(
                    key,
                    Shown::Bare(now.clone()),
                    Shown::Bare(was.clone()),
                ))
            }
            (was, now) => return Err(fail(key, Shown::typed(now), Shown::typed(was))),
        }
    }
    Ok(())
}

fn int(value: &FieldValue) -> Result<i64, ArgProblem> {
    integer(value).ok_or(ArgProblem::NotAnInteger(value.type_name()))
}

fn non_negative(value: &FieldValue) -> Result<u64, ArgProblem> {
    let n = int(value)?;
    u64::try_from(n).map_err(|_| ArgProblem::Negative(n))
}

/// `rabbit_misc:check_expiry/1` on an integer argument.
fn expiry(value: &FieldValue) -> Result<u64, ArgProblem> {
    let n = int(value)?;
    if n > MAX_EXPIRY_MS {
        return Err(ArgProblem::TooLarge(n));
    }
    u64::try_from(n).map_err(|_| ArgProblem::Negative(n))
}

fn expires(value: &FieldValue) -> Result<u64, ArgProblem> {
    if int(value)? == 0 {
        return Err(ArgProblem::Zero);
    }
    expiry(value)
}

fn max_priority(value: &FieldValue) -> Result<u8, ArgProblem> {
    let n = int(value)?;
    if n < 0 {
        return Err(ArgProblem::Negative(n));
    }
    u8::try_from(n).map_err(|_| ArgProblem::MaxValueExceeded(n))
}

fn overflow(value: &FieldValue) -> Result<Overflow, ArgProblem> {
    match value {
        FieldValue::LongStr(v) => match &v[..] {
            b"drop-head" => Ok(Overflow::DropHead),
            b"reject-publish" => Ok(Overflow::RejectPublish),
            b"reject-publish-dlx" => Ok(Overflow::RejectPublishDlx),
            _ => Err(ArgProblem::InvalidOverflow),
        },
        other => Err(ArgProblem::UnacceptableType(other.type_name())),
    }
}

fn queue_mode(value: &FieldValue) -> Result<QueueMode, ArgProblem> {
    match value {
        FieldValue::LongStr(v) => match &v[..] {
            b"default" => Ok(QueueMode::Default),
            b"lazy" => Ok(QueueMode::Lazy),
            other => Err(ArgProblem::UnsupportedQueueMode(Bytes::copy_from_slice(
                other,
            ))),
        },
        other => Err(ArgProblem::UnacceptableType(other.type_name())),
    }
}

fn queue_version(value: &FieldValue) -> Result<u8, ArgProblem> {
    match non_negative(value)? {
        1 => Ok(1),
        2 => Ok(2),
        n => Err(ArgProblem::UnsupportedQueueVersion(n)),
    }
}

/// What is wrong with one argument's value: the Erlang term RabbitMQ prints after
/// "invalid arg 'x-…' for queue 'q' in vhost '/': ".
#[derive(Debug, Clone, PartialEq)]
pub enum ArgProblem {
    /// `"expected integer, got longstr"`: the type is not in the integer class.
    NotAnInteger(&'static str),
    /// `{value_negative,-1}`
    Negative(i64),
    /// `{value_zero,0}` (`x-expires` only)
    Zero,
    /// `{value_too_large,315360000001}`: above [`MAX_EXPIRY_MS`].
    TooLarge(i64),
    /// `{max_value_exceeded,256}`: `x-max-priority` above [`MAX_PRIORITY`].
    MaxValueExceeded(i64),
    /// `{unacceptable_type,signedint}`: a string or bool argument of another type.
    UnacceptableType(&'static str),
    /// `invalid_overflow`
    InvalidOverflow,
    /// `routing_key_but_no_dlx_defined`
    RoutingKeyButNoDlx,
    /// `"unsupported queue type 'foo'"` (also Warren's answer to `stream`).
    UnsupportedQueueType(Bytes),
    /// `"unsupported queue mode 'foo'"`
    UnsupportedQueueMode(Bytes),
    /// `"unsupported queue version '3'"`
    UnsupportedQueueVersion(u64),
}

impl ArgProblem {
    fn term(&self) -> Term {
        let quoted = |what: &str, value: &[u8]| {
            let mut text = format!("unsupported {what} '").into_bytes();
            text.extend_from_slice(value);
            text.push(b'\'');
            Term::str(text)
        };
        match self {
            ArgProblem::NotAnInteger(kind) => Term::str(format!("expected integer, got {kind}")),
            ArgProblem::Negative(n) => Term::tagged("value_negative", Term::int(n)),
            ArgProblem::Zero => Term::tagged("value_zero", Term::int(0)),
            ArgProblem::TooLarge(n) => Term::tagged("value_too_large", Term::int(n)),
            ArgProblem::MaxValueExceeded(n) => Term::tagged("max_value_exceeded", Term::int(n)),
            ArgProblem::UnacceptableType(kind) => {
                Term::tagged("unacceptable_type", Term::Atom(kind))
            }
            ArgProblem::InvalidOverflow => Term::Atom("invalid_overflow"),
            ArgProblem::RoutingKeyButNoDlx => Term::Atom("routing_key_but_no_dlx_defined"),
            ArgProblem::UnsupportedQueueType(v) => quoted("queue type", v),
            ArgProblem::UnsupportedQueueMode(v) => quoted("queue mode", v),
            ArgProblem::UnsupportedQueueVersion(n) => {
                Term::str(format!("unsupported queue version '{n}'"))
            }
        }
    }
}

/// How one side of an inequivalent redeclare is shown (`rabbit_misc:val/1`).
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// The argument is absent: `none`.
    Absent,
    /// The other side is absent: `the value '10' of type 'signedint'`.
    Typed(FieldValue),
    /// Both sides are present (or a flag): `'10'`, `'true'`, `'a'`; a void value is `none`.
    Bare(FieldValue),
}

impl Shown {
    fn typed(value: Option<&FieldValue>) -> Shown {
        value.map_or(Shown::Absent, |v| Shown::Typed(v.clone()))
    }

    fn write(&self, out: &mut Vec<u8>) {
        // `val/1` prints binaries with `~s` (their raw bytes) and everything else with `~p`.
        let raw = |value: &FieldValue| match value {
            FieldValue::LongStr(bytes) | FieldValue::ByteArray(bytes) => bytes.to_vec(),
            other => value_term(other).flat(),
        };
        match self {
            Shown::Absent | Shown::Bare(FieldValue::Void) => out.extend_from_slice(b"none"),
            Shown::Typed(value) => {
                out.extend_from_slice(b"the value '");
                out.extend_from_slice(&raw(value));
                out.extend_from_slice(format!("' of type '{}'", value.type_name()).as_bytes());
            }
            Shown::Bare(value) => {
                out.push(b'\'');
                out.extend_from_slice(&raw(value));
                out.push(b'\'');
            }
        }
    }
}

/// A refused queue declare: always 406 PRECONDITION_FAILED (a channel error); `Display` is
/// RabbitMQ's text, without the "PRECONDITION_FAILED - " prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueArgError {
    pub queue: QueueName,
    /// Boxed: errors are rare and `Result`s on the declare path stay small.
    pub kind: Box<QueueArgErrorKind>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueueArgErrorKind {
    /// `invalid arg 'x-…' for queue 'q' in vhost '/': <term>`
    Invalid { arg: String, problem: ArgProblem },
    /// `invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'`
    DeadLetterExchangeType(&'static str),
    /// `invalid arg 'x-max-age' for queue 'q' in vhost '/' of queue type rabbit_classic_queue`
    NotForQueueType { arg: String, queue_type: QueueType },
    /// `invalid property 'auto-delete' for queue 'q' in vhost '/'`
    InvalidProperty(&'static str),
    /// `inequivalent arg 'x-…' for queue 'q' in vhost '/': received … but current is …`
    Inequivalent {
        arg: String,
        received: Shown,
        current: Shown,
    },
}

impl QueueArgError {
    /// The text as bytes: RabbitMQ writes values' raw bytes into it.
    pub fn text_bytes(&self) -> Vec<u8> {
        let queue = &self.queue;
        match self.kind.as_ref() {
            QueueArgErrorKind::Invalid { arg, problem } => {
                let mut out = format!("invalid arg '{arg}' for {queue}: ").into_bytes();
                let column = out.len();
                out.extend_from_slice(&problem.term().pretty(column, ARG_ERROR_WIDTH));
                out
            }
            QueueArgErrorKind::DeadLetterExchangeType(kind) => {
                format!("invalid type '{kind}' for arg 'x-dead-letter-exchange' in {queue}")
                    .into_bytes()
            }
            QueueArgErrorKind::NotForQueueType { arg, queue_type } => format!(
                "invalid arg '{arg}' for {queue} of queue type {}",
                queue_type.module()
            )
            .into_bytes(),
            QueueArgErrorKind::InvalidProperty(property) => {
                format!("invalid property '{property}' for {queue}").into_bytes()
            }
            QueueArgErrorKind::Inequivalent {
                arg,
                received,
                current,
            } => {
                let mut out =
                    format!("inequivalent arg '{arg}' for {queue}: received ").into_bytes();
                received.write(&mut out);
                out.extend_from_slice(b" but current is ");
                current.write(&mut out);
                out
            }
        }
    }
}

impl fmt::Display for QueueArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.text_bytes()))
    }
}

impl std::error::Error for QueueArgError {}

/// `Cannot declare a server-named queue for type rabbit_quorum_queue` (406).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerNamedError(pub QueueType);

impl fmt::Display for ServerNamedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cannot declare a server-named queue for type {}",
            self.0.module()
        )
    }
}

impl std::error::Error for ServerNamedError {}

#[cfg(test)]
mod tests;
