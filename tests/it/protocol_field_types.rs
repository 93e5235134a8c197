//! Every field-table type code RabbitMQ reads, sent as raw bytes the way clients write them
//! (py-amqp writes every integer outside ±2³¹ as `L`), through the running server: headers come
//! back byte for byte, and integer arguments written as `L` mean what they mean to RabbitMQ
//! (3.10.8 on the same bytes: same replies, same texts).
//!
//! The frames carrying tables are built here by hand, not with Warren's encoder, so the test
//! does not lean on the codec it checks.

use crate::common::{raw_frame, start_server, Close, RawClient, WAIT};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::time::timeout;
use warren::protocol::Method;

fn short_str(out: &mut Vec<u8>, s: &str) {
    out.push(u8::try_from(s.len()).unwrap());
    out.extend_from_slice(s.as_bytes());
}

fn long_str(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
    out.extend_from_slice(b);
}

/// A field table from (key, type code + value octets) pairs.
fn table(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in entries {
        short_str(&mut body, key);
        body.extend_from_slice(value);
    }
    let mut out = Vec::new();
    long_str(&mut out, &body);
    out
}

/// `L` with the signed 64-bit value, as py-amqp's `pack('>cq', b'L', v)` writes it.
fn upper_l(v: i64) -> Vec<u8> {
    let mut out = vec![b'L'];
    out.extend_from_slice(&v.to_be_bytes());
    out
}

fn tagged(code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![code];
    out.extend_from_slice(value);
    out
}

fn text(s: &[u8]) -> Vec<u8> {
    let mut out = vec![b'S'];
    long_str(&mut out, s);
    out
}

/// One header per code RabbitMQ's `rabbit_binary_parser` reads.
fn every_code() -> Vec<(&'static str, Vec<u8>)> {
    let mut array = upper_l(1 << 33);
    array.extend_from_slice(b"B\x07u\x00\x09i\xff\xff\xff\xff");
    let mut array_value = vec![b'A'];
    long_str(&mut array_value, &array);
    let mut nested = vec![b'F'];
    nested.extend_from_slice(&table(&[("inner", upper_l(1 << 50))]));
    vec![
        ("t", b"t\x01".to_vec()),
        ("b", tagged(b'b', &(-5i8).to_be_bytes())),
        ("B", tagged(b'B', &[250])),
        ("s", tagged(b's', &(-300i16).to_be_bytes())),
        ("u", tagged(b'u', &65000u16.to_be_bytes())),
        ("I", tagged(b'I', &(-70000i32).to_be_bytes())),
        ("i", tagged(b'i', &4_000_000_000u32.to_be_bytes())),
        ("l", tagged(b'l', &(-(1i64 << 40)).to_be_bytes())),
        ("timestamp-ms", upper_l(1_700_000_000_123)),
        ("L-negative", upper_l(-(1 << 62))),
        ("L-edge", upper_l(-(1 << 31))),
        ("f", tagged(b'f', &1.5f32.to_be_bytes())),
        ("d", tagged(b'd', &(-2.25f64).to_be_bytes())),
        ("D", tagged(b'D', b"\x02\x00\x00\x30\x39")),
        ("S", text(b"text")),
        ("x", {
            let mut v = vec![b'x'];
            long_str(&mut v, b"\x00\xffbin");
            v
        }),
        ("A", array_value),
        ("T", tagged(b'T', &1_700_000_000u64.to_be_bytes())),
        ("F", nested),
        ("V", b"V".to_vec()),
    ]
}

/// A method frame from its class, method and argument octets.
fn method(channel: u16, class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(args);
    raw_frame(1, channel, &payload)
}

fn declare(queue: &str, arguments: &[u8]) -> Vec<u8> {
    let mut args = vec![0, 0];
    short_str(&mut args, queue);
    args.push(0); // passive, durable, exclusive, auto-delete, no-wait: all off
    args.extend_from_slice(arguments);
    method(1, 50, 10, &args)
}

/// The property octets of a header frame carrying only `headers` (flag bit 13).
fn headers_only(headers: &[u8]) -> Vec<u8> {
    let mut out = (1u16 << 13).to_be_bytes().to_vec();
    out.extend_from_slice(headers);
    out
}

/// basic.publish + header (with these property octets) + a two-octet body.
fn publish(exchange: &str, routing_key: &str, properties: &[u8]) -> Vec<u8> {
    let mut args = vec![0, 0];
    short_str(&mut args, exchange);
    short_str(&mut args, routing_key);
    args.push(0);
    let mut out = method(1, 60, 40, &args);
    let mut header = BytesMut::new();
    header.put_u16(60);
    header.put_u16(0);
    header.put_u64(2);
    header.put_slice(properties);
    out.extend_from_slice(&raw_frame(2, 1, &header));
    out.extend_from_slice(&raw_frame(3, 1, b"hi"));
    out
}

/// Reads one frame off the socket without decoding it: (type, payload).
async fn raw_next(c: &mut RawClient) -> (u8, Bytes) {
    let mut head = [0u8; 7];
    timeout(WAIT, c.stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let len = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    let mut rest = vec![0u8; len + 1];
    timeout(WAIT, c.stream.read_exact(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.pop(), Some(0xCE));
    (head[0], Bytes::from(rest))
}

/// basic.get with no-ack; the property octets of the message's header frame, read raw.
async fn get_properties(c: &mut RawClient, queue: &str) -> Option<Bytes> {
    let mut args = vec![0, 0];
    short_str(&mut args, queue);
    args.push(1);
    c.send_raw(&method(1, 60, 70, &args)).await;
    let (kind, payload) = raw_next(c).await;
    assert_eq!(kind, 1);
    match &payload[..4] {
        [0, 60, 0, 71] => {}
        [0, 60, 0, 72] => return None,
        other => panic!("expected basic.get-ok or get-empty, got method {other:?}"),
    }
    let (kind, header) = raw_next(c).await;
    assert_eq!(kind, 2);
    let (kind, _body) = raw_next(c).await;
    assert_eq!(kind, 3);
    Some(header.slice(12..))
}

async fn expect_declare_ok(c: &mut RawClient, queue: &str) {
    let (_, reply) = c.expect_method("queue.declare-ok").await;
    let Method::QueueDeclareOk(ok) = reply else {
        unreachable!()
    };
    assert_eq!(ok.queue.as_str(), queue);
}

fn precondition_failed(text: &str) -> Close {
    Close::new(406, &format!("PRECONDITION_FAILED - {text}"), 50, 10)
}

#[tokio::test]
async fn headers_of_every_type_come_back_byte_for_byte() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "field-types", 0).await;
    c.open_channel(1).await;
    c.send_raw(&declare("tags", &table(&[]))).await;
    expect_declare_ok(&mut c, "tags").await;

    let sent = headers_only(&table(&every_code()));
    c.send_raw(&publish("", "tags", &sent)).await;
    // Also every type in one array, where the codes are per element.
    let mut elements = Vec::new();
    for (_, value) in every_code() {
        elements.extend_from_slice(&value);
    }
    let mut array = vec![b'A'];
    long_str(&mut array, &elements);
    let sent_array = headers_only(&table(&[("all", array)]));
    c.send_raw(&publish("", "tags", &sent_array)).await;

    assert_eq!(get_properties(&mut c, "tags").await.unwrap(), sent);
    assert_eq!(get_properties(&mut c, "tags").await.unwrap(), sent_array);
    c.ping(1).await;
}

#[tokio::test]
async fn queue_arguments_written_as_upper_l_are_accepted_like_rabbitmq() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "field-types", 0).await;
    c.open_channel(1).await;
    // What py-amqp sends for {'x-message-ttl': 2**31, 'x-max-length-bytes': 4 * 2**30}.
    let big = table(&[
        ("x-message-ttl", upper_l(1 << 31)),
        ("x-max-length-bytes", upper_l(4 << 30)),
    ]);
    c.send_raw(&declare("big", &big)).await;
    expect_declare_ok(&mut c, "big").await;
    // `l` and `L` are the same `long` to RabbitMQ, so this is an equivalent redeclaration.
    let mut as_l = big.clone();
    for at in [4 + 1 + 13, 4 + 1 + 13 + 9 + 1 + 18] {
        assert_eq!(as_l[at], b'L');
        as_l[at] = b'l';
    }
    c.send_raw(&declare("big", &as_l)).await;
    expect_declare_ok(&mut c, "big").await;
    // Celery's celery_delayed_27: a TTL of 2^27 s in milliseconds.
    let delayed = table(&[("x-message-ttl", upper_l((1 << 27) * 1000))]);
    c.send_raw(&declare("celery_delayed_27", &delayed)).await;
    expect_declare_ok(&mut c, "celery_delayed_27").await;

    // The checks and texts RabbitMQ 3.10.8 gives the same `L` bytes.
    let refused: [(&str, Vec<u8>, &str); 5] = [
        (
            "big",
            table(&[("x-message-ttl", upper_l((1 << 31) + 1))]),
            "inequivalent arg 'x-message-ttl' for queue 'big' in vhost '/': \
             received '2147483649' but current is '2147483648'",
        ),
        (
            "neg",
            table(&[("x-message-ttl", upper_l(-1))]),
            "invalid arg 'x-message-ttl' for queue 'neg' in vhost '/': {value_negative,-1}",
        ),
        (
            "neg",
            table(&[("x-max-length", upper_l(-1))]),
            "invalid arg 'x-max-length' for queue 'neg' in vhost '/': {value_negative,-1}",
        ),
        (
            "zero",
            table(&[("x-expires", upper_l(0))]),
            "invalid arg 'x-expires' for queue 'zero' in vhost '/': {value_zero,0}",
        ),
        (
            "huge",
            table(&[("x-message-ttl", upper_l(1 << 40))]),
            "invalid arg 'x-message-ttl' for queue 'huge' in vhost '/': \
             {value_too_large,1099511627776}",
        ),
    ];
    for (queue, arguments, expected) in refused {
        c.send_raw(&declare(queue, &arguments)).await;
        assert_eq!(
            c.expect_channel_close(1).await,
            precondition_failed(expected)
        );
        c.open_channel(1).await;
    }
}

#[tokio::test]
async fn upper_l_in_consumer_priority_and_headers_bindings() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "field-types", 0).await;
    c.open_channel(1).await;
    c.send_raw(&declare("hq", &table(&[]))).await;
    expect_declare_ok(&mut c, "hq").await;

    // exchange.declare hx headers, then bind hq with n = 5 written as `L`.
    let mut args = vec![0, 0];
    short_str(&mut args, "hx");
    short_str(&mut args, "headers");
    args.push(0);
    args.extend_from_slice(&table(&[]));
    c.send_raw(&method(1, 40, 10, &args)).await;
    c.expect_method("exchange.declare-ok").await;
    let mut args = vec![0, 0];
    short_str(&mut args, "hq");
    short_str(&mut args, "hx");
    short_str(&mut args, "");
    args.push(0);
    args.extend_from_slice(&table(&[("x-match", text(b"all")), ("n", upper_l(5))]));
    c.send_raw(&method(1, 50, 20, &args)).await;
    c.expect_method("queue.bind-ok").await;

    // RabbitMQ compares the numbers: I 5, l 5 and B 5 match an `L` 5; L 6 does not.
    let cases = [
        (tagged(b'I', &5i32.to_be_bytes()), true),
        (tagged(b'l', &5i64.to_be_bytes()), true),
        (tagged(b'B', &[5]), true),
        (upper_l(6), false),
    ];
    for (value, routed) in cases {
        let properties = headers_only(&table(&[("n", value.clone())]));
        c.send_raw(&publish("hx", "", &properties)).await;
        c.ping(1).await;
        let got = get_properties(&mut c, "hq").await;
        assert_eq!(got.is_some(), routed, "header n = {value:?}");
    }

    // basic.consume with x-priority = 2^40 (`L`), as py-amqp writes it: accepted.
    let mut args = vec![0, 0];
    short_str(&mut args, "hq");
    short_str(&mut args, "ctag");
    args.push(0);
    args.extend_from_slice(&table(&[("x-priority", upper_l(1 << 40))]));
    c.send_raw(&method(1, 60, 20, &args)).await;
    c.expect_method("basic.consume-ok").await;
}

#[tokio::test]
async fn a_dead_lettered_upper_l_header_comes_back_as_l_like_rabbitmq() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "field-types", 0).await;
    c.open_channel(1).await;
    c.send_raw(&declare("dlq", &table(&[]))).await;
    expect_declare_ok(&mut c, "dlq").await;
    let dlx = table(&[
        ("x-dead-letter-exchange", text(b"")),
        ("x-dead-letter-routing-key", text(b"dlq")),
        ("x-message-ttl", upper_l(0)),
    ]);
    c.send_raw(&declare("src", &dlx)).await;
    expect_declare_ok(&mut c, "src").await;

    let sent = headers_only(&table(&[
        ("big", upper_l(1 << 40)),
        ("small", tagged(b'B', &[7])),
    ]));
    c.send_raw(&publish("", "src", &sent)).await;
    let mut got = None;
    for _ in 0..100 {
        got = get_properties(&mut c, "dlq").await;
        if got.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let got = got.expect("the message was not dead-lettered");
    // RabbitMQ re-encodes the headers it rewrote: `big` is `l` now, `small` stays `B`.
    let mut big_l = b"\x03bigl".to_vec();
    big_l.extend_from_slice(&(1i64 << 40).to_be_bytes());
    assert!(got.windows(big_l.len()).any(|w| w == big_l), "{got:?}");
    assert!(got.windows(8).any(|w| w == b"\x05smallB\x07"), "{got:?}");
}
