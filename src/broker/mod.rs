//! The broker model: users, virtual hosts and permissions built from the configuration at
//! boot; exchange routing and the queue state machine (wired to channels with messaging).

pub mod dead_letter;
mod equivalence;
pub mod exchange;
pub mod message;
pub mod persist;
pub mod queue;
pub mod queue_args;
pub mod recovery;
pub mod registry;
pub mod token;
mod users;
mod vhost;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

pub use users::{is_loopback, AuthError, User};
pub use vhost::{Permission, VHost};

use registry::Registry;

use crate::config::Config;

/// The default virtual host, always present.
pub const DEFAULT_VHOST: &str = "/";
/// The default user, always present (password `guest` unless the config replaces it).
pub const DEFAULT_USER: &str = "guest";

/// Users and vhosts. Invariant: every permission names an existing user and vhost, and `/` and
/// guest exist with guest holding `.*` permissions on `/` unless the config replaces them.
#[derive(Debug)]
pub struct Broker {
    users: HashMap<String, User>,
    vhosts: HashMap<String, VHost>,
    /// The exchanges and queues of each vhost, one entry per key of `vhosts`.
    registries: HashMap<String, Arc<Registry>>,
    loopback_users: Vec<String>,
}

impl Broker {
    /// A broker that keeps everything in memory (unit tests).
    pub fn from_config(config: &Config) -> Result<Broker, BrokerError> {
        Broker::build(config, None)
    }

    /// A broker over a store: users, vhosts and permissions saved by earlier runs come back,
    /// the configuration's are added (and win), and the result is saved.
    /// [`recovery::recover`] then brings back exchanges, queues and bindings.
    pub fn with_persistence(
        config: &Config,
        persistence: Arc<persist::Persistence>,
    ) -> Result<Broker, BrokerError> {
        Broker::build(config, Some(persistence))
    }

    fn build(
        config: &Config,
        persistence: Option<Arc<persist::Persistence>>,
    ) -> Result<Broker, BrokerError> {
        let stored = match &persistence {
            Some(p) => recovery::load_access(p.store().as_ref())
                .map_err(|e| BrokerError::Store(e.to_string()))?,
            None => recovery::StoredAccess::default(),
        };
        let mut users = HashMap::new();
        users.insert(
            DEFAULT_USER.to_owned(),
            User::new(DEFAULT_USER, DEFAULT_USER, vec!["administrator".to_owned()]),
        );
        for user in stored.users {
            users.insert(user.name.clone(), user);
        }
        for user in &config.users {
            users.insert(
                user.name.clone(),
                User::new(&user.name, &user.password, user.tags.clone()),
            );
        }
        let mut vhosts = HashMap::new();
        let mut default_vhost = VHost::new(DEFAULT_VHOST);
        default_vhost.set_permission(DEFAULT_USER, Permission::full());
        vhosts.insert(DEFAULT_VHOST.to_owned(), default_vhost);
        for name in stored.vhosts {
            vhosts
                .entry(name.clone())
                .or_insert_with(|| VHost::new(&name));
        }
        for (vhost, user, permission) in stored.permissions {
            if let (true, Some(v)) = (users.contains_key(&user), vhosts.get_mut(&vhost)) {
                v.set_permission(&user, permission);
            }
        }
        for vhost in &config.vhosts {
            vhosts
                .entry(vhost.name.clone())
                .or_insert_with(|| VHost::new(&vhost.name));
        }
        for p in &config.permissions {
            if !users.contains_key(&p.user) {
                return Err(BrokerError::UnknownUser(p.user.clone()));
            }
            let vhost = vhosts
                .get_mut(&p.vhost)
                .ok_or_else(|| BrokerError::UnknownVhost(p.vhost.clone()))?;
            vhost.set_permission(
                &p.user,
                Permission {
                    configure: p.configure.clone(),
                    write: p.write.clone(),
                    read: p.read.clone(),
                },
            );
        }
        if let Some(p) = &persistence {
            recovery::save_access(p, &users, &vhosts)
                .map_err(|e| BrokerError::Store(e.to_string()))?;
        }
        let registries = vhosts
            .keys()
            .map(|name| {
                let registry = Registry::with_persistence(name, persistence.clone());
                (name.clone(), registry)
            })
            .collect();
        Ok(Broker {
            users,
            vhosts,
            registries,
            loopback_users: config.loopback_users.clone(),
        })
    }

    /// Checks a login: the password, then RabbitMQ's loopback-only rule for `peer`.
    pub fn authenticate(
        &self,
        username: &str,
        password: &[u8],
        peer: IpAddr,
    ) -> Result<&User, AuthError> {
        let user = self
            .users
            .get(username)
            .filter(|u| u.password_matches(password))
            .ok_or_else(|| AuthError::InvalidCredentials(username.to_owned()))?;
        users::check_loopback(&self.loopback_users, username, peer)?;
        Ok(user)
    }

    /// Every vhost's registry.
    pub fn registries(&self) -> impl Iterator<Item = &Arc<Registry>> {
        self.registries.values()
    }

    /// The exchanges and queues of vhost `name`.
    pub fn registry(&self, name: &str) -> Option<Arc<Registry>> {
        self.registries.get(name).cloned()
    }

    /// The vhost `name` if `user` may use it (has any permission on it).
    pub fn open_vhost(&self, user: &str, name: &str) -> Result<&VHost, VhostAccessError> {
        let vhost = self
            .vhosts
            .get(name)
            .ok_or_else(|| VhostAccessError::NotFound(name.to_owned()))?;
        if vhost.permission(user).is_none() {
            return Err(VhostAccessError::Refused {
                vhost: name.to_owned(),
                user: user.to_owned(),
            });
        }
        Ok(vhost)
    }
}

/// An inconsistent configuration of users and vhosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    UnknownUser(String),
    UnknownVhost(String),
    /// The store could not be read or written while loading users and vhosts.
    Store(String),
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::UnknownUser(u) => write!(f, "permissions name unknown user '{u}'"),
            BrokerError::UnknownVhost(v) => write!(f, "permissions name unknown vhost '{v}'"),
            BrokerError::Store(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for BrokerError {}

/// Why `connection.open` may not use a vhost; `Display` gives RabbitMQ's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VhostAccessError {
    NotFound(String),
    Refused { vhost: String, user: String },
}

impl fmt::Display for VhostAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VhostAccessError::NotFound(v) => write!(f, "vhost {v} not found"),
            VhostAccessError::Refused { vhost, user } => {
                write!(f, "access to vhost '{vhost}' refused for user '{user}'")
            }
        }
    }
}

impl std::error::Error for VhostAccessError {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::{PermissionConfig, UserConfig, VhostConfig};

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn broker() -> Broker {
        let config = Config {
            users: vec![UserConfig {
                name: "app".into(),
                password: "pw".into(),
                tags: vec![],
            }],
            vhosts: vec![VhostConfig {
                name: "staging".into(),
            }],
            permissions: vec![PermissionConfig {
                user: "app".into(),
                vhost: "staging".into(),
                configure: "".into(),
                write: ".*".into(),
                read: ".*".into(),
            }],
            ..Config::default()
        };
        Broker::from_config(&config).unwrap()
    }

    #[test]
    fn guest_and_the_default_vhost_exist() {
        let b = broker();
        assert_eq!(
            b.authenticate("guest", b"guest", LOCAL).unwrap().name,
            "guest"
        );
        assert!(b.open_vhost("guest", "/").is_ok());
        assert_eq!(
            b.open_vhost("guest", "staging").unwrap_err().to_string(),
            "access to vhost 'staging' refused for user 'guest'"
        );
    }

    #[test]
    fn configured_users_and_vhosts() {
        let b = broker();
        assert!(b
            .authenticate("app", b"pw", "10.0.0.1".parse().unwrap())
            .is_ok());
        assert_eq!(
            b.authenticate("app", b"nope", LOCAL).unwrap_err(),
            AuthError::InvalidCredentials("app".into())
        );
        assert_eq!(
            b.authenticate("ghost", b"pw", LOCAL).unwrap_err(),
            AuthError::InvalidCredentials("ghost".into())
        );
        assert_eq!(b.open_vhost("app", "staging").unwrap().name, "staging");
        assert!(b.open_vhost("app", "/").is_err());
        assert_eq!(
            b.open_vhost("app", "nope").unwrap_err().to_string(),
            "vhost nope not found"
        );
    }

    #[test]
    fn guest_is_loopback_only() {
        let b = broker();
        assert_eq!(
            b.authenticate("guest", b"guest", "192.168.1.5".parse().unwrap())
                .unwrap_err()
                .to_string(),
            "user 'guest' can only connect via localhost"
        );
    }

    #[test]
    fn permissions_must_name_known_users_and_vhosts() {
        let config = Config {
            permissions: vec![PermissionConfig {
                user: "guest".into(),
                vhost: "nope".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            }],
            ..Config::default()
        };
        assert_eq!(
            Broker::from_config(&config).unwrap_err(),
            BrokerError::UnknownVhost("nope".into())
        );
    }
}
