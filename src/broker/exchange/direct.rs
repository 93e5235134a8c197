//! The direct exchange: a binding selects a message whose routing key equals its binding key.

use std::sync::Arc;

use crate::protocol::FieldTable;

/// Bindings indexed by binding key, so a publish costs one hash lookup whatever the count.
///
/// The index is a persistent map (structure shared between copies): the vhost's routing
/// snapshot is copied on every definition change, and a copy costs O(1), a bind O(log n).
#[derive(Debug, Clone)]
pub struct DirectRouter<D> {
    by_key: imbl::HashMap<Arc<str>, Arc<Vec<(D, FieldTable)>>>,
    len: usize,
}

impl<D> Default for DirectRouter<D> {
    fn default() -> Self {
        Self {
            by_key: imbl::HashMap::new(),
            len: 0,
        }
    }
}

impl<D: Clone + PartialEq> DirectRouter<D> {
    pub fn bind(&mut self, dest: D, key: &str, args: &FieldTable) -> bool {
        if let Some(entries) = self.by_key.get(key) {
            if entries.iter().any(|(d, a)| *d == dest && a == args) {
                return false;
            }
        }
        let entries = self.by_key.entry(key.into()).or_default();
        Arc::make_mut(entries).push((dest, args.clone()));
        self.len += 1;
        true
    }

    pub fn unbind(&mut self, dest: &D, key: &str, args: &FieldTable) -> bool {
        let Some(at) = self
            .by_key
            .get(key)
            .and_then(|entries| entries.iter().position(|(d, a)| d == dest && a == args))
        else {
            return false;
        };
        let Some(entries) = self.by_key.get_mut(key) else {
            return false;
        };
        let entries = Arc::make_mut(entries);
        entries.swap_remove(at);
        if entries.is_empty() {
            self.by_key.remove(key);
        }
        self.len -= 1;
        true
    }

    pub fn unbind_all(&mut self, dest: &D) -> usize {
        let keys: Vec<Arc<str>> = self
            .by_key
            .iter()
            .filter(|(_, entries)| entries.iter().any(|(d, _)| d == dest))
            .map(|(k, _)| Arc::clone(k))
            .collect();
        let before = self.len;
        for key in keys {
            let Some(entries) = self.by_key.get_mut(&*key) else {
                continue;
            };
            let entries = Arc::make_mut(entries);
            let had = entries.len();
            entries.retain(|(d, _)| d != dest);
            self.len -= had - entries.len();
            if entries.is_empty() {
                self.by_key.remove(&*key);
            }
        }
        before - self.len
    }

    pub fn leads_to(&self, dest: &D) -> bool {
        self.by_key
            .values()
            .any(|entries| entries.iter().any(|(d, _)| d == dest))
    }

    pub fn route(&self, routing_key: &str, out: &mut Vec<D>) {
        if let Some(entries) = self.by_key.get(routing_key) {
            out.extend(entries.iter().map(|(d, _)| d.clone()));
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_on_exact_key_only() {
        let mut r = DirectRouter::default();
        let none = FieldTable::default();
        assert!(r.bind("q1", "a", &none));
        assert!(r.bind("q2", "a", &none));
        assert!(r.bind("q3", "b", &none));
        assert!(
            !r.bind("q1", "a", &none),
            "the same binding twice is one binding"
        );
        let mut out = Vec::new();
        r.route("a", &mut out);
        out.sort_unstable();
        assert_eq!(out, ["q1", "q2"]);
        out.clear();
        r.route("a.b", &mut out);
        assert!(out.is_empty());
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn unbind_removes_one_binding() {
        let mut r = DirectRouter::default();
        let none = FieldTable::default();
        r.bind("q1", "a", &none);
        r.bind("q1", "b", &none);
        assert!(r.unbind(&"q1", "a", &none));
        assert!(!r.unbind(&"q1", "a", &none));
        let mut out = Vec::new();
        r.route("a", &mut out);
        assert!(out.is_empty());
        r.route("b", &mut out);
        assert_eq!(out, ["q1"]);
        assert_eq!(r.unbind_all(&"q1"), 1);
        assert!(r.is_empty());
    }
}
