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

/// A virtual host. Holding a permission entry, whatever its patterns, is what lets a user
/// open the vhost.
#[derive(Debug, Clone)]
pub struct VHost {
    pub name: String,
    permissions: HashMap<String, Permission>,
}

impl VHost {
    pub fn new(name: &str) -> VHost {
        VHost {
            name: name.to_owned(),
            permissions: HashMap::new(),
        }
    }

    pub fn set_permission(&mut self, user: &str, permission: Permission) {
        self.permissions.insert(user.to_owned(), permission);
    }

    pub fn permissions(&self) -> impl Iterator<Item = (&String, &Permission)> {
        self.permissions.iter()
    }

    pub fn permission(&self, user: &str) -> Option<&Permission> {
        self.permissions.get(user)
    }
}
