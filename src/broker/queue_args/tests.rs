//! Every text here was read from RabbitMQ 3.10.8's channel.close (reply text after
//! "PRECONDITION_FAILED - "), declaring exclusive queues with the arguments shown.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn q() -> QueueName {
    QueueName::new("/", "q")
}

fn args(pairs: Vec<(&str, FieldValue)>) -> FieldTable {
    pairs.into_iter().collect()
}

fn s(value: &str) -> FieldValue {
    FieldValue::from(value)
}

fn refused(pairs: Vec<(&str, FieldValue)>) -> String {
    match QueueArgs::parse(&q(), &args(pairs.clone())) {
        Ok(parsed) => panic!("{pairs:?} accepted as {parsed:?}"),
        Err(error) => error.to_string(),
    }
}

fn accepted(pairs: Vec<(&str, FieldValue)>) -> QueueArgs {
    QueueArgs::parse(&q(), &args(pairs)).unwrap()
}

const P: &str = "invalid arg";

#[test]
fn message_ttl_rows() {
    use FieldValue as V;
    let t = "x-message-ttl";
    assert_eq!(
        refused(vec![(t, V::I32(-1))]),
        format!("{P} 'x-message-ttl' for queue 'q' in vhost '/': {{value_negative,-1}}")
    );
    assert_eq!(accepted(vec![(t, V::I32(0))]).message_ttl, Some(0));
    assert_eq!(
        accepted(vec![(t, V::I64(315_360_000_000))]).message_ttl,
        Some(315_360_000_000)
    );
    assert_eq!(
        refused(vec![(t, V::I64(315_360_000_001))]),
        format!("{P} 'x-message-ttl' for queue 'q' in vhost '/': {{value_too_large,315360000001}}")
    );
    assert_eq!(
        refused(vec![(t, V::I64(i64::MIN))]),
        format!("{P} 'x-message-ttl' for queue 'q' in vhost '/': {{value_negative,-9223372036854775808}}")
    );
    // Every type of the integer class is accepted.
    for value in [
        V::I8(5),
        V::U8(5),
        V::I16(5),
        V::U16(5),
        V::I32(5),
        V::U32(5),
        V::I64(5),
        V::I64L(5),
    ] {
        assert_eq!(accepted(vec![(t, value)]).message_ttl, Some(5));
    }
    for (value, kind) in [
        (s("10"), "longstr"),
        (V::F64(1.5), "double"),
        (V::F32(5.0), "float"),
        (V::Bool(true), "bool"),
        (V::ByteArray(Bytes::from_static(b"x")), "binary"),
        (V::Void, "void"),
        (V::Table(FieldTable::new()), "table"),
        (V::Array(vec![]), "array"),
        (V::Timestamp(5), "timestamp"),
        (V::Decimal { scale: 2, value: 5 }, "decimal"),
    ] {
        assert_eq!(
            refused(vec![(t, value)]),
            format!(
                "{P} 'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got {kind}\""
            )
        );
    }
}

#[test]
fn expires_rows() {
    use FieldValue as V;
    let t = "x-expires";
    assert_eq!(
        refused(vec![(t, V::I32(0))]),
        format!("{P} 'x-expires' for queue 'q' in vhost '/': {{value_zero,0}}")
    );
    assert_eq!(
        refused(vec![(t, V::I32(-5))]),
        format!("{P} 'x-expires' for queue 'q' in vhost '/': {{value_negative,-5}}")
    );
    assert_eq!(accepted(vec![(t, V::I32(1))]).expires, Some(1));
    assert_eq!(
        refused(vec![(t, V::I64(315_360_000_001))]),
        format!("{P} 'x-expires' for queue 'q' in vhost '/': {{value_too_large,315360000001}}")
    );
    assert_eq!(
        refused(vec![(t, s("1"))]),
        format!("{P} 'x-expires' for queue 'q' in vhost '/': \"expected integer, got longstr\"")
    );
}

#[test]
fn length_rows() {
    use FieldValue as V;
    assert_eq!(
        refused(vec![("x-max-length", V::I32(-1))]),
        format!("{P} 'x-max-length' for queue 'q' in vhost '/': {{value_negative,-1}}")
    );
    assert_eq!(
        accepted(vec![("x-max-length", V::I32(0))]).max_length,
        Some(0)
    );
    assert_eq!(
        accepted(vec![("x-max-length", V::I64(i64::MAX))]).max_length,
        Some(i64::MAX as u64)
    );
    assert_eq!(
        refused(vec![("x-max-length", s("1"))]),
        format!("{P} 'x-max-length' for queue 'q' in vhost '/': \"expected integer, got longstr\"")
    );
    assert_eq!(
        refused(vec![("x-max-length-bytes", V::I32(-1))]),
        format!("{P} 'x-max-length-bytes' for queue 'q' in vhost '/': {{value_negative,-1}}")
    );
    assert_eq!(
        refused(vec![("x-max-length-bytes", V::Bool(true))]),
        format!(
            "{P} 'x-max-length-bytes' for queue 'q' in vhost '/': \"expected integer, got bool\""
        )
    );
    assert_eq!(
        accepted(vec![("x-max-length-bytes", V::U32(u32::MAX))]).max_length_bytes,
        Some(u64::from(u32::MAX))
    );
}

#[test]
fn overflow_rows() {
    use FieldValue as V;
    assert_eq!(
        refused(vec![("x-overflow", s("nope"))]),
        format!("{P} 'x-overflow' for queue 'q' in vhost '/': invalid_overflow")
    );
    // Case matters.
    assert_eq!(
        refused(vec![("x-overflow", s("Drop-Head"))]),
        format!("{P} 'x-overflow' for queue 'q' in vhost '/': invalid_overflow")
    );
    assert_eq!(
        refused(vec![("x-overflow", V::I32(1))]),
        format!("{P} 'x-overflow' for queue 'q' in vhost '/': {{unacceptable_type,signedint}}")
    );
    assert_eq!(
        refused(vec![(
            "x-overflow",
            V::ByteArray(Bytes::from_static(b"drop-head"))
        )]),
        format!("{P} 'x-overflow' for queue 'q' in vhost '/': {{unacceptable_type,binary}}")
    );
    assert_eq!(accepted(vec![]).overflow, Overflow::DropHead);
    for overflow in [
        Overflow::DropHead,
        Overflow::RejectPublish,
        Overflow::RejectPublishDlx,
    ] {
        assert_eq!(
            accepted(vec![("x-overflow", s(overflow.as_str()))]).overflow,
            overflow
        );
    }
}

#[test]
fn dead_letter_rows() {
    use FieldValue as V;
    assert_eq!(
        refused(vec![("x-dead-letter-exchange", V::I32(5))]),
        "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
    );
    assert_eq!(
        refused(vec![(
            "x-dead-letter-exchange",
            V::ByteArray(Bytes::from_static(b"x"))
        )]),
        "invalid type 'binary' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
    );
    assert_eq!(
        refused(vec![("x-dead-letter-exchange", V::Void)]),
        "invalid type 'void' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
    );
    // The default exchange, a missing exchange and an over-long name are all accepted.
    let parsed = accepted(vec![("x-dead-letter-exchange", s(""))]);
    assert_eq!(parsed.dead_letter_exchange, Some(Bytes::new()));
    accepted(vec![("x-dead-letter-exchange", s("nonexistent"))]);
    accepted(vec![("x-dead-letter-exchange", s(&"a".repeat(300)))]);

    assert_eq!(
        refused(vec![("x-dead-letter-routing-key", s("rk"))]),
        format!("{P} 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined")
    );
    assert_eq!(
        refused(vec![("x-dead-letter-routing-key", V::I32(5))]),
        format!("{P} 'x-dead-letter-routing-key' for queue 'q' in vhost '/': {{unacceptable_type,signedint}}")
    );
    assert_eq!(
        refused(vec![
            ("x-dead-letter-exchange", s("amq.direct")),
            ("x-dead-letter-routing-key", V::ByteArray(Bytes::from_static(b"x")))
        ]),
        format!("{P} 'x-dead-letter-routing-key' for queue 'q' in vhost '/': {{unacceptable_type,binary}}")
    );
    let parsed = accepted(vec![
        ("x-dead-letter-routing-key", s("rk")),
        ("x-dead-letter-exchange", s("")),
    ]);
    assert_eq!(
        parsed.dead_letter_routing_key,
        Some(Bytes::from_static(b"rk"))
    );
}

#[test]
fn priority_rows() {
    use FieldValue as V;
    assert_eq!(
        accepted(vec![("x-max-priority", V::I32(0))]).max_priority,
        Some(0)
    );
    assert_eq!(
        accepted(vec![("x-max-priority", V::I32(255))]).max_priority,
        Some(255)
    );
    assert_eq!(
        accepted(vec![("x-max-priority", V::U8(255))]).max_priority,
        Some(255)
    );
    assert_eq!(
        refused(vec![("x-max-priority", V::I32(256))]),
        format!("{P} 'x-max-priority' for queue 'q' in vhost '/': {{max_value_exceeded,256}}")
    );
    assert_eq!(
        refused(vec![("x-max-priority", V::I32(-1))]),
        format!("{P} 'x-max-priority' for queue 'q' in vhost '/': {{value_negative,-1}}")
    );
    assert_eq!(
        refused(vec![("x-max-priority", s("5"))]),
        format!(
            "{P} 'x-max-priority' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        )
    );
}

#[test]
fn single_active_consumer_rows() {
    use FieldValue as V;
    assert!(accepted(vec![("x-single-active-consumer", V::Bool(true))]).single_active_consumer);
    assert!(!accepted(vec![("x-single-active-consumer", V::Bool(false))]).single_active_consumer);
    for (value, kind) in [
        (V::I32(1), "signedint"),
        (s("true"), "longstr"),
        (V::Void, "void"),
    ] {
        assert_eq!(
            refused(vec![("x-single-active-consumer", value)]),
            format!("{P} 'x-single-active-consumer' for queue 'q' in vhost '/': {{unacceptable_type,{kind}}}")
        );
    }
}

#[test]
fn queue_type_mode_version_rows() {
    use FieldValue as V;
    assert_eq!(
        refused(vec![("x-queue-type", s("foo"))]),
        format!("{P} 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'foo'\"")
    );
    assert_eq!(
        refused(vec![("x-queue-type", s("Classic"))]),
        format!(
            "{P} 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'Classic'\""
        )
    );
    // Warren's decision: streams are refused with the text RabbitMQ gives an unknown type.
    assert_eq!(
        refused(vec![("x-queue-type", s("stream"))]),
        format!(
            "{P} 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'stream'\""
        )
    );
    assert_eq!(
        refused(vec![("x-queue-type", s("f\"o"))]),
        format!(
            "{P} 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'f\\\"o'\""
        )
    );
    assert_eq!(
        refused(vec![("x-queue-type", s("f€"))]),
        format!(
            "{P} 'x-queue-type' for queue 'q' in vhost '/': \
             [117,110,115,117,112,112,111,114,116,101,100,32,113,117,101,117,101,32,116,121,112,\
             101,32,39,102,226,130,172,39]"
        )
    );
    assert_eq!(
        refused(vec![("x-queue-type", V::I32(1))]),
        format!("{P} 'x-queue-type' for queue 'q' in vhost '/': {{unacceptable_type,signedint}}")
    );
    assert_eq!(
        accepted(vec![("x-queue-type", s("classic"))]).queue_type,
        QueueType::Classic
    );
    assert_eq!(
        accepted(vec![("x-queue-type", s("quorum"))]).queue_type,
        QueueType::Quorum
    );
    assert_eq!(accepted(vec![]).queue_type, QueueType::Classic);

    assert_eq!(
        accepted(vec![("x-queue-mode", s("lazy"))]).queue_mode,
        Some(QueueMode::Lazy)
    );
    assert_eq!(
        accepted(vec![("x-queue-mode", s("default"))]).queue_mode,
        Some(QueueMode::Default)
    );
    assert_eq!(
        refused(vec![("x-queue-mode", s("foo"))]),
        format!("{P} 'x-queue-mode' for queue 'q' in vhost '/': \"unsupported queue mode 'foo'\"")
    );
    assert_eq!(
        refused(vec![("x-queue-mode", V::I32(1))]),
        format!("{P} 'x-queue-mode' for queue 'q' in vhost '/': {{unacceptable_type,signedint}}")
    );

    assert_eq!(
        accepted(vec![("x-queue-version", V::I32(1))]).queue_version,
        Some(1)
    );
    assert_eq!(
        accepted(vec![("x-queue-version", V::I64(2))]).queue_version,
        Some(2)
    );
    for n in [0, 3] {
        assert_eq!(
            refused(vec![("x-queue-version", V::I32(n))]),
            format!("{P} 'x-queue-version' for queue 'q' in vhost '/': \"unsupported queue version '{n}'\"")
        );
    }
    assert_eq!(
        refused(vec![("x-queue-version", V::I32(-1))]),
        format!("{P} 'x-queue-version' for queue 'q' in vhost '/': {{value_negative,-1}}")
    );
    assert_eq!(
        refused(vec![("x-queue-version", s("2"))]),
        format!(
            "{P} 'x-queue-version' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        )
    );
}

#[test]
fn warren_delivery_limit_and_consumer_timeout() {
    use FieldValue as V;
    assert_eq!(
        accepted(vec![("x-delivery-limit", V::I32(2))]).delivery_limit,
        Some(2)
    );
    assert_eq!(
        accepted(vec![("x-delivery-limit", V::I32(0))]).delivery_limit,
        Some(0)
    );
    // Negative means unlimited (RabbitMQ 4.x's -1).
    let unlimited = accepted(vec![("x-delivery-limit", V::I32(-1))]);
    assert_eq!(unlimited.delivery_limit, None);
    assert_eq!(unlimited.effective_delivery_limit(), None);
    assert_eq!(
        refused(vec![("x-delivery-limit", s("x"))]),
        format!(
            "{P} 'x-delivery-limit' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        )
    );
    // The quorum default of RabbitMQ 4.x, and none on a classic queue.
    assert_eq!(
        accepted(vec![("x-queue-type", s("quorum"))]).effective_delivery_limit(),
        Some(20)
    );
    let quorum_unlimited = accepted(vec![
        ("x-queue-type", s("quorum")),
        ("x-delivery-limit", V::I32(-1)),
    ]);
    assert_eq!(quorum_unlimited.effective_delivery_limit(), None);
    assert_eq!(accepted(vec![]).effective_delivery_limit(), None);

    assert_eq!(
        accepted(vec![("x-consumer-timeout", V::I32(1000))]).consumer_timeout,
        Some(1000)
    );
    assert_eq!(
        refused(vec![("x-consumer-timeout", V::I32(-1))]),
        format!("{P} 'x-consumer-timeout' for queue 'q' in vhost '/': {{value_negative,-1}}")
    );
}

#[test]
fn unknown_arguments_are_kept_and_ignored() {
    let declared = args(vec![
        ("x-whatever", s("x")),
        ("x-stream-offset", FieldValue::I32(3)),
    ]);
    let parsed = QueueArgs::parse(&q(), &declared).unwrap();
    assert_eq!(parsed.arguments, declared);
    assert_eq!(
        QueueArgs {
            arguments: FieldTable::new(),
            ..parsed
        },
        QueueArgs::default()
    );
    // x-queue-master-locator is a classic-queue argument in 3.10.8.
    accepted(vec![("x-queue-master-locator", s("client-local"))]);
}

#[test]
fn arguments_other_queue_types_own() {
    use FieldValue as V;
    for key in NOT_FOR_CLASSIC {
        assert_eq!(
            refused(vec![(key, V::I32(3))]),
            format!("{P} '{key}' for queue 'q' in vhost '/' of queue type rabbit_classic_queue")
        );
    }
    // Wire order picks the one named.
    assert_eq!(
        refused(vec![
            ("x-max-age", s("1D")),
            ("x-max-in-memory-length", V::I32(-1))
        ]),
        format!("{P} 'x-max-age' for queue 'q' in vhost '/' of queue type rabbit_classic_queue")
    );
    // Validation comes first.
    assert_eq!(
        refused(vec![("x-max-age", s("1D")), ("x-expires", V::I32(0))]),
        format!("{P} 'x-expires' for queue 'q' in vhost '/': {{value_zero,0}}")
    );
    let quorum = ("x-queue-type", s("quorum"));
    assert_eq!(
        refused(vec![
            quorum.clone(),
            ("x-max-priority", V::I32(5)),
            ("x-queue-mode", s("lazy"))
        ]),
        format!(
            "{P} 'x-max-priority' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue"
        )
    );
    assert_eq!(
        refused(vec![
            quorum.clone(),
            ("x-queue-mode", s("lazy")),
            ("x-max-priority", V::I32(5))
        ]),
        format!("{P} 'x-queue-mode' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue")
    );
    assert_eq!(
        refused(vec![quorum.clone(), ("x-queue-version", V::I32(2))]),
        format!(
            "{P} 'x-queue-version' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue"
        )
    );
    // What 3.10.8 accepts on a quorum queue.
    accepted(vec![
        quorum,
        ("x-delivery-limit", V::I32(2)),
        ("x-overflow", s("reject-publish-dlx")),
        ("x-message-ttl", V::I32(5)),
        ("x-quorum-initial-group-size", V::I32(3)),
    ]);
}

/// Pairs of bad arguments, both wire orders, as measured.
#[test]
fn the_first_error_follows_rabbitmq_order() {
    use FieldValue as V;
    type Pair = (&'static str, FieldValue);
    let cases: Vec<(Pair, Pair, &str)> = vec![
        (("x-dead-letter-exchange", V::I32(5)), ("x-expires", V::I32(0)), "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"),
        (("x-queue-type", s("foo")), ("x-expires", V::I32(0)), "invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'foo'\""),
        (("x-queue-type", V::I32(1)), ("x-expires", V::I32(0)), "invalid arg 'x-queue-type' for queue 'q' in vhost '/': {unacceptable_type,signedint}"),
        (("x-queue-type", s("foo")), ("x-single-active-consumer", V::I32(1)), "invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'foo'\""),
        (("x-expires", V::I32(0)), ("x-message-ttl", V::I32(-1)), "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"),
        (("x-expires", V::I32(0)), ("x-delivery-limit", s("x")), "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"),
        (("x-message-ttl", V::I32(-1)), ("x-dead-letter-routing-key", s("a")), "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"),
        (("x-dead-letter-routing-key", s("a")), ("x-max-length", V::I32(-1)), "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"),
        (("x-max-length", V::I32(-1)), ("x-max-length-bytes", V::I32(-1)), "invalid arg 'x-max-length' for queue 'q' in vhost '/': {value_negative,-1}"),
        (("x-max-length-bytes", V::I32(-1)), ("x-max-priority", V::I32(-1)), "invalid arg 'x-max-length-bytes' for queue 'q' in vhost '/': {value_negative,-1}"),
        (("x-max-priority", V::I32(-1)), ("x-overflow", s("x")), "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {value_negative,-1}"),
        (("x-overflow", s("x")), ("x-queue-mode", s("x")), "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"),
        (("x-queue-mode", s("x")), ("x-queue-version", V::I32(3)), "invalid arg 'x-queue-mode' for queue 'q' in vhost '/': \"unsupported queue mode 'x'\""),
        (("x-queue-version", V::I32(3)), ("x-single-active-consumer", V::I32(1)), "invalid arg 'x-queue-version' for queue 'q' in vhost '/': \"unsupported queue version '3'\""),
    ];
    for (first, second, text) in cases {
        assert_eq!(refused(vec![first.clone(), second.clone()]), text);
        assert_eq!(refused(vec![second, first]), text);
    }
}

/// What py-amqp (kombu, Celery) sends for integers past ±2³¹: `L`. RabbitMQ reads it as `long`.
#[test]
fn upper_l_arguments_are_integers() {
    use FieldValue as V;
    let parsed = accepted(vec![
        ("x-message-ttl", V::I64L(1 << 31)),
        ("x-max-length-bytes", V::I64L(4 << 30)),
        ("x-expires", V::I64L(1 << 32)),
    ]);
    assert_eq!(parsed.message_ttl, Some(1 << 31));
    assert_eq!(parsed.max_length_bytes, Some(4 << 30));
    assert_eq!(
        refused(vec![("x-max-length-bytes", V::I64L(-1))]),
        format!("{P} 'x-max-length-bytes' for queue 'q' in vhost '/': {{value_negative,-1}}")
    );
    assert_eq!(
        redeclare(
            vec![("x-message-ttl", V::I64L(1 << 31))],
            vec![("x-message-ttl", V::I64((1 << 31) + 1))]
        ),
        Err(format!(
            "{I} 'x-message-ttl' for queue 'q' in vhost '/': received '2147483649' but current is '2147483648'"
        ))
    );
    assert_eq!(
        redeclare(vec![], vec![("x-max-length", V::I64L(1))]),
        Err(format!("{I} 'x-max-length' for queue 'q' in vhost '/': received the value '1' of type 'long' but current is none"))
    );
}

#[test]
fn queue_names_and_vhosts_are_quoted_raw() {
    let error = QueueArgs::parse(
        &QueueName::new("/", "qé"),
        &args(vec![("x-expires", FieldValue::I32(0))]),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid arg 'x-expires' for queue 'qé' in vhost '/': {value_zero,0}"
    );
}

/// `~255p`: a term that would end past column 253 breaks after its tag. RabbitMQ then cuts the
/// whole reply text at 255 bytes, so only the start of such a text is ever seen.
#[test]
fn very_long_queue_names_break_the_term() {
    let name = "a".repeat(200);
    let error = QueueArgs::parse(
        &QueueName::new("/", name.clone()),
        &args(vec![("x-message-ttl", FieldValue::I64(315_360_000_001))]),
    )
    .unwrap_err();
    let prefix = format!("invalid arg 'x-message-ttl' for queue '{name}' in vhost '/': ");
    assert_eq!(
        error.to_string(),
        format!(
            "{prefix}{{value_too_large,\n{}315360000001}}",
            " ".repeat(prefix.len() + 1)
        )
    );
}

#[test]
fn quorum_flags() {
    let quorum = accepted(vec![("x-queue-type", s("quorum"))]);
    let flags = |durable, exclusive, auto_delete| QueueFlags {
        durable,
        exclusive,
        auto_delete,
    };
    let text = |f| quorum.check_flags(&q(), f).unwrap_err().to_string();
    assert_eq!(
        text(flags(false, false, false)),
        "invalid property 'non-durable' for queue 'q' in vhost '/'"
    );
    assert_eq!(
        text(flags(true, false, true)),
        "invalid property 'auto-delete' for queue 'q' in vhost '/'"
    );
    assert_eq!(
        text(flags(false, true, true)),
        "invalid property 'auto-delete' for queue 'q' in vhost '/'"
    );
    assert_eq!(
        text(flags(false, true, false)),
        "invalid property 'exclusive-owner' for queue 'q' in vhost '/'"
    );
    assert!(quorum.check_flags(&q(), flags(true, false, false)).is_ok());
    assert!(accepted(vec![])
        .check_flags(&q(), flags(false, true, true))
        .is_ok());

    assert_eq!(
        check_server_named(&args(vec![("x-queue-type", s("quorum"))]))
            .unwrap_err()
            .to_string(),
        "Cannot declare a server-named queue for type rabbit_quorum_queue"
    );
    assert!(check_server_named(&args(vec![])).is_ok());
}

fn redeclare(
    current: Vec<(&str, FieldValue)>,
    requested: Vec<(&str, FieldValue)>,
) -> Result<(), String> {
    let flags = QueueFlags::default();
    check_equivalence(&q(), (flags, &args(current)), (flags, &args(requested)))
        .map_err(|e| e.to_string())
}

const I: &str = "inequivalent arg";

#[test]
fn equivalence_texts() {
    use FieldValue as V;
    let ten = || ("x-max-length", V::I32(10));
    assert_eq!(
        redeclare(vec![], vec![ten()]),
        Err(format!("{I} 'x-max-length' for queue 'q' in vhost '/': received the value '10' of type 'signedint' but current is none"))
    );
    assert_eq!(
        redeclare(vec![ten()], vec![]),
        Err(format!("{I} 'x-max-length' for queue 'q' in vhost '/': received none but current is the value '10' of type 'signedint'"))
    );
    // The same integer in another integer type is the same value.
    for other in [
        V::I64(10),
        V::I64L(10),
        V::I8(10),
        V::U8(10),
        V::Timestamp(10),
    ] {
        assert_eq!(
            redeclare(vec![ten()], vec![("x-max-length", other)]),
            Ok(())
        );
    }
    assert_eq!(
        redeclare(vec![ten()], vec![("x-max-length", V::I32(11))]),
        Err(format!(
            "{I} 'x-max-length' for queue 'q' in vhost '/': received '11' but current is '10'"
        ))
    );
    assert_eq!(
        redeclare(
            vec![("x-max-length", V::U16(10))],
            vec![("x-max-length", V::I32(11))]
        ),
        Err(format!(
            "{I} 'x-max-length' for queue 'q' in vhost '/': received '11' but current is '10'"
        ))
    );
    assert_eq!(
        redeclare(vec![ten()], vec![("x-max-length", s("10"))]),
        Err(format!(
            "{I} 'x-max-length' for queue 'q' in vhost '/': received '10' but current is '10'"
        ))
    );
    assert_eq!(
        redeclare(vec![ten()], vec![("x-max-length", V::F64(10.0))]),
        Err(format!(
            "{I} 'x-max-length' for queue 'q' in vhost '/': received '10.0' but current is '10'"
        ))
    );
    assert_eq!(
        redeclare(vec![ten()], vec![("x-max-length", V::Void)]),
        Err(format!(
            "{I} 'x-max-length' for queue 'q' in vhost '/': received none but current is '10'"
        ))
    );
    assert_eq!(
        redeclare(vec![], vec![("x-max-length", V::F64(10.5))]),
        Err(format!("{I} 'x-max-length' for queue 'q' in vhost '/': received the value '10.5' of type 'double' but current is none"))
    );
    assert_eq!(
        redeclare(vec![], vec![("x-max-length", V::Decimal { scale: 2, value: 5 })]),
        Err(format!("{I} 'x-max-length' for queue 'q' in vhost '/': received the value '{{2,5}}' of type 'decimal' but current is none"))
    );
    let table: FieldTable = [("a", 1i32)].into_iter().collect();
    assert_eq!(
        redeclare(vec![], vec![("x-max-length", V::Table(table))]),
        Err(format!("{I} 'x-max-length' for queue 'q' in vhost '/': received the value '[{{<<\"a\">>,signedint,1}}]' of type 'table' but current is none"))
    );
}

#[test]
fn equivalence_texts_dead_letter_exchange() {
    use FieldValue as V;
    let dlx = |name: &str| ("x-dead-letter-exchange", s(name));
    assert_eq!(
        redeclare(vec![dlx("a")], vec![dlx("b")]),
        Err(format!("{I} 'x-dead-letter-exchange' for queue 'q' in vhost '/': received 'b' but current is 'a'"))
    );
    assert_eq!(
        redeclare(vec![dlx("a")], vec![]),
        Err(format!("{I} 'x-dead-letter-exchange' for queue 'q' in vhost '/': received none but current is the value 'a' of type 'longstr'"))
    );
    assert_eq!(
        redeclare(
            vec![dlx("a")],
            vec![(
                "x-dead-letter-exchange",
                V::ByteArray(Bytes::from_static(b"a"))
            )]
        ),
        Ok(())
    );
    // Not validated on a redeclare: only compared.
    assert_eq!(
        redeclare(vec![], vec![("x-dead-letter-exchange", V::I32(5)), ("x-queue-type", s("foo"))]),
        Err(format!("{I} 'x-dead-letter-exchange' for queue 'q' in vhost '/': received the value '5' of type 'signedint' but current is none"))
    );
    assert_eq!(
        redeclare(vec![], vec![("x-expires", V::I32(0))]),
        Err(format!("{I} 'x-expires' for queue 'q' in vhost '/': received the value '0' of type 'signedint' but current is none"))
    );
}

#[test]
fn equivalence_texts_other_arguments() {
    use FieldValue as V;
    let sac = |on| ("x-single-active-consumer", V::Bool(on));
    assert_eq!(
        redeclare(vec![sac(true)], vec![sac(false)]),
        Err(format!("{I} 'x-single-active-consumer' for queue 'q' in vhost '/': received 'false' but current is 'true'"))
    );
    assert_eq!(
        redeclare(vec![], vec![sac(false)]),
        Err(format!("{I} 'x-single-active-consumer' for queue 'q' in vhost '/': received the value 'false' of type 'bool' but current is none"))
    );
    assert_eq!(
        redeclare(vec![("x-queue-mode", s("default"))], vec![("x-queue-mode", s("lazy"))]),
        Err(format!("{I} 'x-queue-mode' for queue 'q' in vhost '/': received 'lazy' but current is 'default'"))
    );
    assert_eq!(
        redeclare(
            vec![("x-queue-version", V::I32(1))],
            vec![("x-queue-version", V::I32(2))]
        ),
        Err(format!(
            "{I} 'x-queue-version' for queue 'q' in vhost '/': received '2' but current is '1'"
        ))
    );
    assert_eq!(
        redeclare(vec![("x-overflow", s("drop-head"))], vec![("x-overflow", s("reject-publish"))]),
        Err(format!("{I} 'x-overflow' for queue 'q' in vhost '/': received 'reject-publish' but current is 'drop-head'"))
    );
    assert_eq!(
        redeclare(
            vec![("x-delivery-limit", V::I32(5))],
            vec![("x-delivery-limit", V::I32(6))]
        ),
        Err(format!(
            "{I} 'x-delivery-limit' for queue 'q' in vhost '/': received '6' but current is '5'"
        ))
    );
    // Unknown arguments and x-consumer-timeout are not compared.
    assert_eq!(
        redeclare(
            vec![("x-whatever", V::I32(1))],
            vec![("x-whatever", V::I32(2))]
        ),
        Ok(())
    );
    assert_eq!(
        redeclare(
            vec![("x-consumer-timeout", V::I32(1))],
            vec![("x-consumer-timeout", V::I32(2))]
        ),
        Ok(())
    );
}

#[test]
fn equivalence_order_and_queue_type() {
    use FieldValue as V;
    // x-expires is compared before x-max-length, x-message-ttl before x-max-length.
    assert_eq!(
        redeclare(vec![("x-max-length", V::I32(10))], vec![("x-max-length", V::I32(11)), ("x-expires", V::I32(100))]),
        Err(format!("{I} 'x-expires' for queue 'q' in vhost '/': received the value '100' of type 'signedint' but current is none"))
    );
    assert_eq!(
        redeclare(
            vec![("x-max-length", V::I32(10)), ("x-message-ttl", V::I32(100))],
            vec![("x-max-length", V::I32(11)), ("x-message-ttl", V::I32(101))]
        ),
        Err(format!(
            "{I} 'x-message-ttl' for queue 'q' in vhost '/': received '101' but current is '100'"
        ))
    );
    let classic = || ("x-queue-type", s("classic"));
    let quorum = || ("x-queue-type", s("quorum"));
    assert_eq!(redeclare(vec![], vec![classic()]), Ok(()));
    assert_eq!(redeclare(vec![classic()], vec![]), Ok(()));
    assert_eq!(
        redeclare(vec![quorum()], vec![]),
        Err(format!("{I} 'x-queue-type' for queue 'q' in vhost '/': received none but current is the value 'quorum' of type 'longstr'"))
    );
    assert_eq!(
        redeclare(vec![quorum()], vec![classic()]),
        Err(format!("{I} 'x-queue-type' for queue 'q' in vhost '/': received 'classic' but current is 'quorum'"))
    );
    assert_eq!(
        redeclare(vec![], vec![quorum()]),
        Err(format!("{I} 'x-queue-type' for queue 'q' in vhost '/': received the value 'quorum' of type 'longstr' but current is none"))
    );
}

#[test]
fn equivalence_flags_come_first() {
    use FieldValue as V;
    let plain = QueueFlags::default();
    let none = FieldTable::new();
    let max = args(vec![("x-max-length", V::I32(1))]);
    let durable = QueueFlags {
        durable: true,
        ..plain
    };
    let auto_delete = QueueFlags {
        auto_delete: true,
        ..plain
    };
    let both = QueueFlags {
        durable: true,
        auto_delete: true,
        ..plain
    };
    let text = |current, requested, table| {
        check_equivalence(&q(), (current, &none), (requested, table))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        text(plain, both, &max),
        "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current is 'false'"
    );
    assert_eq!(
        text(plain, auto_delete, &max),
        "inequivalent arg 'auto_delete' for queue 'q' in vhost '/': received 'true' but current is 'false'"
    );
    assert_eq!(
        text(auto_delete, plain, &none),
        "inequivalent arg 'auto_delete' for queue 'q' in vhost '/': received 'false' but current is 'true'"
    );
    assert_eq!(
        text(durable, durable, &max),
        "inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received the value '1' of type 'signedint' but current is none"
    );
}

fn integer_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        any::<i64>().prop_map(FieldValue::I64L),
    ]
}

proptest! {
    /// Any integer type: accepted iff 0 ≤ n ≤ ten years, and then kept exactly.
    #[test]
    fn message_ttl_accepts_exactly_the_range(value in integer_value()) {
        let n = integer(&value).unwrap();
        let result = QueueArgs::parse(&q(), &args(vec![("x-message-ttl", value)]));
        if (0..=MAX_EXPIRY_MS).contains(&n) {
            prop_assert_eq!(result.unwrap().message_ttl, Some(n as u64));
        } else {
            prop_assert!(result.is_err());
        }
    }

    /// A queue is always equivalent to itself, and a parsed table redeclared unchanged passes.
    #[test]
    fn a_redeclare_with_the_same_arguments_is_equivalent(
        ttl in proptest::option::of(0i64..1000),
        max in proptest::option::of(integer_value()),
        dlx in proptest::option::of("[a-z]{0,5}"),
    ) {
        let mut pairs = vec![];
        if let Some(ttl) = ttl { pairs.push(("x-message-ttl", FieldValue::I64(ttl))); }
        if let Some(max) = max { pairs.push(("x-max-length", max)); }
        if let Some(dlx) = &dlx { pairs.push(("x-dead-letter-exchange", s(dlx))); }
        let table = args(pairs);
        let flags = QueueFlags::default();
        prop_assert!(check_equivalence(&q(), (flags, &table), (flags, &table)).is_ok());
    }
}
