//! Connection lifecycle against the in-process server: a real client (amqprs) for the happy
//! path, raw frames for the handshake's failure modes.

use std::time::{Duration, Instant};

use crate::common::{
    self, client_properties, open_vhost, plain_response, start_ok, start_server, tune_ok, Close,
    RawClient,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use bytes::{BufMut, Bytes, BytesMut};
use warren::config::{PermissionConfig, UserConfig, VhostConfig};
use warren::protocol::{
    ConnectionClose, ConnectionStartOk, FieldTable, FieldValue, Method, PROTOCOL_HEADER,
};

const LOGIN_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";

/// Sends the header and start-ok, returning the client waiting for the server's answer.
async fn start(addr: std::net::SocketAddr, start_ok: Method) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.send_raw(&PROTOCOL_HEADER).await;
    c.expect_method("connection.start").await;
    c.send_method(0, &start_ok).await;
    c
}

fn guest(name: &str) -> Method {
    start_ok(name, "PLAIN", plain_response("guest", "guest"), true)
}

#[tokio::test]
async fn amqprs_connects_as_guest_and_churns_channels() {
    let server = start_server(|_| {}).await;
    let mut args = OpenConnectionArguments::new("127.0.0.1", server.addr.port(), "guest", "guest");
    args.connection_name("connection/amqprs_churn");
    let conn = Connection::open(&args).await.unwrap();
    let props = conn.server_properties();
    assert_eq!(props.product(), "RabbitMQ");
    assert_eq!(props.version(), "3.13.7");
    assert!(props.capabilities().authentication_failure_close());
    assert!(props.capabilities().publisher_confirms());
    assert_eq!(conn.channel_max(), 2047);
    assert_eq!(conn.frame_max(), 131_072);
    for _ in 0..3 {
        let mut channels = Vec::new();
        for _ in 0..50 {
            channels.push(conn.open_channel(None).await.unwrap());
        }
        for channel in channels {
            assert!(channel.flow(true).await.unwrap());
            channel.close().await.unwrap();
        }
    }
    conn.close().await.unwrap();
    server.handle.shutdown().await;
}

#[tokio::test]
async fn server_properties_and_tune() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::connect(server.addr).await;
    c.send_raw(&PROTOCOL_HEADER).await;
    let (_, Method::ConnectionStart(start)) = c.expect_method("connection.start").await else {
        unreachable!()
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(&start.mechanisms[..], b"AMQPLAIN PLAIN");
    assert_eq!(&start.locales[..], b"en_US");
    let props = &start.server_properties;
    let keys: Vec<&str> = props.iter().map(|(k, _)| k.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "sorted like RabbitMQ's");
    // RabbitMQ's product and a 3.x version (kombu then uses the global QoS Warren keeps), so
    // that clients which sniff them behave as with RabbitMQ; Warren names itself elsewhere.
    for (key, value) in [
        ("product", "RabbitMQ"),
        ("version", "3.13.7"),
        ("warren_version", env!("CARGO_PKG_VERSION")),
        (
            "platform",
            concat!("Warren ", env!("CARGO_PKG_VERSION"), " (Rust)"),
        ),
    ] {
        assert_eq!(
            props.get(key),
            Some(&FieldValue::LongStr(Bytes::from(value))),
            "{key}"
        );
    }
    assert!(props.get("copyright").is_some());
    let Some(FieldValue::LongStr(information)) = props.get("information") else {
        panic!("no information");
    };
    assert!(information.starts_with(b"Warren "), "{information:?}");
    assert!(props.get("cluster_name").is_some());
    let Some(FieldValue::Table(caps)) = props.get("capabilities") else {
        panic!("no capabilities");
    };
    let advertised: Vec<&str> = caps.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        advertised,
        [
            "authentication_failure_close",
            "basic.nack",
            "connection.blocked",
            "consumer_cancel_notify",
            "consumer_priorities",
            "direct_reply_to",
            "exchange_exchange_bindings",
            "per_consumer_qos",
            "publisher_confirms",
        ]
    );
    c.send_method(0, &guest("connection/server_properties"))
        .await;
    let (_, Method::ConnectionTune(tune)) = c.expect_method("connection.tune").await else {
        unreachable!()
    };
    assert_eq!(
        (tune.channel_max, tune.frame_max, tune.heartbeat),
        (2047, 131_072, 60)
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn amqplain_login() {
    let server = start_server(|_| {}).await;
    let mut response = BytesMut::new();
    for (key, value) in [("LOGIN", "guest"), ("PASSWORD", "guest")] {
        response.put_u8(key.len() as u8);
        response.put_slice(key.as_bytes());
        response.put_u8(b'S');
        response.put_u32(value.len() as u32);
        response.put_slice(value.as_bytes());
    }
    let mut c = start(
        server.addr,
        start_ok("connection/amqplain", "AMQPLAIN", response.freeze(), true),
    )
    .await;
    c.expect_method("connection.tune").await;
    c.send_method(0, &tune_ok(2047, 131_072, 0)).await;
    c.send_method(0, &open_vhost("/")).await;
    c.expect_method("connection.open-ok").await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn refused_logins() {
    let server = start_server(|_| {}).await;
    let refused = Close::new(403, LOGIN_REFUSED, 0, 0);

    let bad_password = start_ok(
        "connection/bad_password",
        "PLAIN",
        plain_response("guest", "nope"),
        true,
    );
    assert_eq!(
        start(server.addr, bad_password).await.expect_close().await,
        refused
    );

    let unknown_user = start_ok(
        "connection/unknown_user",
        "PLAIN",
        plain_response("ghost", "guest"),
        true,
    );
    assert_eq!(
        start(server.addr, unknown_user).await.expect_close().await,
        refused
    );

    // Without the capability RabbitMQ just closes the socket.
    let no_capability = start_ok(
        "connection/no_capability",
        "PLAIN",
        plain_response("guest", "nope"),
        false,
    );
    start(server.addr, no_capability).await.expect_eof().await;

    // An unknown mechanism: a silent close, as RabbitMQ does before login.
    let unknown_mechanism = start_ok("connection/unknown_mechanism", "FOO", Bytes::new(), true);
    let mut c = start(server.addr, unknown_mechanism).await;
    let started = Instant::now();
    c.expect_eof().await;
    // RabbitMQ's silent-close delay.
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    let mut deep = FieldTable::new();
    deep.insert("leaf", true);
    for _ in 0..100 {
        let mut outer = FieldTable::new();
        outer.insert("t", deep);
        deep = outer;
    }
    let mut props = client_properties("connection/deep_client_properties", true);
    props.insert("deep", deep);
    let deep_start_ok = Method::ConnectionStartOk(ConnectionStartOk {
        client_properties: props,
        mechanism: "PLAIN".into(),
        response: plain_response("guest", "guest"),
        locale: "en_US".into(),
    });
    start(server.addr, deep_start_ok).await.expect_eof().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn vhost_access() {
    let server = start_server(|config| {
        config.users.push(UserConfig {
            name: "app".into(),
            password: "pw".into(),
            tags: vec![],
        });
        config.vhosts.push(VhostConfig {
            name: "staging".into(),
        });
        config.permissions.push(PermissionConfig {
            user: "app".into(),
            vhost: "staging".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        });
    })
    .await;
    let attempt = |name: &'static str,
                   user: &'static str,
                   password: &'static str,
                   vhost: &'static str| async move {
        let mut c = start(
            server.addr,
            start_ok(name, "PLAIN", plain_response(user, password), true),
        )
        .await;
        c.expect_method("connection.tune").await;
        c.send_method(0, &tune_ok(2047, 131_072, 0)).await;
        c.send_method(0, &open_vhost(vhost)).await;
        c
    };
    let mut c = attempt("connection/missing_vhost", "guest", "guest", "nope").await;
    assert_eq!(
        c.expect_close().await,
        Close::new(530, "NOT_ALLOWED - vhost nope not found", 10, 40)
    );
    let mut c = attempt("connection/no_permission", "app", "pw", "/").await;
    assert_eq!(
        c.expect_close().await,
        Close::new(
            530,
            "NOT_ALLOWED - access to vhost '/' refused for user 'app'",
            10,
            40
        )
    );
    let mut c = attempt("connection/permitted", "app", "pw", "staging").await;
    c.expect_method("connection.open-ok").await;
    c.open_channel(1).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn tune_ok_outside_the_limits() {
    let server = start_server(|_| {}).await;
    let cases = [
        (
            tune_ok(2048, 131_072, 0),
            "NOT_ALLOWED - negotiated channel_max = 2048 is higher than the maximum allowed value (2047)",
        ),
        (
            tune_ok(2047, 131_073, 0),
            "NOT_ALLOWED - negotiated frame_max = 131073 is higher than the maximum allowed value (131072)",
        ),
        (
            tune_ok(2047, 4095, 0),
            "NOT_ALLOWED - negotiated frame_max = 4095 is lower than the minimum allowed value (4096)",
        ),
    ];
    for (tune, text) in cases {
        let mut c = start(server.addr, guest("connection/tune_limits")).await;
        c.expect_method("connection.tune").await;
        c.send_method(0, &tune).await;
        assert_eq!(c.expect_close().await, Close::new(530, text, 10, 30));
    }
    // 0 means "whatever the server offers".
    let mut c = start(server.addr, guest("connection/tune_zero")).await;
    c.expect_method("connection.tune").await;
    c.send_method(0, &tune_ok(0, 0, 0)).await;
    c.send_method(0, &open_vhost("/")).await;
    c.expect_method("connection.open-ok").await;
    c.open_channel(2047).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn garbage_protocol_header_gets_ours_back() {
    let server = start_server(|_| {}).await;
    for garbage in [
        &b"HTTP/1.1 200 OK\r\n"[..],
        b"AMQP\x00\x00\x08\x00",
        b"AMQP\x01\x01\x00\x09",
    ] {
        let mut c = RawClient::connect(server.addr).await;
        c.send_raw(garbage).await;
        let mut answer = Vec::new();
        tokio::time::timeout(
            common::WAIT,
            tokio::io::AsyncReadExt::read_to_end(&mut c.stream, &mut answer),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(answer, PROTOCOL_HEADER);
    }
    server.handle.shutdown().await;
}

#[tokio::test]
async fn handshake_timeout_drops_slow_clients() {
    let server = start_server(|config| config.handshake_timeout = 1).await;
    // Stalls after connection.start.
    let started = Instant::now();
    let mut c = RawClient::connect(server.addr).await;
    c.send_raw(&PROTOCOL_HEADER).await;
    c.expect_method("connection.start").await;
    c.expect_eof().await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    // Never sends a byte.
    let mut silent = RawClient::connect(server.addr).await;
    silent.expect_eof().await;
    // A finished handshake is not affected.
    let mut ok = RawClient::open(server.addr, "connection/after_timeout", 0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ok.open_channel(1).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn close_in_both_directions() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "connection/client_close", 0).await;
    c.open_channel(1).await;
    c.send_method(
        1,
        &Method::ChannelClose(warren::protocol::ChannelClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        }),
    )
    .await;
    c.expect_method("channel.close-ok").await;
    c.open_channel(1).await;
    c.send_method(
        0,
        &Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        }),
    )
    .await;
    c.expect_method("connection.close-ok").await;
    // As RabbitMQ: after close-ok the socket is the client's to close (amqp091-go reports a
    // server that hangs up first as a 501 EOF).
    c.expect_open_for(Duration::from_millis(500)).await;
    drop(c);

    // Server-initiated: shutdown sends 320 to everyone and waits for close-ok.
    let mut a = RawClient::open(server.addr, "connection/shutdown_a", 0).await;
    let mut b = RawClient::open(server.addr, "connection/shutdown_b", 0).await;
    let shutdown = tokio::spawn(server.handle.shutdown());
    let forced = Close::new(
        320,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
        0,
        0,
    );
    assert_eq!(a.expect_close().await, forced);
    assert_eq!(b.expect_close().await, forced);
    tokio::time::timeout(common::WAIT, shutdown)
        .await
        .unwrap()
        .unwrap();
}

/// A non-loopback address of this machine, if it has one (found by routing, no packet sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    ["192.0.2.1:9", "10.255.255.254:9", "203.0.113.1:9"]
        .iter()
        .find_map(|target| {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            socket.connect(target).ok()?;
            let ip = socket.local_addr().ok()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
        })
}

#[tokio::test]
async fn guest_is_refused_from_a_non_loopback_address() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this machine: nothing to test");
        return;
    };
    let server = start_server(|config| config.listen = "0.0.0.0:0".parse().unwrap()).await;
    let addr = std::net::SocketAddr::new(ip, server.addr.port());
    let mut c = start(addr, guest("connection/guest_not_loopback")).await;
    assert_eq!(c.expect_close().await, Close::new(403, LOGIN_REFUSED, 0, 0));
    server.handle.shutdown().await;

    let server = start_server(|config| {
        config.listen = "0.0.0.0:0".parse().unwrap();
        config.loopback_users.clear();
    })
    .await;
    let addr = std::net::SocketAddr::new(ip, server.addr.port());
    let mut c = start(addr, guest("connection/guest_anywhere")).await;
    c.expect_method("connection.tune").await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn out_of_order_handshake() {
    let server = start_server(|_| {}).await;
    // channel.open before connection.open.
    let mut c = start(server.addr, guest("connection/channel_before_open")).await;
    c.expect_method("connection.tune").await;
    c.send_method(0, &tune_ok(2047, 131_072, 0)).await;
    c.send_method(1, &Method::ChannelOpen(warren::protocol::ChannelOpen))
        .await;
    assert_eq!(
        c.expect_close().await,
        Close::new(
            504,
            "CHANNEL_ERROR - unexpected method in connection state opening",
            20,
            10
        )
    );
    // connection.open instead of tune-ok.
    let mut c = start(server.addr, guest("connection/open_before_tune_ok")).await;
    c.expect_method("connection.tune").await;
    c.send_method(0, &open_vhost("/")).await;
    assert_eq!(
        c.expect_close().await,
        Close::new(
            504,
            "CHANNEL_ERROR - unexpected method in connection state tuning",
            10,
            40
        )
    );
    // A client may give up half-way with connection.close.
    let mut c = start(server.addr, guest("connection/close_during_handshake")).await;
    c.expect_method("connection.tune").await;
    c.send_method(
        0,
        &Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: "changed my mind".into(),
            class_id: 0,
            method_id: 0,
        }),
    )
    .await;
    c.expect_method("connection.close-ok").await;
    c.expect_eof().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn server_properties_from_the_config() {
    let server = start_server(|config| {
        for (key, value) in [
            ("product", "Warren"),
            ("version", env!("CARGO_PKG_VERSION")),
            ("region", "eu-west"),
        ] {
            config.server_properties.insert(key.into(), value.into());
        }
    })
    .await;
    let mut args = OpenConnectionArguments::new("127.0.0.1", server.addr.port(), "guest", "guest");
    args.connection_name("connection/server_properties_override");
    let conn = Connection::open(&args).await.unwrap();
    assert_eq!(conn.server_properties().product(), "Warren");
    assert_eq!(
        conn.server_properties().version(),
        env!("CARGO_PKG_VERSION")
    );
    conn.close().await.unwrap();

    let mut c = RawClient::connect(server.addr).await;
    c.send_raw(&PROTOCOL_HEADER).await;
    let (_, Method::ConnectionStart(start)) = c.expect_method("connection.start").await else {
        unreachable!()
    };
    let props = &start.server_properties;
    assert_eq!(
        props.get("region"),
        Some(&FieldValue::LongStr(Bytes::from("eu-west")))
    );
    assert!(props.get("warren_version").is_some());
    assert!(matches!(
        props.get("capabilities"),
        Some(FieldValue::Table(_))
    ));
    let keys: Vec<&str> = props.iter().map(|(k, _)| k.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "sorted like RabbitMQ's");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn channel_max_limits_how_many_channels_not_their_numbers() {
    let server = start_server(|_| {}).await;
    let mut c = start(server.addr, guest("connection/channel_numbers")).await;
    c.expect_method("connection.tune").await;
    c.send_method(0, &tune_ok(2, 131_072, 0)).await;
    c.send_method(0, &open_vhost("/")).await;
    c.expect_method("connection.open-ok").await;
    // RabbitMQ 3.10.8 did the same with channel_max 2: 65535 opens, a third channel is 530.
    c.open_channel(65535).await;
    c.ping(65535).await;
    c.open_channel(1).await;
    c.send_method(3000, &Method::ChannelOpen(warren::protocol::ChannelOpen))
        .await;
    assert_eq!(
        c.expect_close().await,
        Close::new(
            530,
            "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)",
            0,
            0
        )
    );
    // A closed channel frees its place.
    let mut c = RawClient::open(server.addr, "connection/channel_reuse", 0).await;
    c.open_channel(u16::MAX).await;
    c.send_method(
        u16::MAX,
        &Method::ChannelClose(warren::protocol::ChannelClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        }),
    )
    .await;
    c.expect_method("channel.close-ok").await;
    c.open_channel(u16::MAX).await;
    server.handle.shutdown().await;
}

fn update_secret(secret: &str) -> Method {
    Method::ConnectionUpdateSecret(warren::protocol::ConnectionUpdateSecret {
        new_secret: Bytes::copy_from_slice(secret.as_bytes()),
        reason: "token refresh".into(),
    })
}

#[tokio::test]
async fn update_secret_is_answered_as_rabbitmq_answers_it() {
    let server = start_server(|_| {}).await;
    let mut args = OpenConnectionArguments::new("127.0.0.1", server.addr.port(), "guest", "guest");
    args.connection_name("connection/update_secret_amqprs");
    let conn = Connection::open(&args).await.unwrap();
    conn.update_secret("guest", "token refresh").await.unwrap();
    let channel = conn.open_channel(None).await.unwrap();
    assert!(channel.flow(true).await.unwrap());
    conn.close().await.unwrap();

    let mut c = RawClient::open(server.addr, "connection/update_secret", 0).await;
    c.open_channel(1).await;
    c.send_method(0, &update_secret("guest")).await;
    let (channel, _) = c.expect_method("connection.update-secret-ok").await;
    assert_eq!(channel, 0);
    c.ping(1).await;
    // RabbitMQ's internal user database never expires, so it does not check the new secret
    // (3.10.8 answered a wrong one with update-secret-ok); neither does Warren's.
    c.send_method(0, &update_secret("not-guest")).await;
    let (channel, _) = c.expect_method("connection.update-secret-ok").await;
    assert_eq!(channel, 0);
    c.ping(1).await;
    // Before the connection is open it is out of place, as in RabbitMQ.
    let mut c = start(server.addr, guest("connection/update_secret_early")).await;
    c.expect_method("connection.tune").await;
    c.send_method(0, &update_secret("guest")).await;
    assert_eq!(
        c.expect_close().await,
        Close::new(
            504,
            "CHANNEL_ERROR - unexpected method in connection state tuning",
            10,
            70
        )
    );
    server.handle.shutdown().await;
}

/// A port free on both IPv4 and IPv6 a moment ago: on Linux a `[::]` socket is dual-stack by
/// default, so the port it gets was free on IPv4 too.
fn free_dual_port() -> u16 {
    let dual = std::net::TcpListener::bind("[::]:0").unwrap();
    dual.local_addr().unwrap().port()
}

fn has_no_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_err()
}

#[tokio::test]
async fn listens_on_ipv4_and_ipv6() {
    if has_no_ipv6() {
        eprintln!("no IPv6 on this host: nothing to test");
        return;
    }
    let server = start_server(|config| {
        config.listen = "127.0.0.1:0,[::1]:0".parse().unwrap();
    })
    .await;
    let addrs = server.handle.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert_eq!(server.handle.local_addr(), addrs[0]);
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6(), "{addrs:?}");
    for (i, addr) in addrs.iter().enumerate() {
        // guest is a loopback user: ::1 counts as loopback.
        let mut c = RawClient::open(*addr, &format!("connection/listen_{i}"), 0).await;
        c.open_channel(1).await;
    }
    server.handle.shutdown().await;

    // The default's shape: both wildcards on one port, each reachable by its loopback.
    let port = free_dual_port();
    let server = start_server(|config| {
        config.listen = format!("0.0.0.0:{port},[::]:{port}").parse().unwrap();
    })
    .await;
    assert_eq!(server.handle.local_addrs().len(), 2);
    for host in ["127.0.0.1", "[::1]"] {
        let addr = format!("{host}:{port}").parse().unwrap();
        let mut c = RawClient::open(addr, &format!("connection/wildcard_{host}"), 0).await;
        c.open_channel(1).await;
    }
    let mut args = OpenConnectionArguments::new("[::1]", port, "guest", "guest");
    args.connection_name("connection/amqprs_ipv6");
    let conn = Connection::open(&args).await.unwrap();
    conn.close().await.unwrap();
    server.handle.shutdown().await;
}
