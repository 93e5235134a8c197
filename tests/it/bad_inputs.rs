//! A table of malformed or out-of-order input, each answered with RabbitMQ's close code and
//! text, while another client on the same broker keeps working.

use crate::common::{encoded, raw_frame, start_server, Close, RawClient};
use bytes::{BufMut, BytesMut};
use warren::protocol::{
    BasicPublish, BasicQos, ChannelFlow, ChannelOpen, ConnectionCloseOk, ConnectionTuneOk,
    ContentHeader, FieldTable, FieldValue, Frame, Method, QueueDeclare,
};

/// What the server must answer.
enum Expect {
    Exact(Close),
    /// For texts that embed long octet dumps: code, text prefix, class, method.
    Prefix(u16, &'static str, u16, u16),
}

struct Case {
    name: &'static str,
    /// Open channel 1 before sending `input`.
    open_channel: bool,
    input: Vec<u8>,
    expect: Expect,
}

fn exact(code: u16, text: &str, class_id: u16, method_id: u16) -> Expect {
    Expect::Exact(Close::new(code, text, class_id, method_id))
}

fn frame(frame: Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.to_vec()
}

/// A table nested `depth` levels deep.
fn deep_table(depth: usize) -> FieldTable {
    let mut table = FieldTable::new();
    table.insert("leaf", true);
    for _ in 1..depth {
        let mut outer = FieldTable::new();
        outer.insert("t", FieldValue::Table(table));
        table = outer;
    }
    table
}

/// queue.declare with a queue name that is not UTF-8, assembled by hand since the codec's
/// types cannot hold one.
fn queue_declare_with_bad_utf8() -> Vec<u8> {
    let mut payload = BytesMut::new();
    payload.put_u16(50);
    payload.put_u16(10);
    payload.put_u16(0);
    payload.put_u8(2);
    payload.put_slice(b"\xff\xfe");
    payload.put_u8(0);
    payload.put_u32(0);
    raw_frame(1, 1, &payload)
}

fn cases() -> Vec<Case> {
    [
        frame_cases(),
        stray_frame_cases(),
        channel_state_cases(),
        argument_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Frame-level errors: bad end marker, size, type, method ids, truncation.
fn frame_cases() -> Vec<Case> {
    let heartbeat_bad_end = {
        let mut f = raw_frame(8, 0, b"");
        *f.last_mut().unwrap() = 0;
        f
    };
    let oversized = {
        let mut f = vec![1, 0, 1];
        f.extend_from_slice(&200_000u32.to_be_bytes());
        f.extend_from_slice(&[0; 64]);
        f
    };
    vec![
        Case {
            name: "wrong_frame_end",
            open_channel: false,
            input: heartbeat_bad_end,
            expect: exact(
                501,
                "FRAME_ERROR - type 8, all octets = <<>>: {invalid_frame_end_marker,0}",
                0,
                0,
            ),
        },
        Case {
            name: "frame_over_frame_max",
            open_channel: false,
            input: oversized,
            expect: exact(
                501,
                "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,200000,131064}",
                0,
                0,
            ),
        },
        Case {
            name: "unknown_frame_type",
            open_channel: false,
            input: raw_frame(9, 0, b""),
            expect: exact(
                501,
                "FRAME_ERROR - type 9, all octets = <<>>: unknown_frame",
                0,
                0,
            ),
        },
        Case {
            name: "unknown_class_and_method",
            open_channel: true,
            input: raw_frame(1, 1, &[0, 99, 0, 10]),
            expect: exact(540, "NOT_IMPLEMENTED - unknown method id {99,10}", 99, 10),
        },
        Case {
            name: "unknown_method_of_known_class",
            open_channel: true,
            input: raw_frame(1, 1, &[0, 20, 0, 99]),
            expect: exact(540, "NOT_IMPLEMENTED - unknown method id {20,99}", 20, 99),
        },
        Case {
            name: "truncated_method",
            open_channel: true,
            input: raw_frame(1, 1, &[0, 20, 0, 40, 0]),
            expect: exact(501, "FRAME_ERROR - cannot decode <<0>>", 20, 40),
        },
        Case {
            name: "method_frame_too_short_for_ids",
            open_channel: false,
            input: raw_frame(1, 0, b""),
            expect: exact(
                501,
                "FRAME_ERROR - type 1, all octets = <<>>: unknown_frame",
                0,
                0,
            ),
        },
    ]
}

/// Content and heartbeat frames where they do not belong.
fn stray_frame_cases() -> Vec<Case> {
    let header = Frame::Header {
        channel: 1,
        header: ContentHeader {
            class_id: 60,
            body_size: 3,
            properties: Default::default(),
        },
    };
    let no_method = "UNEXPECTED_FRAME - expected method frame, got non method frame instead";
    vec![
        Case {
            name: "content_header_without_method",
            open_channel: true,
            input: frame(header),
            expect: exact(505, no_method, 0, 0),
        },
        Case {
            name: "content_body_without_method",
            open_channel: true,
            input: raw_frame(3, 1, b"abc"),
            expect: exact(505, no_method, 0, 0),
        },
        Case {
            name: "heartbeat_on_channel_1",
            open_channel: true,
            input: raw_frame(8, 1, b""),
            expect: exact(505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0),
        },
        Case {
            name: "heartbeat_with_payload",
            open_channel: false,
            input: raw_frame(8, 0, b"ab"),
            expect: exact(
                501,
                "FRAME_ERROR - type 8, all octets = <<\"ab\">>: unknown_frame",
                0,
                0,
            ),
        },
    ]
}

/// Methods on the wrong channel or in the wrong state.
fn channel_state_cases() -> Vec<Case> {
    vec![
        Case {
            name: "method_on_unopened_channel",
            open_channel: false,
            input: encoded(
                1,
                &Method::BasicQos(BasicQos {
                    prefetch_size: 0,
                    prefetch_count: 10,
                    global: false,
                }),
            ),
            expect: exact(504, "CHANNEL_ERROR - expected 'channel.open'", 60, 10),
        },
        Case {
            name: "second_channel_open",
            open_channel: true,
            input: encoded(1, &Method::ChannelOpen(ChannelOpen)),
            expect: exact(504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10),
        },
        Case {
            name: "channel_method_on_channel_0",
            open_channel: false,
            input: encoded(0, &Method::ChannelOpen(ChannelOpen)),
            expect: exact(
                504,
                "CHANNEL_ERROR - unexpected method in connection state running",
                20,
                10,
            ),
        },
        Case {
            name: "connection_method_on_channel_1",
            open_channel: true,
            input: encoded(
                1,
                &Method::ConnectionTuneOk(ConnectionTuneOk {
                    channel_max: 1,
                    frame_max: 4096,
                    heartbeat: 0,
                }),
            ),
            expect: exact(503, "COMMAND_INVALID - unimplemented method", 10, 31),
        },
        Case {
            name: "unsolicited_connection_close_ok",
            open_channel: false,
            input: encoded(0, &Method::ConnectionCloseOk(ConnectionCloseOk)),
            expect: exact(
                504,
                "CHANNEL_ERROR - unexpected method in connection state running",
                10,
                51,
            ),
        },
    ]
}

/// Method arguments RabbitMQ refuses to decode or does not implement.
fn argument_cases() -> Vec<Case> {
    let mut deep_args = QueueDeclare {
        queue: "q".into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments: FieldTable::new(),
    };
    deep_args.arguments.insert("x-deep", deep_table(100));
    vec![
        Case {
            name: "table_nested_too_deep_in_method_arguments",
            open_channel: true,
            input: encoded(1, &Method::QueueDeclare(deep_args)),
            expect: Expect::Prefix(501, "FRAME_ERROR - cannot decode <<", 50, 10),
        },
        Case {
            name: "invalid_utf8_shortstr",
            open_channel: true,
            input: queue_declare_with_bad_utf8(),
            expect: exact(501, "FRAME_ERROR - Malformed UTF-8 in shortstr", 0, 0),
        },
        Case {
            name: "channel_flow_false",
            open_channel: true,
            input: encoded(1, &Method::ChannelFlow(ChannelFlow { active: false })),
            expect: exact(540, "NOT_IMPLEMENTED - active=false", 20, 20),
        },
        Case {
            name: "publish_immediate",
            open_channel: true,
            input: encoded(
                1,
                &Method::BasicPublish(BasicPublish {
                    exchange: "".into(),
                    routing_key: "q".into(),
                    mandatory: false,
                    immediate: true,
                }),
            ),
            expect: exact(540, "NOT_IMPLEMENTED - immediate=true", 60, 40),
        },
    ]
}

#[tokio::test]
async fn each_bad_input_gets_rabbitmqs_close_and_spares_other_clients() {
    let server = start_server(|_| {}).await;
    let mut witness = RawClient::open(server.addr, "bad_inputs/witness", 0).await;
    witness.open_channel(1).await;
    for case in cases() {
        let name = format!("bad_inputs/{}", case.name);
        let mut client = RawClient::open(server.addr, &name, 0).await;
        if case.open_channel {
            client.open_channel(1).await;
        }
        client.try_send_raw(&case.input).await;
        let close = client.expect_close().await;
        match case.expect {
            Expect::Exact(expected) => assert_eq!(close, expected, "case {}", case.name),
            Expect::Prefix(code, prefix, class_id, method_id) => {
                assert_eq!(
                    (close.code, close.class_id, close.method_id),
                    (code, class_id, method_id),
                    "case {}",
                    case.name
                );
                assert!(
                    close.text.starts_with(prefix),
                    "case {}: {}",
                    case.name,
                    close.text
                );
            }
        }
        witness.ping(1).await;
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_closing_connection_ignores_everything_but_close_ok() {
    let server = start_server(|_| {}).await;
    let mut client = RawClient::open(server.addr, "bad_inputs/ignore_while_closing", 0).await;
    client.send_raw(&raw_frame(8, 1, b"")).await;
    let (_, method) = client.expect_method("connection.close").await;
    let Method::ConnectionClose(close) = method else {
        unreachable!()
    };
    assert_eq!(close.reply_code, 505);
    // Still talking after the close: the server must not answer any of it.
    client
        .send_raw(&encoded(1, &Method::ChannelOpen(ChannelOpen)))
        .await;
    client.send_raw(&raw_frame(8, 0, b"")).await;
    client
        .send_raw(&encoded(0, &Method::ConnectionCloseOk(ConnectionCloseOk)))
        .await;
    client.expect_eof().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_sends_close_ok_is_cut_off() {
    let server = start_server(|_| {}).await;
    let mut client = RawClient::open(server.addr, "bad_inputs/no_close_ok", 0).await;
    client.send_raw(&raw_frame(8, 1, b"")).await;
    client.expect_method("connection.close").await;
    let since = std::time::Instant::now();
    client.expect_eof().await;
    let waited = since.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(2) && waited < std::time::Duration::from_secs(15),
        "{waited:?}"
    );
    server.handle.shutdown().await;
}
