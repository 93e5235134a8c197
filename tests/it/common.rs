//! Shared test harness: an in-process server on 127.0.0.1:0 and a raw AMQP client that speaks
//! frames through `warren::protocol`, so tests can send what no real client would.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use warren::config::Config;
use warren::protocol::{
    encode_body, encode_header, encode_method, BasicAck, BasicConsume, BasicGet, BasicProperties,
    BasicPublish, BasicQos, ChannelCloseOk, ChannelFlow, ChannelOpen, ConfirmSelect,
    ConnectionCloseOk, ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, ContentHeader,
    ExchangeDeclare, FieldTable, FieldValue, Frame, FrameDecoder, Method, QueueBind, QueueDeclare,
    QueueDeclareOk, PROTOCOL_HEADER,
};
use warren::server::{Server, ServerHandle};

/// Generous: the test machine is small and shared.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub handle: ServerHandle,
    pub addr: SocketAddr,
    _data_dir: tempfile::TempDir,
}

pub async fn start_server(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().join("data"),
        ..Config::default()
    };
    tweak(&mut config);
    let handle = Server::start(config).await.unwrap();
    let addr = handle.local_addr();
    TestServer {
        handle,
        addr,
        _data_dir: data_dir,
    }
}

/// A `connection.close` as received: code, full reply text, class id, method id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl Close {
    pub fn new(code: u16, text: &str, class_id: u16, method_id: u16) -> Close {
        Close {
            code,
            text: text.to_owned(),
            class_id,
            method_id,
        }
    }
}

pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

pub fn plain_response(user: &str, password: &str) -> Bytes {
    Bytes::from(format!("\0{user}\0{password}"))
}

/// Client properties naming the connection after the test, with or without the
/// `authentication_failure_close` capability.
pub fn client_properties(name: &str, auth_failure_close: bool) -> FieldTable {
    let mut caps = FieldTable::new();
    caps.insert("authentication_failure_close", auth_failure_close);
    let mut props = FieldTable::new();
    props.insert("capabilities", caps);
    props.insert("connection_name", name);
    props.insert("product", "warren-tests");
    props
}

pub fn start_ok(name: &str, mechanism: &str, response: Bytes, caps: bool) -> Method {
    Method::ConnectionStartOk(ConnectionStartOk {
        client_properties: client_properties(name, caps),
        mechanism: mechanism.into(),
        response,
        locale: "en_US".into(),
    })
}

pub fn tune_ok(channel_max: u16, frame_max: u32, heartbeat: u16) -> Method {
    Method::ConnectionTuneOk(ConnectionTuneOk {
        channel_max,
        frame_max,
        heartbeat,
    })
}

pub fn open_vhost(vhost: &str) -> Method {
    Method::ConnectionOpen(ConnectionOpen {
        virtual_host: vhost.into(),
    })
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(0),
        }
    }

    /// Connects and completes the handshake as guest on `/` with the given heartbeat.
    pub async fn open(addr: SocketAddr, name: &str, heartbeat: u16) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        c.send_raw(&PROTOCOL_HEADER).await;
        c.expect_method("connection.start").await;
        c.send_method(
            0,
            &start_ok(name, "PLAIN", plain_response("guest", "guest"), true),
        )
        .await;
        c.expect_method("connection.tune").await;
        c.send_method(0, &tune_ok(2047, 131_072, heartbeat)).await;
        c.send_method(0, &open_vhost("/")).await;
        c.expect_method("connection.open-ok").await;
        c
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Writes, ignoring a peer that already closed (some tests provoke exactly that).
    pub async fn try_send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    pub async fn send_method(&mut self, channel: u16, method: &Method) {
        let mut out = BytesMut::new();
        encode_method(channel, method, &mut out);
        self.send_raw(&out).await;
    }

    /// The next frame, `None` on EOF. Panics after `WAIT`.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        timeout(WAIT, self.read_frame())
            .await
            .expect("timed out waiting for a frame")
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next method, skipping heartbeats; panics on anything else.
    pub async fn next_method(&mut self) -> (u16, Method) {
        loop {
            match self.next_frame().await {
                Some(Frame::Heartbeat { .. }) => continue,
                Some(Frame::Method { channel, method }) => return (channel, method),
                other => panic!("expected a method, got {other:?}"),
            }
        }
    }

    pub async fn expect_method(&mut self, name: &str) -> (u16, Method) {
        let (channel, method) = self.next_method().await;
        assert_eq!(method.name(), name, "unexpected {method:?}");
        (channel, method)
    }

    /// Expects connection.close, answers close-ok, and expects the server to hang up.
    pub async fn expect_close(&mut self) -> Close {
        let (channel, method) = self.next_method().await;
        let Method::ConnectionClose(close) = method else {
            panic!("expected connection.close, got {method:?}");
        };
        assert_eq!(channel, 0);
        self.try_send_raw(&encoded(0, &Method::ConnectionCloseOk(ConnectionCloseOk)))
            .await;
        self.expect_eof().await;
        Close {
            code: close.reply_code,
            text: close.reply_text.as_str().to_owned(),
            class_id: close.class_id,
            method_id: close.method_id,
        }
    }

    /// Expects the server to close the socket (heartbeats aside) without sending a method.
    pub async fn expect_eof(&mut self) {
        loop {
            match self.next_frame().await {
                None => return,
                Some(Frame::Heartbeat { .. }) => continue,
                Some(other) => panic!("expected the socket to close, got {other:?}"),
            }
        }
    }

    /// Expects the server to keep the socket open and quiet (heartbeats aside) for `period`.
    pub async fn expect_open_for(&mut self, period: Duration) {
        let until = tokio::time::Instant::now() + period;
        loop {
            match tokio::time::timeout_at(until, self.read_frame()).await {
                Err(_) => return,
                Ok(Some(Frame::Heartbeat { .. })) => continue,
                Ok(other) => panic!("expected an open, quiet socket, got {other:?}"),
            }
        }
    }

    pub async fn open_channel(&mut self, channel: u16) {
        self.send_method(channel, &Method::ChannelOpen(ChannelOpen))
            .await;
        let (ch, _) = self.expect_method("channel.open-ok").await;
        assert_eq!(ch, channel);
    }

    /// Proves the connection still works: a channel.flow round trip on an open channel.
    pub async fn ping(&mut self, channel: u16) {
        self.send_method(channel, &Method::ChannelFlow(ChannelFlow { active: true }))
            .await;
        let (ch, _) = self.expect_method("channel.flow-ok").await;
        assert_eq!(ch, channel);
    }
}

pub fn encoded(channel: u16, method: &Method) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_method(channel, method, &mut out);
    out.to_vec()
}

/// A frame with an arbitrary type, channel and payload (and a correct frame end).
pub fn raw_frame(frame_type: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.put_u8(0xCE);
    out.to_vec()
}

/// A content-carrying method as received: the method, the header's properties and the body.
#[derive(Debug)]
pub struct Content {
    pub channel: u16,
    pub method: Method,
    pub properties: BasicProperties,
    pub body: Bytes,
    /// How many body frames carried it.
    pub body_frames: usize,
}

impl RawClient {
    /// Like `open`, with the `consumer_cancel_notify` capability set or not.
    pub async fn open_caps(addr: SocketAddr, name: &str, cancel_notify: bool) -> RawClient {
        RawClient::open_with_caps(addr, name, &[("consumer_cancel_notify", cancel_notify)], 0).await
    }

    /// Like `open`, with these client capabilities set (on top of the usual ones) and this
    /// heartbeat.
    pub async fn open_with_caps(
        addr: SocketAddr,
        name: &str,
        capabilities: &[(&str, bool)],
        heartbeat: u16,
    ) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        c.send_raw(&PROTOCOL_HEADER).await;
        c.expect_method("connection.start").await;
        let mut props = client_properties(name, true);
        if let Some(FieldValue::Table(mut caps)) = props.get("capabilities").cloned() {
            for (capability, on) in capabilities {
                caps.insert(*capability, *on);
            }
            props.insert("capabilities", caps);
        }
        c.send_method(
            0,
            &Method::ConnectionStartOk(ConnectionStartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: plain_response("guest", "guest"),
                locale: "en_US".into(),
            }),
        )
        .await;
        c.expect_method("connection.tune").await;
        c.send_method(0, &tune_ok(2047, 131_072, heartbeat)).await;
        c.send_method(0, &open_vhost("/")).await;
        c.expect_method("connection.open-ok").await;
        c
    }

    /// Sends a method and returns the next method received (any channel).
    pub async fn call(&mut self, channel: u16, method: Method) -> Method {
        self.send_method(channel, &method).await;
        self.next_method().await.1
    }

    /// Sends a method and expects a reply named `name` on the same channel.
    pub async fn ok(&mut self, channel: u16, method: Method, name: &str) -> Method {
        self.send_method(channel, &method).await;
        let (ch, reply) = self.expect_method(name).await;
        assert_eq!(ch, channel);
        reply
    }

    /// Sends a method and expects the channel to be closed with an error, which it returns
    /// after answering close-ok.
    pub async fn fails(&mut self, channel: u16, method: Method) -> Close {
        self.send_method(channel, &method).await;
        self.expect_channel_close(channel).await
    }

    /// Expects channel.close on `channel` (skipping nothing), answers close-ok.
    pub async fn expect_channel_close(&mut self, channel: u16) -> Close {
        let (ch, method) = self.next_method().await;
        let Method::ChannelClose(close) = method else {
            panic!("expected channel.close, got {method:?}");
        };
        assert_eq!(ch, channel);
        self.send_method(channel, &Method::ChannelCloseOk(ChannelCloseOk))
            .await;
        Close {
            code: close.reply_code,
            text: close.reply_text.as_str().to_owned(),
            class_id: close.class_id,
            method_id: close.method_id,
        }
    }

    /// basic.publish + header + body (in frames of at most `frame_max` octets of payload).
    pub async fn publish_with(
        &mut self,
        channel: u16,
        publish: BasicPublish,
        properties: BasicProperties,
        body: &[u8],
    ) {
        let mut out = BytesMut::new();
        encode_method(channel, &Method::BasicPublish(publish), &mut out);
        let header = ContentHeader {
            class_id: 60,
            body_size: body.len() as u64,
            properties,
        };
        encode_header(channel, &header, &mut out);
        encode_body(channel, body, 131_072, &mut out);
        self.send_raw(&out).await;
    }

    pub async fn publish(&mut self, channel: u16, exchange: &str, routing_key: &str, body: &[u8]) {
        self.publish_with(
            channel,
            publish(exchange, routing_key, false),
            BasicProperties::default(),
            body,
        )
        .await;
    }

    /// The next content-carrying method with its header and body.
    pub async fn next_content(&mut self) -> Content {
        let (channel, method) = self.next_method().await;
        assert!(method.has_content(), "expected content, got {method:?}");
        let (properties, body, body_frames) = self.header_and_body().await;
        Content {
            channel,
            method,
            properties,
            body,
            body_frames,
        }
    }

    /// The header and body frames that follow a content-carrying method: (properties, body,
    /// number of body frames).
    async fn header_and_body(&mut self) -> (BasicProperties, Bytes, usize) {
        let Some(Frame::Header { header, .. }) = self.next_frame().await else {
            panic!("expected a content header");
        };
        let mut body = BytesMut::new();
        let mut body_frames = 0;
        while (body.len() as u64) < header.body_size {
            let Some(Frame::Body { payload, .. }) = self.next_frame().await else {
                panic!("expected a body frame");
            };
            body.extend_from_slice(&payload);
            body_frames += 1;
        }
        (header.properties, body.freeze(), body_frames)
    }

    /// basic.get with no-ack: the body, or `None` on get-empty.
    pub async fn get_body(&mut self, channel: u16, queue: &str) -> Option<Vec<u8>> {
        self.send_method(channel, &get(queue, true)).await;
        let (_, method) = self.next_method().await;
        match method {
            Method::BasicGetEmpty(_) => None,
            Method::BasicGetOk(_) => Some(self.header_and_body().await.1.to_vec()),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Takes every ready message of `queue` with basic.get (no-ack): their bodies, in order.
    pub async fn drain(&mut self, channel: u16, queue: &str) -> Vec<Vec<u8>> {
        let mut bodies = Vec::new();
        while let Some(body) = self.get_body(channel, queue).await {
            bodies.push(body);
        }
        bodies
    }

    /// Puts `channel` in confirm mode.
    pub async fn confirm_select(&mut self, channel: u16) {
        self.ok(
            channel,
            Method::ConfirmSelect(ConfirmSelect { nowait: false }),
            "confirm.select-ok",
        )
        .await;
    }

    /// The next basic.deliver: (consumer tag, delivery tag, redelivered, body).
    pub async fn next_delivery(&mut self) -> (String, u64, bool, Bytes) {
        let c = self.next_content().await;
        let Method::BasicDeliver(d) = c.method else {
            panic!("expected basic.deliver, got {:?}", c.method);
        };
        (
            d.consumer_tag.as_str().to_owned(),
            d.delivery_tag,
            d.redelivered,
            c.body,
        )
    }

    /// Expects nothing but heartbeats for `period`.
    pub async fn expect_quiet(&mut self, period: Duration) {
        self.expect_open_for(period).await;
    }

    pub async fn declare_queue(&mut self, channel: u16, name: &str) -> QueueDeclareOk {
        let Method::QueueDeclareOk(ok) = self
            .ok(channel, queue_declare(name), "queue.declare-ok")
            .await
        else {
            unreachable!()
        };
        ok
    }

    /// Consumes from `queue` with `tag`; returns the tag from consume-ok.
    pub async fn consume(&mut self, channel: u16, queue: &str, tag: &str, no_ack: bool) -> String {
        let Method::BasicConsumeOk(ok) = self
            .ok(channel, consume(queue, tag, no_ack), "basic.consume-ok")
            .await
        else {
            unreachable!()
        };
        ok.consumer_tag.as_str().to_owned()
    }
}

pub fn publish(exchange: &str, routing_key: &str, mandatory: bool) -> BasicPublish {
    BasicPublish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory,
        immediate: false,
    }
}

pub fn queue_declare(name: &str) -> Method {
    Method::QueueDeclare(QueueDeclare {
        queue: name.into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

pub fn exchange_declare(name: &str, kind: &str) -> Method {
    Method::ExchangeDeclare(ExchangeDeclare {
        exchange: name.into(),
        kind: kind.into(),
        passive: false,
        durable: false,
        auto_delete: false,
        internal: false,
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

pub fn queue_bind(queue: &str, exchange: &str, key: &str) -> Method {
    Method::QueueBind(QueueBind {
        queue: queue.into(),
        exchange: exchange.into(),
        routing_key: key.into(),
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

pub fn consume(queue: &str, tag: &str, no_ack: bool) -> Method {
    Method::BasicConsume(BasicConsume {
        queue: queue.into(),
        consumer_tag: tag.into(),
        no_local: false,
        no_ack,
        exclusive: false,
        no_wait: false,
        arguments: FieldTable::new(),
    })
}

pub fn ack(tag: u64, multiple: bool) -> Method {
    Method::BasicAck(BasicAck {
        delivery_tag: tag,
        multiple,
    })
}

pub fn qos(count: u16, global: bool) -> Method {
    Method::BasicQos(BasicQos {
        prefetch_size: 0,
        prefetch_count: count,
        global,
    })
}

pub fn get(queue: &str, no_ack: bool) -> Method {
    Method::BasicGet(BasicGet {
        queue: queue.into(),
        no_ack,
    })
}

/// A long-string field value, the type RabbitMQ clients send for string arguments.
pub fn longstr(v: &str) -> FieldValue {
    FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()))
}

/// `queue.declare` of a plain (non-durable, non-exclusive) queue with these arguments.
pub fn declare_with_args(name: &str, pairs: &[(&str, FieldValue)]) -> Method {
    let mut arguments = FieldTable::new();
    for (k, v) in pairs {
        arguments.insert(*k, v.clone());
    }
    Method::QueueDeclare(warren::protocol::QueueDeclare {
        queue: name.into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments,
    })
}
