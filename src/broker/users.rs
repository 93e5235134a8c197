//! Users and the login checks RabbitMQ applies to them.

use std::fmt;
use std::net::IpAddr;

/// A user. The password is kept as configured (the config file holds it in the clear);
/// hashing comes with user management.
#[derive(Clone)]
pub struct User {
    pub name: String,
    password: String,
    pub tags: Vec<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl User {
    pub fn new(name: &str, password: &str, tags: Vec<String>) -> User {
        User {
            name: name.to_owned(),
            password: password.to_owned(),
            tags,
        }
    }

    pub(super) fn password_matches(&self, candidate: &[u8]) -> bool {
        self.password.as_bytes() == candidate
    }
}

/// Why a login was refused. `Display` gives the reason RabbitMQ logs (the client only ever
/// sees the generic "Login was refused…" text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    InvalidCredentials(String),
    LoopbackOnly(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::InvalidCredentials(u) => write!(f, "user '{u}' - invalid credentials"),
            AuthError::LoopbackOnly(u) => write!(f, "user '{u}' can only connect via localhost"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Whether `ip` is a loopback address, including IPv4-mapped IPv6 ones (`::ffff:127.0.0.1`).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// RabbitMQ's `loopback_users`: the users listed may log in only from a loopback address.
pub fn check_loopback(
    loopback_users: &[String],
    username: &str,
    peer: IpAddr,
) -> Result<(), AuthError> {
    if loopback_users.iter().any(|u| u == username) && !is_loopback(peer) {
        return Err(AuthError::LoopbackOnly(username.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loopback_addresses() {
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "0.0.0.0", "::ffff:10.0.0.1", "fe80::1"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn loopback_users_only_from_loopback() {
        let users = vec!["guest".to_owned()];
        assert!(check_loopback(&users, "guest", "127.0.0.1".parse().unwrap()).is_ok());
        assert_eq!(
            check_loopback(&users, "guest", "10.1.1.1".parse().unwrap()),
            Err(AuthError::LoopbackOnly("guest".into()))
        );
        assert!(check_loopback(&users, "app", "10.1.1.1".parse().unwrap()).is_ok());
        assert!(check_loopback(&[], "guest", "10.1.1.1".parse().unwrap()).is_ok());
    }
}
