//! The client against a scripted fake server on a real socket: the server side is written
//! with `crate::protocol` frame by frame, and checks what the client sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::protocol::{
    encode_body, encode_header, encode_method, BasicAck, BasicConsumeOk, BasicDeliver,
    BasicProperties, ChannelClose, ChannelCloseOk, ChannelOpenOk, ConfirmSelectOk, ConnectionClose,
    ConnectionOpenOk, ConnectionStart, ConnectionTune, ContentHeader, FieldTable, FieldValue,
    Frame, FrameDecoder, Method, QueueDeclare, PROTOCOL_HEADER,
};

const LIMIT: Duration = Duration::from_secs(5);

struct FakeServer {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FakeServer {
    async fn read_frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return frame;
            }
            let n = tokio::time::timeout(LIMIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("client too slow")
                .unwrap();
            assert!(n > 0, "client hung up");
        }
    }

    async fn read_method(&mut self) -> (u16, Method) {
        loop {
            match self.read_frame().await {
                Frame::Method { channel, method } => return (channel, method),
                Frame::Heartbeat { .. } => continue,
                other => panic!("expected a method, got {other:?}"),
            }
        }
    }

    async fn send(&mut self, channel: u16, method: impl Into<Method>) {
        let mut out = BytesMut::new();
        encode_method(channel, &method.into(), &mut out);
        self.stream.write_all(&out).await.unwrap();
    }

    /// Plays the server's side of the handshake and returns the client's start-ok.
    async fn handshake(&mut self, frame_max: u32, heartbeat: u16) -> Method {
        let mut header = [0u8; 8];
        self.stream.read_exact(&mut header).await.unwrap();
        assert_eq!(header, PROTOCOL_HEADER);
        let mut server_properties = FieldTable::new();
        server_properties.insert("product", "fake");
        self.send(
            0,
            ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties,
                mechanisms: Bytes::from_static(b"AMQPLAIN PLAIN"),
                locales: Bytes::from_static(b"en_US"),
            },
        )
        .await;
        let (_, start_ok) = self.read_method().await;
        self.send(
            0,
            ConnectionTune {
                channel_max: 16,
                frame_max,
                heartbeat,
            },
        )
        .await;
        match self.read_method().await {
            (0, Method::ConnectionTuneOk(ok)) => self.decoder.set_frame_max(ok.frame_max),
            other => panic!("expected tune-ok, got {other:?}"),
        }
        match self.read_method().await {
            (0, Method::ConnectionOpen(open)) => assert_eq!(open.virtual_host, "my/vhost"),
            other => panic!("expected open, got {other:?}"),
        }
        self.send(0, ConnectionOpenOk).await;
        start_ok
    }

    async fn open_channel(&mut self) -> u16 {
        match self.read_method().await {
            (channel, Method::ChannelOpen(_)) => {
                self.send(channel, ChannelOpenOk).await;
                channel
            }
            other => panic!("expected channel.open, got {other:?}"),
        }
    }
}

/// Starts a fake server and connects a client to it; `frame_max` and `heartbeat` are what the
/// server proposes in tune.
async fn connected(frame_max: u32, heartbeat: u16) -> (Connection, FakeServer, Method) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut server = FakeServer {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(crate::protocol::FRAME_MIN_SIZE),
        };
        let start_ok = server.handshake(frame_max, heartbeat).await;
        (server, start_ok)
    };
    let client = Connection::connect_with(ConnectionOptions {
        url: AmqpUrl::parse(&format!(
            "amqp://alice:s%40cret@127.0.0.1:{port}/my%2fvhost"
        ))
        .unwrap(),
        connection_name: Some("handshake-test".into()),
        ..ConnectionOptions::default()
    });
    let (client, (server, start_ok)) = tokio::join!(client, server);
    (client.unwrap(), server, start_ok)
}

#[tokio::test]
async fn handshake_sends_plain_capabilities_and_negotiates() {
    let (conn, _server, start_ok) = connected(4096, 30).await;
    let Method::ConnectionStartOk(start_ok) = start_ok else {
        panic!("expected start-ok, got {start_ok:?}");
    };
    assert_eq!(start_ok.mechanism, "PLAIN");
    assert_eq!(&start_ok.response[..], b"\0alice\0s@cret");
    let properties = &start_ok.client_properties;
    assert_eq!(
        properties.get("connection_name"),
        Some(&FieldValue::LongStr(Bytes::from_static(b"handshake-test")))
    );
    let Some(FieldValue::Table(capabilities)) = properties.get("capabilities") else {
        panic!("no capabilities table in {properties:?}");
    };
    for capability in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
    ] {
        assert_eq!(capabilities.get(capability), Some(&FieldValue::Bool(true)));
    }
    // The smaller of ours (2047, 131072, 60) and the server's (16, 4096, 30) wins.
    assert_eq!(
        conn.tuning(),
        Tuning {
            channel_max: 16,
            frame_max: 4096,
            heartbeat: 30
        }
    );
    assert_eq!(
        conn.server_properties().get("product"),
        Some(&FieldValue::LongStr(Bytes::from_static(b"fake")))
    );
}

#[tokio::test]
async fn heartbeat_zero_on_one_side_takes_the_other() {
    let (conn, _server, _) = connected(0, 0).await;
    assert_eq!(conn.tuning().heartbeat, 60);
    // frame_max 0 from both would be unbounded; ours (131072) applies.
    assert_eq!(conn.tuning().frame_max, 131_072);
}

#[tokio::test]
async fn publish_splits_body_at_frame_max() {
    let (conn, mut server, _) = connected(4096, 0).await;
    let (channel, open) = tokio::join!(conn.open_channel(), server.open_channel());
    let channel = channel.unwrap();
    assert_eq!(channel.id(), open);
    let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let properties = BasicProperties {
        delivery_mode: Some(2),
        ..BasicProperties::default()
    };
    let target = PublishTarget::new("ex", "rk").unwrap();
    channel
        .basic_publish(&target, &properties, &body)
        .await
        .unwrap();

    match server.read_method().await {
        (ch, Method::BasicPublish(publish)) => {
            assert_eq!(ch, open);
            assert_eq!(
                (publish.exchange.as_str(), publish.routing_key.as_str()),
                ("ex", "rk")
            );
        }
        other => panic!("expected basic.publish, got {other:?}"),
    }
    match server.read_frame().await {
        Frame::Header { channel, header } => {
            assert_eq!(channel, open);
            assert_eq!(header.class_id, 60);
            assert_eq!(header.body_size, 10_000);
            assert_eq!(header.properties.delivery_mode, Some(2));
        }
        other => panic!("expected a header, got {other:?}"),
    }
    let mut sizes = Vec::new();
    let mut received = Vec::new();
    while received.len() < body.len() {
        match server.read_frame().await {
            Frame::Body { payload, .. } => {
                sizes.push(payload.len());
                received.extend_from_slice(&payload);
            }
            other => panic!("expected a body frame, got {other:?}"),
        }
    }
    // frame_max counts the 8 octets of framing.
    assert_eq!(sizes, [4088, 4088, 1824]);
    assert_eq!(received, body);
}

#[tokio::test]
async fn server_connection_close_surfaces_as_error() {
    let (conn, mut server, _) = connected(4096, 0).await;
    server
        .send(
            0,
            ConnectionClose {
                reply_code: 320,
                reply_text: "CONNECTION_FORCED - broker forced connection closure".into(),
                class_id: 0,
                method_id: 0,
            },
        )
        .await;
    match server.read_method().await {
        (0, Method::ConnectionCloseOk(_)) => {}
        other => panic!("expected close-ok, got {other:?}"),
    }
    let error = conn
        .open_channel()
        .await
        .expect_err("the connection is closed");
    assert_eq!(error.reply_code(), Some(320));
    let ClientError::ConnectionClosed(reason) = &error else {
        panic!("expected ConnectionClosed, got {error:?}");
    };
    assert_eq!(
        reason.reply_text,
        "CONNECTION_FORCED - broker forced connection closure"
    );
    assert!(matches!(
        conn.close().await,
        Err(ClientError::ConnectionClosed(_))
    ));
}

#[tokio::test]
async fn server_close_during_handshake_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut server = FakeServer {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(4096),
        };
        let mut header = [0u8; 8];
        server.stream.read_exact(&mut header).await.unwrap();
        server
            .send(
                0,
                ConnectionStart {
                    version_major: 0,
                    version_minor: 9,
                    mechanisms: Bytes::from_static(b"PLAIN"),
                    ..ConnectionStart::default()
                },
            )
            .await;
        let _start_ok = server.read_method().await;
        server
            .send(
                0,
                ConnectionClose {
                    reply_code: 403,
                    reply_text: "ACCESS_REFUSED - Login was refused".into(),
                    class_id: 10,
                    method_id: 11,
                },
            )
            .await;
        server.read_method().await
    };
    let url = format!("amqp://bad:creds@127.0.0.1:{port}/");
    let client = Connection::connect(&url);
    let (client, close_ok) = tokio::join!(client, server);
    assert!(matches!(close_ok, (0, Method::ConnectionCloseOk(_))));
    let error = client.expect_err("login refused");
    assert_eq!(error.reply_code(), Some(403));
    assert!(error.to_string().contains("ACCESS_REFUSED"), "{error}");
}

#[tokio::test]
async fn server_channel_close_fails_the_request() {
    let (conn, mut server, _) = connected(4096, 0).await;
    let (channel, id) = tokio::join!(conn.open_channel(), server.open_channel());
    let channel = channel.unwrap();
    let declare = channel.queue_declare(QueueDeclare {
        queue: "missing".into(),
        passive: true,
        ..QueueDeclare::default()
    });
    let script = async {
        match server.read_method().await {
            (ch, Method::QueueDeclare(declare)) => {
                assert_eq!(ch, id);
                assert!(declare.passive);
            }
            other => panic!("expected queue.declare, got {other:?}"),
        }
        server
            .send(
                id,
                ChannelClose {
                    reply_code: 404,
                    reply_text: "NOT_FOUND - no queue 'missing' in vhost '/'".into(),
                    class_id: 50,
                    method_id: 10,
                },
            )
            .await;
        server.read_method().await
    };
    let (result, close_ok) = tokio::join!(declare, script);
    assert_eq!(close_ok, (id, Method::ChannelCloseOk(ChannelCloseOk)));
    let error = result.expect_err("channel closed");
    assert_eq!(error.reply_code(), Some(404));
    assert!(matches!(
        channel.error(),
        Some(ClientError::ChannelClosed(_))
    ));
    // The connection is fine: a new channel opens.
    let (again, _) = tokio::join!(conn.open_channel(), server.open_channel());
    assert!(again.is_ok());
}

#[tokio::test]
async fn deliveries_are_assembled() {
    let (conn, mut server, _) = connected(4096, 0).await;
    let (channel, id) = tokio::join!(conn.open_channel(), server.open_channel());
    let channel = channel.unwrap();

    let (consumer, tag) = tokio::join!(
        channel.basic_consume("q", ConsumeOptions::default()),
        async {
            match server.read_method().await {
                (_, Method::BasicConsume(consume)) => {
                    server
                        .send(
                            id,
                            BasicConsumeOk {
                                consumer_tag: consume.consumer_tag.clone(),
                            },
                        )
                        .await;
                    consume.consumer_tag
                }
                other => panic!("expected basic.consume, got {other:?}"),
            }
        }
    );
    let mut consumer = consumer.unwrap();
    assert_eq!(consumer.tag(), tag.as_str());

    // A 10000-octet body in three frames.
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut out = BytesMut::new();
    encode_method(
        id,
        &Method::BasicDeliver(BasicDeliver {
            consumer_tag: tag.clone(),
            delivery_tag: 7,
            redelivered: true,
            exchange: "ex".into(),
            routing_key: "rk".into(),
        }),
        &mut out,
    );
    encode_header(
        id,
        &ContentHeader {
            class_id: 60,
            body_size: body.len() as u64,
            properties: BasicProperties::default(),
        },
        &mut out,
    );
    encode_body(id, &body, 4096, &mut out);
    server.stream.write_all(&out).await.unwrap();
    let delivery = tokio::time::timeout(LIMIT, consumer.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.delivery_tag, 7);
    assert!(delivery.redelivered);
    assert_eq!(delivery.routing_key, "rk");
    assert_eq!(&delivery.body[..], &body[..]);
    channel.basic_ack(7, false).await.unwrap();
    match server.read_method().await {
        (_, Method::BasicAck(ack)) => assert_eq!((ack.delivery_tag, ack.multiple), (7, false)),
        other => panic!("expected basic.ack, got {other:?}"),
    }
}

#[tokio::test]
async fn confirms_are_counted() {
    let (conn, mut server, _) = connected(4096, 0).await;
    let (channel, id) = tokio::join!(conn.open_channel(), server.open_channel());
    let channel = channel.unwrap();

    let (selected, _) = tokio::join!(channel.confirm_select(), async {
        let (_, method) = server.read_method().await;
        assert!(matches!(method, Method::ConfirmSelect(_)));
        server.send(id, ConfirmSelectOk).await;
    });
    selected.unwrap();
    let target = PublishTarget::new("", "q").unwrap();
    for expected in 1..=3 {
        let seq = channel
            .basic_publish(&target, &BasicProperties::default(), b"")
            .await
            .unwrap();
        assert_eq!(seq, expected);
        // An empty body has no body frame.
        assert!(matches!(
            server.read_method().await.1,
            Method::BasicPublish(_)
        ));
        assert!(matches!(server.read_frame().await, Frame::Header { .. }));
    }
    server
        .send(
            id,
            BasicAck {
                delivery_tag: 2,
                multiple: true,
            },
        )
        .await;
    tokio::time::timeout(LIMIT, channel.wait_unconfirmed_below(2))
        .await
        .unwrap()
        .unwrap();
    server
        .send(
            id,
            crate::protocol::BasicNack {
                delivery_tag: 3,
                multiple: false,
                requeue: false,
            },
        )
        .await;
    let nacked = tokio::time::timeout(LIMIT, channel.wait_for_confirms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nacked, 1);
    assert_eq!(
        channel.confirm_counts(),
        ConfirmCounts {
            published: 3,
            acked: 2,
            nacked: 1
        }
    );
}

#[tokio::test]
async fn garbage_from_the_server_is_an_error_not_a_panic() {
    let (conn, mut server, _) = connected(4096, 0).await;
    // A method frame whose frame-end octet is wrong.
    server
        .stream
        .write_all(&[1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 50, 0xAB])
        .await
        .unwrap();
    match server.read_method().await {
        (0, Method::ConnectionClose(close)) => assert_eq!(close.reply_code, 501),
        other => panic!("expected connection.close, got {other:?}"),
    }
    let error = conn.open_channel().await.expect_err("connection failed");
    assert!(matches!(error, ClientError::Frame(_)), "{error:?}");

    // A body with no method before it, on a fresh connection.
    let (conn, mut server, _) = connected(4096, 0).await;
    let mut out = BytesMut::new();
    encode_body(1, b"stray", 4096, &mut out);
    server.stream.write_all(&out).await.unwrap();
    match server.read_method().await {
        (0, Method::ConnectionClose(close)) => assert_eq!(close.reply_code, 505),
        other => panic!("expected connection.close, got {other:?}"),
    }
    let error = conn.open_channel().await.expect_err("connection failed");
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
}

#[tokio::test]
async fn client_close_waits_for_close_ok() {
    let (conn, mut server, _) = connected(4096, 0).await;
    let script = async {
        match server.read_method().await {
            (0, Method::ConnectionClose(close)) => assert_eq!(close.reply_code, 200),
            other => panic!("expected connection.close, got {other:?}"),
        }
        server.send(0, crate::protocol::ConnectionCloseOk).await;
    };
    let (closed, ()) = tokio::join!(conn.close(), script);
    closed.unwrap();
}

#[tokio::test]
async fn idle_client_sends_heartbeats_and_times_out_a_silent_server() {
    let (conn, mut server, _) = connected(4096, 1).await;
    assert_eq!(conn.tuning().heartbeat, 1);
    // Idle for half the interval: the writer sends one.
    let started = tokio::time::Instant::now();
    assert!(matches!(
        server.read_frame().await,
        Frame::Heartbeat { channel: 0 }
    ));
    assert!(started.elapsed() < Duration::from_millis(1500));
    // The server stays silent: after two intervals the client gives up.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let error = conn.open_channel().await.expect_err("heartbeat timeout");
    assert!(matches!(error, ClientError::Timeout(_)), "{error:?}");
}

#[tokio::test]
async fn server_cancel_ends_the_consumer_and_blocked_is_tracked() {
    let (conn, mut server, _) = connected(4096, 0).await;
    let (channel, id) = tokio::join!(conn.open_channel(), server.open_channel());
    let channel = channel.unwrap();
    let (consumer, tag) = tokio::join!(
        channel.basic_consume(
            "q",
            ConsumeOptions {
                consumer_tag: "mine".into(),
                no_ack: true,
                ..ConsumeOptions::default()
            }
        ),
        async {
            match server.read_method().await {
                (_, Method::BasicConsume(consume)) => {
                    assert!(consume.no_ack);
                    server
                        .send(
                            id,
                            BasicConsumeOk {
                                consumer_tag: consume.consumer_tag.clone(),
                            },
                        )
                        .await;
                    consume.consumer_tag
                }
                other => panic!("expected basic.consume, got {other:?}"),
            }
        }
    );
    assert_eq!(tag, "mine");
    let mut consumer = consumer.unwrap();
    server
        .send(
            id,
            crate::protocol::BasicCancel {
                consumer_tag: tag,
                no_wait: true,
            },
        )
        .await;
    let ended = tokio::time::timeout(LIMIT, consumer.recv()).await.unwrap();
    assert!(ended.is_none());

    server
        .send(
            0,
            crate::protocol::ConnectionBlocked {
                reason: "low on memory".into(),
            },
        )
        .await;
    // Round trip through a request so the blocked frame has been read.
    let (qos, ()) = tokio::join!(channel.basic_qos(10), async {
        let (_, method) = server.read_method().await;
        assert!(matches!(method, Method::BasicQos(_)));
        server.send(id, crate::protocol::BasicQosOk).await;
    });
    qos.unwrap();
    assert!(conn.is_blocked());
}
