//! The broker model: users, virtual hosts and permissions, changed through the definitions
//! service at boot and at run time; exchange routing and the queue state machine (wired to
//! channels with messaging).

pub mod dead_letter;
pub mod definitions;
mod equivalence;
pub mod error;
pub mod exchange;
pub mod message;
pub mod persist;
pub mod publish;
pub mod queue;
pub mod queue_args;
pub mod recovery;
pub mod registry;
pub mod settings;
pub mod token;
mod users;
mod vhost;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use definitions::{Applied, DefinitionChange, DefinitionError, Revocation};
pub use users::{is_loopback, AuthError, User};
pub use vhost::{Permission, TopicPermission, VHost};

use definitions::Access;
use registry::Registry;

use crate::config::Config;
use crate::store::Durability;

/// The default virtual host, created in a store that has no vhost or no user.
pub const DEFAULT_VHOST: &str = "/";
/// The default user (password `guest`), created with `/` and full permissions on it.
pub const DEFAULT_USER: &str = "guest";

/// Users and vhosts, each vhost with its registry of exchanges and queues.
///
/// The model sits behind a `std::sync::RwLock`: readers are the connection-open path (login,
/// vhost open), a map lookup and a clone each, never across an `.await`; writers are
/// [`Broker::apply`], serialised by `changing` so that validation, the store write and the
/// update see one state. Unlike a vhost's routing topology (an `ArcSwap` snapshot, read on
/// every publish), this is read only when a connection opens, so a brief lock is enough.
#[derive(Debug)]
pub struct Broker {
    access: RwLock<Access>,
    /// Held across a change's store write (an `.await`), so it is tokio's.
    changing: tokio::sync::Mutex<()>,
    persistence: Option<Arc<persist::Persistence>>,
    loopback_users: Vec<String>,
}

/// What `connection.open` gets: the vhost as it is now, its registry, and the signal that
/// tells the connection to close when the vhost or its user is deleted.
#[derive(Debug)]
pub struct OpenVhost {
    pub vhost: Arc<VHost>,
    pub registry: Arc<Registry>,
    pub revoked: Revocation,
}

impl Broker {
    /// A broker that keeps everything in memory (unit tests).
    pub fn from_config(config: &Config) -> Result<Broker, BrokerError> {
        Broker::build(config, None)
    }

    /// A broker over a store: users, vhosts and permissions saved by earlier runs come back,
    /// then the configuration's are applied (and win), each saved.
    /// [`recovery::recover`] then brings back exchanges, queues and bindings.
    pub fn with_persistence(
        config: &Config,
        persistence: Arc<persist::Persistence>,
    ) -> Result<Broker, BrokerError> {
        Broker::build(config, Some(persistence))
    }

    /// Boot: the stored records (already durable, so applied to memory only; one that no
    /// longer validates is skipped), RabbitMQ's defaults if the store needs them, then the
    /// configuration, each through the same validation and record as a run-time change.
    fn build(
        config: &Config,
        persistence: Option<Arc<persist::Persistence>>,
    ) -> Result<Broker, BrokerError> {
        let stored = match &persistence {
            Some(p) => recovery::load_access(p.store().as_ref())
                .map_err(|e| BrokerError::Store(e.to_string()))?,
            None => recovery::StoredAccess::default(),
        };
        let mut access = Access::default();
        let needs_defaults = stored.needs_defaults();
        for change in stored.changes {
            match access.plan(&change, None) {
                Ok(_) => drop(access.commit(change, persistence.as_ref())),
                Err(e) => tracing::warn!(error = %e, "skipping a stored definition"),
            }
        }
        let mut changes = Vec::new();
        if needs_defaults {
            changes.extend(default_changes(&access));
        }
        changes.extend(config_changes(config));
        for change in changes {
            let plan = access.plan(&change, None)?;
            if let Some(p) = &persistence {
                p.store()
                    .commit(plan.batch, Durability::Sync)
                    .map_err(|e| BrokerError::Store(e.to_string()))?;
            }
            drop(access.commit(change, persistence.as_ref()));
        }
        Ok(Broker {
            access: RwLock::new(access),
            changing: tokio::sync::Mutex::new(()),
            persistence,
            loopback_users: config.loopback_users.clone(),
        })
    }

    /// The definitions service: validates `change`, writes its record (synced), applies it,
    /// then closes what it deleted (see [`Revocation`]) and, for a vhost, deletes its queues.
    /// An error leaves the model and the store unchanged.
    pub async fn apply(&self, change: DefinitionChange) -> Result<Applied, DefinitionError> {
        let _serial = self.changing.lock().await;
        let stored = match (&change, &self.persistence) {
            (DefinitionChange::DeleteVhost { name }, Some(p)) if self.registry(name).is_some() => {
                Some(definitions::scan_topology(Arc::clone(p.store()), name.clone()).await?)
            }
            _ => None,
        };
        let plan = self.read().plan(&change, stored)?;
        if let (Some(p), false) = (&self.persistence, plan.batch.is_empty()) {
            p.submit(plan.batch, Durability::Sync)
                .await
                .map_err(|e| DefinitionError::Store(e.to_string()))?;
        }
        let removed = self.write().commit(change, self.persistence.as_ref());
        removed.finish(plan.queues).await;
        Ok(plan.applied)
    }

    /// Checks a login: the password, then RabbitMQ's loopback-only rule for `peer`.
    pub fn authenticate(
        &self,
        username: &str,
        password: &[u8],
        peer: IpAddr,
    ) -> Result<User, AuthError> {
        let user = self
            .read()
            .users
            .get(username)
            .map(|e| e.user.clone())
            .filter(|u| u.password_matches(password))
            .ok_or_else(|| AuthError::InvalidCredentials(username.to_owned()))?;
        users::check_loopback(&self.loopback_users, username, peer)?;
        Ok(user)
    }

    /// Every vhost's registry.
    pub fn registries(&self) -> Vec<Arc<Registry>> {
        let access = self.read();
        access.vhosts.values().map(|e| e.registry.clone()).collect()
    }

    /// The exchanges and queues of vhost `name`.
    pub fn registry(&self, name: &str) -> Option<Arc<Registry>> {
        self.read().vhosts.get(name).map(|e| e.registry.clone())
    }

    /// The vhost `name` if `user` may use it (has any permission on it).
    pub fn open_vhost(&self, user: &str, name: &str) -> Result<OpenVhost, VhostAccessError> {
        let access = self.read();
        let entry = access
            .vhosts
            .get(name)
            .ok_or_else(|| VhostAccessError::NotFound(name.to_owned()))?;
        let refused = || VhostAccessError::Refused {
            vhost: name.to_owned(),
            user: user.to_owned(),
        };
        if entry.vhost.permission(user).is_none() {
            return Err(refused());
        }
        let revoked = access.revocation(user, name).ok_or_else(refused)?;
        Ok(OpenVhost {
            vhost: entry.vhost.clone(),
            registry: entry.registry.clone(),
            revoked,
        })
    }

    // A panic under the lock cannot leave a map half-updated (each change is one insert or
    // remove), so a poisoned lock is used as is.
    fn read(&self) -> RwLockReadGuard<'_, Access> {
        self.access.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Access> {
        self.access.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// RabbitMQ's default data: guest (administrator), `/`, guest's full permissions on it; what
/// already exists is kept.
fn default_changes(access: &Access) -> Vec<DefinitionChange> {
    let mut changes = Vec::new();
    if !access.users.contains_key(DEFAULT_USER) {
        changes.push(DefinitionChange::PutUser {
            name: DEFAULT_USER.to_owned(),
            password: DEFAULT_USER.to_owned(),
            tags: vec!["administrator".to_owned()],
        });
    }
    let has_permission = access
        .vhosts
        .get(DEFAULT_VHOST)
        .is_some_and(|e| e.vhost.permission(DEFAULT_USER).is_some());
    changes.push(DefinitionChange::PutVhost {
        name: DEFAULT_VHOST.to_owned(),
    });
    if !has_permission {
        changes.push(DefinitionChange::SetPermission {
            vhost: DEFAULT_VHOST.to_owned(),
            user: DEFAULT_USER.to_owned(),
            permission: Permission::full(),
        });
    }
    changes
}

/// The configuration's users, vhosts and permissions, in that order.
fn config_changes(config: &Config) -> Vec<DefinitionChange> {
    let users = config.users.iter().map(|u| DefinitionChange::PutUser {
        name: u.name.clone(),
        password: u.password.clone(),
        tags: u.tags.clone(),
    });
    let vhosts = config.vhosts.iter().map(|v| DefinitionChange::PutVhost {
        name: v.name.clone(),
    });
    let permissions = config
        .permissions
        .iter()
        .map(|p| DefinitionChange::SetPermission {
            vhost: p.vhost.clone(),
            user: p.user.clone(),
            permission: Permission {
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            },
        });
    users.chain(vhosts).chain(permissions).collect()
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

impl From<DefinitionError> for BrokerError {
    fn from(e: DefinitionError) -> BrokerError {
        match e {
            DefinitionError::NoSuchUser(u) => BrokerError::UnknownUser(u),
            DefinitionError::NoSuchVhost(v) => BrokerError::UnknownVhost(v),
            DefinitionError::Store(e) => BrokerError::Store(e),
        }
    }
}

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
        assert_eq!(
            b.open_vhost("app", "staging").unwrap().vhost.name,
            "staging"
        );
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
