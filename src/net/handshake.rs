//! The opening handshake: protocol header, start/start-ok (SASL), tune/tune-ok, open/open-ok.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::io::AsyncRead;
use tracing::{info, warn};

use super::connection::{Connection, End};
use super::reader::ReadError;
use super::sasl;
use crate::config::{Config, ConfigError, FRAME_MIN_SIZE};
use crate::error::AmqpError;
use crate::protocol::{
    ConnectionCloseOk, ConnectionOpenOk, ConnectionStart, ConnectionStartOk, ConnectionTune,
    ConnectionTuneOk, ConnectionUpdateSecret, ConnectionUpdateSecretOk, FieldTable, FieldValue,
    Frame, HeaderCheck, Method, PROTOCOL_HEADER,
};

/// What the client may use, settled by tune-ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuned {
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

/// Checks the client's tune-ok against what we offered. A 0 channel_max or frame_max takes
/// ours (RabbitMQ 3.10 drops the connection on 0; we are lenient on purpose). Values above ours, or a
/// frame_max under 4096, get RabbitMQ's 530 texts. The heartbeat is the client's: it has
/// already negotiated from our proposal, and overriding a 0 would disconnect clients that
/// turned heartbeats off.
pub fn negotiate(config: &Config, ok: &ConnectionTuneOk) -> Result<Tuned, AmqpError> {
    let refuse = |field: &str, value: u64, relation: &str, bound: u64| {
        let (cmp, which) = match relation {
            "max" => ("higher", "maximum"),
            _ => ("lower", "minimum"),
        };
        AmqpError::not_allowed(format!(
            "negotiated {field} = {value} is {cmp} than the {which} allowed value ({bound})"
        ))
        .on(10, 30)
    };
    let channel_max = match ok.channel_max {
        0 => config.channel_max,
        n if n > config.channel_max => {
            return Err(refuse(
                "channel_max",
                n.into(),
                "max",
                config.channel_max.into(),
            ))
        }
        n => n,
    };
    let frame_max = match ok.frame_max {
        0 => config.frame_max,
        n if n > config.frame_max => {
            return Err(refuse(
                "frame_max",
                n.into(),
                "max",
                config.frame_max.into(),
            ))
        }
        n if n < FRAME_MIN_SIZE => {
            return Err(refuse("frame_max", n.into(), "min", FRAME_MIN_SIZE.into()))
        }
        n => n,
    };
    Ok(Tuned {
        channel_max,
        frame_max,
        heartbeat: ok.heartbeat,
    })
}

/// The RabbitMQ release advertised as `version` with `product` "RabbitMQ", so that clients
/// which sniff the broker pick the behaviour Warren has. The one that matters is kombu/Celery:
/// it sends `basic.qos(global=true)` to RabbitMQ 3.3 up to (not including) 4.0, and from kombu
/// 5.7 on `global=false` to 4.0 and later, where global QoS was deprecated and then removed.
/// Warren keeps global QoS (a channel-wide limit that later `basic.qos` calls change for
/// running consumers), which Celery needs to fetch past the ETA tasks it holds, so it
/// advertises the last 3.x release; otherwise Warren follows 4.x (docs/compatibility.md).
/// Operators can override it (`server_properties`).
pub const ADVERTISED_RABBITMQ_VERSION: &str = "3.13.7";

/// Warren's own version, advertised as `warren_version`.
const WARREN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `connection.start`'s server properties, sorted by key as RabbitMQ sends them: Warren's
/// defaults with the operator's `server_properties` on top. The capabilities advertise only
/// what works today and are not the operator's to change.
///
/// Fails when the properties make `connection.start` larger than the 4096-byte frame every
/// client accepts before tuning.
pub fn server_properties(config: &Config) -> Result<FieldTable, ConfigError> {
    let defaults = default_server_properties();
    let mut merged: BTreeMap<&str, FieldValue> = defaults
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    for (key, value) in &config.server_properties {
        if key != "capabilities" {
            merged.insert(key.as_str(), FieldValue::from(value.as_str()));
        }
    }
    let mut props = FieldTable::new();
    for (key, value) in merged {
        props.insert(key, value);
    }
    let size = start_frame_size(&props);
    if size > FRAME_MIN_SIZE as usize {
        return Err(ConfigError::Invalid(format!(
            "server_properties make connection.start a frame of {size} bytes, more than the \
             {FRAME_MIN_SIZE} a client accepts before tuning"
        )));
    }
    Ok(props)
}

/// The size of the `connection.start` frame that carries `props`.
fn start_frame_size(props: &FieldTable) -> usize {
    let mut buf = bytes::BytesMut::new();
    crate::protocol::encode_method(0, &start_method(props.clone()), &mut buf);
    buf.len()
}

fn start_method(server_properties: FieldTable) -> Method {
    Method::ConnectionStart(ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties,
        mechanisms: Bytes::from_static(sasl::MECHANISMS.as_bytes()),
        locales: Bytes::from_static(b"en_US"),
    })
}

/// Logs what clients are told the broker is (a sniffing client behaves accordingly).
pub fn log_advertised(props: &FieldTable) {
    let text = |key: &str| match props.get(key) {
        Some(FieldValue::LongStr(v)) => String::from_utf8_lossy(v).into_owned(),
        _ => String::new(),
    };
    info!(
        product = %text("product"),
        version = %text("version"),
        warren_version = WARREN_VERSION,
        "advertising product '{}' version '{}' to clients",
        text("product"),
        text("version")
    );
}

/// Warren's properties before the operator's: RabbitMQ's product and version, Warren's name
/// in `platform`, `information` and `warren_version`.
fn default_server_properties() -> FieldTable {
    let mut capabilities = FieldTable::new();
    for capability in [
        "authentication_failure_close",
        "basic.nack",
        "connection.blocked",
        "consumer_cancel_notify",
        "consumer_priorities",
        "direct_reply_to",
        "exchange_exchange_bindings",
        "per_consumer_qos",
        "publisher_confirms",
    ] {
        capabilities.insert(capability, true);
    }
    let mut props = FieldTable::new();
    props.insert("capabilities", capabilities);
    props.insert("cluster_name", "warren");
    props.insert("copyright", "Copyright (c) the Warren authors");
    props.insert(
        "information",
        format!(
            "Warren {WARREN_VERSION}, an AMQP 0-9-1 broker that RabbitMQ clients use unchanged. \
             Licensed under the Apache License 2.0."
        )
        .as_str(),
    );
    props.insert(
        "platform",
        format!("Warren {WARREN_VERSION} (Rust)").as_str(),
    );
    props.insert("product", "RabbitMQ");
    props.insert("version", ADVERTISED_RABBITMQ_VERSION);
    props.insert("warren_version", WARREN_VERSION);
    props
}

/// Whether the client asked to be told about a refused login with a `connection.close`.
pub fn wants_auth_failure_close(client_properties: &FieldTable) -> bool {
    has_capability(client_properties, "authentication_failure_close")
}

/// Whether the client's `capabilities` table has `name` set to true.
pub fn has_capability(client_properties: &FieldTable, name: &str) -> bool {
    matches!(
        client_properties.get("capabilities"),
        Some(FieldValue::Table(caps)) if matches!(caps.get(name), Some(FieldValue::Bool(true)))
    )
}

/// The `connection_name` client property, for logs.
pub fn connection_name(client_properties: &FieldTable) -> Option<String> {
    match client_properties.get("connection_name") {
        Some(FieldValue::LongStr(name)) => Some(String::from_utf8_lossy(name).into_owned()),
        _ => None,
    }
}

impl<R: AsyncRead + Unpin + Send> Connection<R> {
    /// Runs the handshake up to open-ok. Before the login succeeds, failures close the socket
    /// without a close method after a delay (RabbitMQ does not trust the peer yet; a refused
    /// login is told with 403 only to clients with `authentication_failure_close`); after it,
    /// they send connection.close.
    pub(super) async fn handshake(&mut self) -> Result<(), End> {
        match self.reader.protocol_header().await {
            Ok(HeaderCheck::Valid) => {}
            Ok(_) => {
                let _ = self
                    .writer
                    .send_bytes(Bytes::from_static(&PROTOCOL_HEADER))
                    .await;
                return Err(End::Drop("bad protocol header".into()));
            }
            Err(e) => return Err(read_end(e)),
        }
        let start = start_method(self.ctx.server_properties.clone());
        self.send(0, &start).await?;

        let start_ok = match self.reader.next_frame().await {
            Ok(Frame::Method {
                channel: 0,
                method: Method::ConnectionStartOk(ok),
            }) => ok,
            Ok(Frame::Method {
                channel: 0,
                method: Method::ConnectionClose(close),
            }) => return Err(self.client_close(close.reply_text.as_str()).await),
            Ok(other) => {
                return Err(End::Refuse(format!(
                    "expected connection.start-ok, got {}",
                    describe(&other)
                )))
            }
            Err(ReadError::Frame(e)) => return Err(End::Refuse(e.to_string())),
            Err(e) => return Err(read_end(e)),
        };
        self.cancel_notify = has_capability(&start_ok.client_properties, "consumer_cancel_notify");
        self.blocked_notify = has_capability(&start_ok.client_properties, "connection.blocked");
        self.authenticate(&start_ok)?;

        let tune = ConnectionTune {
            channel_max: self.ctx.config.channel_max,
            frame_max: self.ctx.config.frame_max,
            heartbeat: self.ctx.config.heartbeat,
        };
        self.send(0, &Method::ConnectionTune(tune)).await?;
        let tune_ok = match self.handshake_method("tuning").await? {
            Method::ConnectionTuneOk(ok) => ok,
            other => return Err(unexpected(&other, "tuning")),
        };
        let tuned = negotiate(&self.ctx.config, &tune_ok).map_err(End::Close)?;
        self.reader.set_frame_max(tuned.frame_max);
        self.frame_max = tuned.frame_max;
        self.channels = crate::channel::ChannelTable::new(tuned.channel_max);
        self.heartbeat = tuned.heartbeat;
        if tuned.heartbeat > 0 {
            let interval = std::time::Duration::from_secs(tuned.heartbeat.into());
            self.writer
                .start_heartbeats(interval)
                .await
                .map_err(|_| End::Drop("socket closed".into()))?;
        }

        let open = match self.handshake_method("opening").await? {
            Method::ConnectionOpen(open) => open,
            other => return Err(unexpected(&other, "opening")),
        };
        let user = self.user.clone().unwrap_or_default();
        let vhost = open.virtual_host.as_str().to_owned();
        let opened = self
            .ctx
            .broker
            .open_vhost(&user, &vhost)
            .map_err(|e| End::Close(AmqpError::not_allowed(e.to_string()).on(10, 40)))?;
        self.revoked = Some(opened.revoked);
        let mut session = crate::channel::Session::new(
            opened.registry,
            self.events_tx.clone(),
            self.ctx.config.max_message_size,
            self.cancel_notify,
        );
        session.consumer_timeout = self.ctx.config.consumer_timeout;
        self.channels.attach(session);
        self.send(0, &Method::ConnectionOpenOk(ConnectionOpenOk))
            .await?;
        info!(
            peer = %self.peer,
            name = self.name.as_deref().unwrap_or_default(),
            "user '{user}' authenticated and granted access to vhost '{vhost}'"
        );
        self.vhost = Some(vhost);
        Ok(())
    }

    fn authenticate(&mut self, start_ok: &ConnectionStartOk) -> Result<(), End> {
        self.name = connection_name(&start_ok.client_properties);
        let mechanism = start_ok.mechanism.as_str();
        let credentials = match sasl::credentials(mechanism, &start_ok.response) {
            Ok(c) => c,
            Err(e @ sasl::SaslError::UnknownMechanism(_)) => {
                return Err(End::Refuse(e.to_string()))
            }
            Err(e) => return Err(self.login_refused(mechanism, &e.to_string(), start_ok)),
        };
        match self.ctx.broker.authenticate(
            &credentials.username,
            &credentials.password,
            self.peer.ip(),
        ) {
            Ok(user) => {
                self.user = Some(user.name.clone());
                Ok(())
            }
            Err(e) => {
                self.user = Some(credentials.username.clone());
                Err(self.login_refused(mechanism, &e.to_string(), start_ok))
            }
        }
    }

    /// `connection.update-secret`, as RabbitMQ's access control answers it for the backend
    /// Warren has: `update_state` keeps a backend whose credentials never expire without
    /// checking the new secret (the internal user database, as here), so the answer is
    /// update-secret-ok whatever the secret (amqprs's own tests rely on it). A backend whose
    /// credentials expire (OAuth 2) would check it and refuse with 530 "New secret was refused
    /// by one of the backends"; Warren has none yet.
    pub(super) fn update_secret(&self, update: &ConnectionUpdateSecret) -> Method {
        info!(
            peer = %self.peer,
            name = self.name.as_deref().unwrap_or_default(),
            "user '{}' updated secret, reason: {}",
            self.user.as_deref().unwrap_or_default(),
            update.reason.as_str()
        );
        Method::ConnectionUpdateSecretOk(ConnectionUpdateSecretOk)
    }

    /// RabbitMQ logs the reason but tells the client only that the login was refused, and
    /// only if the client advertised `authentication_failure_close`.
    fn login_refused(&self, mechanism: &str, reason: &str, start_ok: &ConnectionStartOk) -> End {
        warn!(peer = %self.peer, "{mechanism} login refused: {reason}");
        if wants_auth_failure_close(&start_ok.client_properties) {
            End::Close(
                AmqpError::access_refused(format!(
                    "Login was refused using authentication mechanism {mechanism}. \
                     For details see the broker logfile."
                ))
                .on_connection(),
            )
        } else {
            End::Refuse(format!("{mechanism} login refused: {reason}"))
        }
    }

    /// The next method during tuning/opening; a client's close is answered and ends it.
    async fn handshake_method(&mut self, state: &str) -> Result<Method, End> {
        loop {
            return match self.reader.next_frame().await {
                Ok(Frame::Heartbeat { channel: 0 }) => continue,
                Ok(Frame::Method {
                    channel: 0,
                    method: Method::ConnectionClose(close),
                }) => Err(self.client_close(close.reply_text.as_str()).await),
                Ok(Frame::Method { channel: 0, method }) => Ok(method),
                Ok(Frame::Method { method, .. }) => Err(unexpected(&method, state)),
                Ok(Frame::Header { .. } | Frame::Body { .. }) => {
                    Err(End::Close(AmqpError::unexpected_frame(
                        "expected method frame, got non method frame instead",
                    )))
                }
                Ok(Frame::Heartbeat { .. }) => Err(End::Close(AmqpError::unexpected_frame(
                    "type 8, all octets = <<>>",
                ))),
                Err(ReadError::Frame(e)) => Err(End::Close((&e).into())),
                Err(e) => Err(read_end(e)),
            };
        }
    }

    /// Answers a client's `connection.close` during the handshake.
    async fn client_close(&mut self, text: &str) -> End {
        match self
            .send(0, &Method::ConnectionCloseOk(ConnectionCloseOk))
            .await
        {
            Ok(()) => End::ClientClosed(text.to_owned()),
            Err(end) => end,
        }
    }
}

/// A method that has no place in the handshake state `state` (RabbitMQ's text).
fn unexpected(method: &Method, state: &str) -> End {
    End::Close(
        AmqpError::channel_error(format!("unexpected method in connection state {state}"))
            .on_method(method),
    )
}

fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Method { channel, method } => format!("{} on channel {channel}", method.name()),
        Frame::Header { channel, .. } => format!("a content header on channel {channel}"),
        Frame::Body { channel, .. } => format!("a content body on channel {channel}"),
        Frame::Heartbeat { channel } => format!("a heartbeat on channel {channel}"),
    }
}

/// The end of a connection whose socket failed or closed.
pub(super) fn read_end(error: ReadError) -> End {
    match error {
        ReadError::Eof => End::Drop("client unexpectedly closed TCP connection".into()),
        ReadError::Io(e) => End::Drop(format!("socket error: {e}")),
        ReadError::Frame(e) => End::Close((&e).into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tune_ok(channel_max: u16, frame_max: u32, heartbeat: u16) -> ConnectionTuneOk {
        ConnectionTuneOk {
            channel_max,
            frame_max,
            heartbeat,
        }
    }

    #[test]
    fn negotiation() {
        let config = Config::default();
        let tuned = |c, f, h| negotiate(&config, &tune_ok(c, f, h));
        assert_eq!(
            tuned(0, 0, 0).unwrap(),
            Tuned {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 0
            }
        );
        assert_eq!(
            tuned(10, 4096, 30).unwrap(),
            Tuned {
                channel_max: 10,
                frame_max: 4096,
                heartbeat: 30
            }
        );
        let refused = tuned(2048, 4096, 0).unwrap_err();
        assert_eq!(
            refused.reply_text().as_str(),
            "NOT_ALLOWED - negotiated channel_max = 2048 is higher than the maximum allowed value (2047)"
        );
        assert_eq!((refused.class_id, refused.method_id), (10, 30));
        assert_eq!(
            tuned(1, 4095, 0).unwrap_err().text,
            "negotiated frame_max = 4095 is lower than the minimum allowed value (4096)"
        );
        assert_eq!(
            tuned(1, 131_073, 0).unwrap_err().text,
            "negotiated frame_max = 131073 is higher than the maximum allowed value (131072)"
        );
    }

    #[test]
    fn client_properties() {
        let mut caps = FieldTable::new();
        caps.insert("authentication_failure_close", true);
        let mut props = FieldTable::new();
        assert!(!wants_auth_failure_close(&props));
        props.insert("capabilities", caps);
        props.insert("connection_name", "orders");
        assert!(wants_auth_failure_close(&props));
        assert_eq!(connection_name(&props).as_deref(), Some("orders"));
        let mut off = FieldTable::new();
        off.insert("authentication_failure_close", false);
        let mut props = FieldTable::new();
        props.insert("capabilities", off);
        assert!(!wants_auth_failure_close(&props));
        assert_eq!(connection_name(&props), None);
    }

    #[test]
    fn server_properties_advertise_only_what_works() {
        let props = server_properties(&Config::default()).unwrap();
        let Some(FieldValue::Table(caps)) = props.get("capabilities") else {
            unreachable!()
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
        assert!(caps.iter().all(|(_, v)| v == &FieldValue::Bool(true)));
    }

    fn text(props: &FieldTable, key: &str) -> Option<String> {
        match props.get(key) {
            Some(FieldValue::LongStr(v)) => Some(String::from_utf8(v.to_vec()).unwrap()),
            _ => None,
        }
    }

    #[test]
    fn rabbitmq_is_the_product_and_warren_names_itself_elsewhere() {
        let props = server_properties(&Config::default()).unwrap();
        assert_eq!(text(&props, "product").as_deref(), Some("RabbitMQ"));
        assert_eq!(text(&props, "version").as_deref(), Some("3.13.7"));
        assert_eq!(
            text(&props, "warren_version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(text(&props, "platform").unwrap().starts_with("Warren "));
        assert!(text(&props, "information").unwrap().starts_with("Warren "));
        let keys: Vec<&str> = props.iter().map(|(k, _)| k.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn the_operator_replaces_and_adds_properties_but_not_capabilities() {
        let mut config = Config::default();
        for (k, v) in [
            ("product", "Warren"),
            ("version", "0.1.0"),
            ("a_first", "x"),
            ("capabilities", "none"),
        ] {
            config.server_properties.insert(k.into(), v.into());
        }
        let props = server_properties(&config).unwrap();
        assert_eq!(text(&props, "product").as_deref(), Some("Warren"));
        assert_eq!(text(&props, "version").as_deref(), Some("0.1.0"));
        assert_eq!(
            props.iter().next().map(|(k, _)| k.as_str()),
            Some("a_first")
        );
        assert!(matches!(
            props.get("capabilities"),
            Some(FieldValue::Table(_))
        ));

        let mut big = Config::default();
        big.server_properties
            .insert("information".into(), "x".repeat(4000));
        let err = server_properties(&big).unwrap_err().to_string();
        assert!(err.contains("more than the 4096"), "{err}");
    }
}
