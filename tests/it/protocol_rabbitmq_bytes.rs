//! Decodes a conversation captured from RabbitMQ 3.10.8 (`tests/fuzz/seeds/*-session-whole`,
//! written by a Python client with its own encoder) and checks what came out, then re-encodes
//! every frame and expects the captured bytes back.

use bytes::{Bytes, BytesMut};
use warren::protocol::{FieldValue, Frame, FrameDecoder, Method};

fn frames(seed: &str) -> (Bytes, Vec<Frame>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/seeds")
        .join(seed);
    let data = std::fs::read(&path).unwrap();
    // The first two octets are the fuzz target's read-size and frame_max selectors.
    let wire = Bytes::copy_from_slice(&data[2..]);
    let mut buf = BytesMut::from(&wire[..]);
    let mut decoder = FrameDecoder::new(131_072);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        frames.push(frame);
    }
    assert!(
        buf.is_empty(),
        "{} octets left undecoded in {seed}",
        buf.len()
    );
    (wire, frames)
}

fn reencoded(frames: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out.freeze()
}

#[test]
fn server_frames_decode_to_what_rabbitmq_meant() {
    let (wire, frames) = frames("server-session-whole");
    let Frame::Method {
        channel: 0,
        method: Method::ConnectionStart(start),
    } = &frames[0]
    else {
        panic!("first frame is not connection.start: {:?}", frames[0]);
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(
        start.server_properties.get("product"),
        Some(&FieldValue::from("RabbitMQ"))
    );
    let Some(FieldValue::Table(capabilities)) = start.server_properties.get("capabilities") else {
        panic!("no capabilities table");
    };
    assert_eq!(
        capabilities.get("publisher_confirms"),
        Some(&FieldValue::Bool(true))
    );
    assert!(start.mechanisms.windows(5).any(|w| w == b"PLAIN"));

    let deliver = frames.iter().position(|f| {
        matches!(
            f,
            Frame::Method {
                method: Method::BasicDeliver(_),
                ..
            }
        )
    });
    let deliver = deliver.unwrap();
    let Frame::Header { header, .. } = &frames[deliver + 1] else {
        panic!("no content header after basic.deliver");
    };
    assert_eq!(header.body_size, 5120);
    let properties = &header.properties;
    assert_eq!(properties.content_type.as_deref(), Some("application/json"));
    assert_eq!(properties.kind.as_deref(), Some("kind"));
    assert_eq!(properties.cluster_id.as_deref(), Some("cluster"));
    let headers = properties.headers.as_ref().unwrap();
    assert_eq!(headers.get("i16"), Some(&FieldValue::I16(-300)));
    assert_eq!(headers.get("u32"), Some(&FieldValue::U32(4_000_000_000)));
    assert_eq!(headers.get("i64"), Some(&FieldValue::I64(-5)));
    assert_eq!(
        headers.get("bytes"),
        Some(&FieldValue::ByteArray(Bytes::from_static(b"\x00\x01\xff")))
    );
    assert_eq!(
        headers.get("dec"),
        Some(&FieldValue::Decimal {
            scale: 2,
            value: 12345
        })
    );
    let Some(FieldValue::Array(values)) = headers.get("arr") else {
        panic!("no array header");
    };
    assert_eq!(values.len(), 3);

    let body: Vec<u8> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Body { payload, .. } => Some(payload.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    let sent: Vec<u8> = (0..20).flat_map(|_| 0..=255u8).collect();
    assert_eq!(body, sent);

    assert_eq!(reencoded(&frames), wire);
}

#[test]
fn client_frames_reencode_byte_for_byte() {
    let (wire, frames) = frames("client-session-whole");
    assert!(frames
        .iter()
        .any(|f| matches!(f, Frame::Heartbeat { channel: 0 })));
    assert_eq!(reencoded(&frames), wire);
}

/// py-amqp 5.4 (under kombu and Celery) against RabbitMQ 3.10.8 (`*-session-py-amqp`): it writes
/// every integer outside ±2³¹ as `L`, in queue arguments, consumer arguments and headers, and
/// RabbitMQ hands the headers back unchanged. Both directions decode and re-encode byte for byte.
#[test]
fn py_amqp_upper_l_integers_decode_and_reencode_byte_for_byte() {
    let (client_wire, client) = frames("client-session-py-amqp");
    assert_eq!(reencoded(&client), client_wire);
    let (server_wire, server) = frames("server-session-py-amqp");
    assert_eq!(reencoded(&server), server_wire);

    let declared = client.iter().find_map(|f| match f {
        Frame::Method {
            method: Method::QueueDeclare(d),
            ..
        } if d.queue.as_str() == "codec-pyamqp-big-L-args" => Some(d),
        _ => None,
    });
    let arguments = &declared.unwrap().arguments;
    assert_eq!(
        arguments.get("x-message-ttl"),
        Some(&FieldValue::I64L(1 << 31))
    );
    assert_eq!(
        arguments.get("x-max-length-bytes"),
        Some(&FieldValue::I64L(4 << 30))
    );

    let headers = |frames: &[Frame]| {
        frames
            .iter()
            .find_map(|f| match f {
                Frame::Header { header, .. } => header.properties.headers.clone(),
                _ => None,
            })
            .unwrap()
    };
    let sent = headers(&client);
    assert_eq!(
        sent.get("ts_ms"),
        Some(&FieldValue::I64L(1_700_000_000_123))
    );
    assert_eq!(sent.get("neg"), Some(&FieldValue::I64L(-(1 << 40))));
    // py-amqp's bound is ±(2³¹ - 1): -2³¹ is written as `L` too.
    assert_eq!(sent.get("edge"), Some(&FieldValue::I64L(-(1 << 31))));
    assert_eq!(sent.get("small"), Some(&FieldValue::I32(5)));
    assert_eq!(headers(&server), sent);
}
