//! `amqp://user:pass@host:port/vhost` URLs, as RabbitMQ's URI spec reads them.

use std::fmt;

/// The default port of `amqp://`.
pub const DEFAULT_PORT: u16 = 5672;

/// Where and as whom to connect. Built by [`AmqpUrl::parse`]; the fields are public so tests can
/// build one by hand.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

impl Default for AmqpUrl {
    fn default() -> AmqpUrl {
        AmqpUrl {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            user: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
        }
    }
}

/// The password is left out so URLs can be logged.
impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

/// A URL [`AmqpUrl::parse`] rejects, with the offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Only `amqp://` is supported (no TLS in this client).
    Scheme(String),
    Port(String),
    /// A `%` not followed by two hex digits, or escapes that are not UTF-8.
    Escape(String),
    /// Query parameters (`?heartbeat=…`) are not supported; options are set in code instead.
    Query(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme(s) => write!(f, "unsupported URL scheme in {s:?} (only amqp://)"),
            UrlError::Port(s) => write!(f, "bad port {s:?}"),
            UrlError::Escape(s) => write!(f, "bad percent-escape in {s:?}"),
            UrlError::Query(s) => write!(f, "URL query parameters are not supported: {s:?}"),
        }
    }
}

impl std::error::Error for UrlError {}

impl AmqpUrl {
    /// Parses `amqp://[user[:pass]@]host[:port][/vhost]`.
    ///
    /// The vhost is the percent-decoded path (`%2f` is `/`). An absent or empty path (`host` or
    /// `host/`) means vhost `/`, as pika and amqp091-go read it; RabbitMQ's URI spec would read
    /// `host/` as the vhost named "", which no broker has by default, while `host/` is how
    /// everyone writes the default URL. Absent credentials default to guest/guest. IPv6 hosts
    /// are written in brackets (`amqp://[::1]:5672`).
    pub fn parse(url: &str) -> Result<AmqpUrl, UrlError> {
        let rest = url
            .strip_prefix("amqp://")
            .ok_or_else(|| UrlError::Scheme(url.into()))?;
        if rest.contains('?') {
            return Err(UrlError::Query(url.into()));
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let mut parsed = AmqpUrl::default();
        let host_port = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                parsed.user = percent_decode(user)?;
                parsed.password = percent_decode(password)?;
                &authority[at + 1..]
            }
            None => authority,
        };
        let (host, port) = split_host_port(host_port)?;
        if !host.is_empty() {
            parsed.host = percent_decode(host)?;
        }
        if let Some(port) = port {
            parsed.port = port;
        }
        if let Some(path) = path.filter(|p| !p.is_empty()) {
            parsed.vhost = percent_decode(path)?;
        }
        Ok(parsed)
    }

    /// `host:port` for `TcpStream::connect`, with IPv6 hosts bracketed.
    pub fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(host_port: &str) -> Result<(&str, Option<u16>), UrlError> {
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let end = bracketed
            .find(']')
            .ok_or_else(|| UrlError::Port(host_port.into()))?;
        let after = &bracketed[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(UrlError::Port(host_port.into())),
        };
        (&bracketed[..end], port)
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(port) => Some(
            port.parse::<u16>()
                .map_err(|_| UrlError::Port(port.into()))?,
        ),
    };
    Ok((host, port))
}

fn percent_decode(text: &str) -> Result<String, UrlError> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let bad = || UrlError::Escape(text.into());
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let url = AmqpUrl::parse("amqp://alice:s3cret@broker.example:5673/prod").unwrap();
        assert_eq!(url.host, "broker.example");
        assert_eq!(url.port, 5673);
        assert_eq!(url.user, "alice");
        assert_eq!(url.password, "s3cret");
        assert_eq!(url.vhost, "prod");
        assert_eq!(url.socket_addr(), "broker.example:5673");
    }

    #[test]
    fn defaults_and_vhost_rules() {
        let url = AmqpUrl::parse("amqp://localhost").unwrap();
        assert_eq!(
            (url.port, url.user.as_str(), url.vhost.as_str()),
            (5672, "guest", "/")
        );
        assert_eq!(AmqpUrl::parse("amqp://localhost/").unwrap().vhost, "/");
        assert_eq!(
            AmqpUrl::parse("amqp://localhost/prod%2Feu").unwrap().vhost,
            "prod/eu"
        );
        assert_eq!(AmqpUrl::parse("amqp://localhost/%2f").unwrap().vhost, "/");
        assert_eq!(
            AmqpUrl::parse("amqp://localhost/%2Fa%20b").unwrap().vhost,
            "/a b"
        );
        assert_eq!(AmqpUrl::parse("amqp://").unwrap().host, "127.0.0.1");
        assert_eq!(AmqpUrl::parse("amqp://h:/v").unwrap().port, 5672);
    }

    #[test]
    fn escaped_credentials() {
        let url = AmqpUrl::parse("amqp://us%40er:p%3Ass@h/").unwrap();
        assert_eq!(url.user, "us@er");
        assert_eq!(url.password, "p:ss");
        let url = AmqpUrl::parse("amqp://user@h").unwrap();
        assert_eq!((url.user.as_str(), url.password.as_str()), ("user", ""));
    }

    #[test]
    fn ipv6() {
        let url = AmqpUrl::parse("amqp://[::1]:5673/").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.port, 5673);
        assert_eq!(url.socket_addr(), "[::1]:5673");
        assert_eq!(AmqpUrl::parse("amqp://[::1]").unwrap().port, 5672);
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            AmqpUrl::parse("amqps://h"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            AmqpUrl::parse("http://h"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            AmqpUrl::parse("amqp://h:99999"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            AmqpUrl::parse("amqp://h:x"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            AmqpUrl::parse("amqp://h/%2"),
            Err(UrlError::Escape(_))
        ));
        assert!(matches!(
            AmqpUrl::parse("amqp://h/%zz"),
            Err(UrlError::Escape(_))
        ));
        assert!(matches!(
            AmqpUrl::parse("amqp://h/%ff"),
            Err(UrlError::Escape(_))
        ));
        assert!(matches!(
            AmqpUrl::parse("amqp://h/?heartbeat=5"),
            Err(UrlError::Query(_))
        ));
        let debug = format!("{:?}", AmqpUrl::parse("amqp://u:hidden@h").unwrap());
        assert!(!debug.contains("hidden"));
    }
}
