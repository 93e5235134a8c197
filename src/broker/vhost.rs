//! Virtual hosts and the permissions users hold on them.

use std::collections::HashMap;

/// RabbitMQ's permission triple: regular expressions over resource names. Stored as written;
/// checking them per resource comes with exchanges and queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl Permission {
    pub fn full() -> Permission {
        Permission {
            configure: ".*".to_owned(),
            write: ".*".to_owned(),
            read: ".*".to_owned(),
        }
    }
}

/// RabbitMQ's topic permission: on topic exchange `exchange`, which routing keys a user may
/// publish with (`write`) and bind with (`read`). Stored and persisted; not yet enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermission {
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// A virtual host. Holding a permission entry, whatever its patterns, is what lets a user
/// open the vhost.
#[derive(Debug, Clone)]
pub struct VHost {
    pub name: String,
    permissions: HashMap<String, Permission>,
    /// Keyed by (user, exchange), as RabbitMQ keys them.
    topic_permissions: HashMap<(String, String), TopicPermission>,
}

impl VHost {
    pub fn new(name: &str) -> VHost {
        VHost {
            name: name.to_owned(),
            permissions: HashMap::new(),
            topic_permissions: HashMap::new(),
        }
    }

    pub fn set_permission(&mut self, user: &str, permission: Permission) {
        self.permissions.insert(user.to_owned(), permission);
    }

    pub fn clear_permission(&mut self, user: &str) -> Option<Permission> {
        self.permissions.remove(user)
    }

    pub fn permissions(&self) -> impl Iterator<Item = (&String, &Permission)> {
        self.permissions.iter()
    }

    pub fn permission(&self, user: &str) -> Option<&Permission> {
        self.permissions.get(user)
    }

    pub fn set_topic_permission(&mut self, user: &str, permission: TopicPermission) {
        self.topic_permissions
            .insert((user.to_owned(), permission.exchange.clone()), permission);
    }

    /// Removes `user`'s topic permission on `exchange`, or all of them when `None`.
    pub fn clear_topic_permissions(&mut self, user: &str, exchange: Option<&str>) {
        self.topic_permissions
            .retain(|(u, x), _| u != user || exchange.is_some_and(|e| e != x));
    }

    /// (user, permission) pairs.
    pub fn topic_permissions(&self) -> impl Iterator<Item = (&String, &TopicPermission)> {
        self.topic_permissions.iter().map(|((u, _), p)| (u, p))
    }

    pub fn topic_permission(&self, user: &str, exchange: &str) -> Option<&TopicPermission> {
        self.topic_permissions
            .get(&(user.to_owned(), exchange.to_owned()))
    }

    /// Forgets every permission and topic permission of `user` (the user is deleted).
    pub fn forget_user(&mut self, user: &str) {
        self.permissions.remove(user);
        self.clear_topic_permissions(user, None);
    }
}
