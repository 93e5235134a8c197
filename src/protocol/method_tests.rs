//! Tests of the generated methods, reply codes and properties (the generated file holds no
//! tests of its own, so that what is checked is reviewed code).

#![allow(clippy::unwrap_used, clippy::panic)]

use bytes::{BufMut, BytesMut};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use super::generated::{
    arbitrary, method_name, BasicNack, ExchangeDeclare, Method, QueueDeclare, ReplyCode,
};
use super::MethodError;

fn encoded(method: &Method) -> bytes::Bytes {
    let mut out = BytesMut::new();
    method.encode(&mut out);
    out.freeze()
}

#[test]
fn each_method_round_trips() {
    let mut runner = TestRunner::deterministic();
    for (name, strategy) in arbitrary::methods() {
        for _ in 0..64 {
            let method = strategy.new_tree(&mut runner).unwrap().current();
            assert_eq!(method.name(), name);
            assert_eq!(
                method_name(method.class_id(), method.method_id()),
                Some(name)
            );
            let bytes = encoded(&method);
            assert_eq!(Method::decode(bytes.clone()), Ok(method.clone()), "{name}");
            for keep in 4..bytes.len() {
                let error = Method::decode(bytes.slice(..keep)).unwrap_err();
                assert_eq!(
                    (error.class_id(), error.method_id()),
                    (method.class_id(), method.method_id())
                );
            }
        }
    }
}

#[test]
fn content_methods_are_the_four_of_basic() {
    let mut runner = TestRunner::deterministic();
    let mut with_content: Vec<&str> = arbitrary::methods()
        .into_iter()
        .filter(|(_, strategy)| {
            strategy
                .new_tree(&mut runner)
                .unwrap()
                .current()
                .has_content()
        })
        .map(|(name, _)| name)
        .collect();
    with_content.sort_unstable();
    assert_eq!(
        with_content,
        [
            "basic.deliver",
            "basic.get-ok",
            "basic.publish",
            "basic.return"
        ]
    );
}

#[test]
fn rabbitmq_extension_ids() {
    assert_eq!(method_name(40, 30), Some("exchange.bind"));
    assert_eq!(method_name(40, 51), Some("exchange.unbind-ok"));
    assert_eq!(method_name(40, 41), None);
    assert_eq!(method_name(60, 120), Some("basic.nack"));
    assert_eq!(method_name(10, 60), Some("connection.blocked"));
    assert_eq!(method_name(10, 71), Some("connection.update-secret-ok"));
    assert_eq!(method_name(85, 10), Some("confirm.select"));
}

#[test]
fn bits_share_octets_and_reserved_fields_are_zero() {
    let declare = Method::from(QueueDeclare {
        queue: "q".into(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: true,
        no_wait: true,
        arguments: Default::default(),
    });
    // class, method, ticket 0, "q", one octet of bits (durable=2, auto-delete=8, no-wait=16).
    assert_eq!(
        &encoded(&declare)[..],
        b"\x00\x32\x00\x0a\x00\x00\x01q\x1a\x00\x00\x00\x00"
    );
    let nack = Method::from(BasicNack {
        delivery_tag: 9,
        multiple: false,
        requeue: true,
    });
    assert_eq!(
        &encoded(&nack)[4..],
        b"\x00\x00\x00\x00\x00\x00\x00\x09\x02"
    );
    let declare = Method::from(ExchangeDeclare {
        exchange: "x".into(),
        kind: "topic".into(),
        internal: true,
        ..Default::default()
    });
    assert_eq!(
        &encoded(&declare)[4..],
        b"\x00\x00\x01x\x05topic\x08\x00\x00\x00\x00"
    );
}

#[test]
fn reserved_fields_are_ignored_when_received() {
    let mut bytes = BytesMut::new();
    bytes.put_slice(b"\x00\x3c\x00\x28");
    bytes.put_u16(77); // a ticket some old client still sends
    bytes.put_slice(b"\x00\x01q\x03");
    let Method::BasicPublish(publish) = Method::decode(bytes.freeze()).unwrap() else {
        panic!("not a publish");
    };
    assert_eq!(publish.routing_key, "q");
    assert!(publish.mandatory && publish.immediate);
}

#[test]
fn unknown_ids_are_not_implemented() {
    let error = Method::decode(bytes::Bytes::from_static(b"\x00\x3c\x00\x29")).unwrap_err();
    assert_eq!(
        error,
        MethodError::Unknown {
            class_id: 60,
            method_id: 41
        }
    );
    assert_eq!(error.reply_code(), ReplyCode::NOT_IMPLEMENTED);
}

#[test]
fn reply_codes_and_their_class() {
    let soft = [311, 312, 313, 403, 404, 405, 406];
    let hard = [320, 402, 501, 502, 503, 504, 505, 506, 530, 540, 541];
    for code in soft {
        let reply = ReplyCode::from_code(code).unwrap();
        assert!(reply.is_soft() && !reply.is_hard(), "{code}");
        assert_eq!(reply.code(), code);
    }
    for code in hard {
        let reply = ReplyCode::from_code(code).unwrap();
        assert!(reply.is_hard() && !reply.is_soft(), "{code}");
    }
    let success = ReplyCode::from_code(200).unwrap();
    assert!(!success.is_hard() && !success.is_soft());
    assert_eq!(ReplyCode::CONNECTION_FORCED.name(), "CONNECTION_FORCED");
    assert_eq!(ReplyCode::NOT_FOUND.to_string(), "NOT_FOUND");
    assert_eq!(ReplyCode::from_code(999), None);
}
