//! SASL responses from `connection.start-ok`: PLAIN and AMQPLAIN.

use std::fmt;

/// The mechanisms offered in `connection.start`, in RabbitMQ's order.
pub const MECHANISMS: &str = "AMQPLAIN PLAIN";

/// A username and password taken from a SASL response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Vec<u8>,
}

/// Why a response yields no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// A mechanism we do not offer (RabbitMQ: "unknown authentication mechanism 'X'").
    UnknownMechanism(String),
    /// A response that does not follow the mechanism's format.
    Malformed(&'static str),
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaslError::UnknownMechanism(m) => write!(f, "unknown authentication mechanism '{m}'"),
            SaslError::Malformed(why) => write!(f, "malformed SASL response: {why}"),
        }
    }
}

impl std::error::Error for SaslError {}

/// Reads the credentials out of `response` for `mechanism`.
pub fn credentials(mechanism: &str, response: &[u8]) -> Result<Credentials, SaslError> {
    match mechanism {
        "PLAIN" => plain(response),
        "AMQPLAIN" => amqplain(response),
        other => Err(SaslError::UnknownMechanism(other.to_owned())),
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL password`. Like RabbitMQ we ignore the authzid.
fn plain(response: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = response.splitn(3, |b| *b == 0);
    let (Some(_authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed("PLAIN needs two NUL separators"));
    };
    let username = std::str::from_utf8(user)
        .map_err(|_| SaslError::Malformed("PLAIN username is not UTF-8"))?;
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_vec(),
    })
}

/// AMQPLAIN: the body of a field table (no 4-octet length in front) holding the longstrs
/// `LOGIN` and `PASSWORD`. Only longstr values are accepted: that is all clients send, and it
/// keeps this parser flat (no nesting for a peer to abuse).
fn amqplain(mut rest: &[u8]) -> Result<Credentials, SaslError> {
    let mut login = None;
    let mut password = None;
    while !rest.is_empty() {
        let (&key_len, after) = rest
            .split_first()
            .ok_or(SaslError::Malformed("truncated key"))?;
        let key = after
            .get(..usize::from(key_len))
            .ok_or(SaslError::Malformed("truncated key"))?;
        let after = &after[usize::from(key_len)..];
        let (&kind, after) = after
            .split_first()
            .ok_or(SaslError::Malformed("missing value type"))?;
        if kind != b'S' {
            return Err(SaslError::Malformed("AMQPLAIN values must be longstrs"));
        }
        let len_bytes: [u8; 4] = after
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(SaslError::Malformed("truncated value length"))?;
        let len = usize::try_from(u32::from_be_bytes(len_bytes))
            .map_err(|_| SaslError::Malformed("value too long"))?;
        let value = after
            .get(4..)
            .and_then(|v| v.get(..len))
            .ok_or(SaslError::Malformed("truncated value"))?;
        match key {
            b"LOGIN" => login = Some(value),
            b"PASSWORD" => password = Some(value),
            _ => {}
        }
        rest = &after[4 + len..];
    }
    let (Some(login), Some(password)) = (login, password) else {
        return Err(SaslError::Malformed("AMQPLAIN needs LOGIN and PASSWORD"));
    };
    let username = std::str::from_utf8(login)
        .map_err(|_| SaslError::Malformed("AMQPLAIN LOGIN is not UTF-8"))?;
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn longstr_entry(key: &str, value: &[u8]) -> Vec<u8> {
        let mut out = vec![key.len() as u8];
        out.extend_from_slice(key.as_bytes());
        out.push(b'S');
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn plain() {
        let c = credentials("PLAIN", b"\0guest\0pa\0ss").unwrap();
        assert_eq!(c.username, "guest");
        assert_eq!(c.password, b"pa\0ss");
        assert_eq!(credentials("PLAIN", b"authz\0u\0p").unwrap().username, "u");
        assert!(credentials("PLAIN", b"guest").is_err());
    }

    #[test]
    fn amqplain() {
        let mut response = longstr_entry("LOGIN", b"guest");
        response.extend(longstr_entry("PASSWORD", b"secret"));
        let c = credentials("AMQPLAIN", &response).unwrap();
        assert_eq!(c.username, "guest");
        assert_eq!(c.password, b"secret");
    }

    #[test]
    fn amqplain_rejects_truncation_anywhere() {
        let mut response = longstr_entry("LOGIN", b"guest");
        response.extend(longstr_entry("PASSWORD", b"secret"));
        for len in 0..response.len() {
            assert!(credentials("AMQPLAIN", &response[..len]).is_err(), "{len}");
        }
        let mut huge = vec![5];
        huge.extend_from_slice(b"LOGINS\xff\xff\xff\xff");
        assert!(credentials("AMQPLAIN", &huge).is_err());
    }

    #[test]
    fn unknown_mechanism_text() {
        assert_eq!(
            credentials("FOO", b"").unwrap_err().to_string(),
            "unknown authentication mechanism 'FOO'"
        );
    }
}
