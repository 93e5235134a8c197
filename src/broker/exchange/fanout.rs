//! The fanout exchange: every binding selects every message, whatever its key.

use std::sync::Arc;

use crate::protocol::FieldTable;

/// The bindings in a persistent vector of shared entries: copying the router (the routing
/// snapshot does on every definition change) costs O(1), a bind O(1) amortised.
#[derive(Debug, Clone)]
pub struct FanoutRouter<D> {
    bindings: imbl::Vector<Arc<(D, Box<str>, FieldTable)>>,
}

impl<D> Default for FanoutRouter<D> {
    fn default() -> Self {
        Self {
            bindings: imbl::Vector::new(),
        }
    }
}

impl<D: Clone + PartialEq> FanoutRouter<D> {
    pub fn bind(&mut self, dest: D, key: &str, args: &FieldTable) -> bool {
        if self.position(&dest, key, args).is_some() {
            return false;
        }
        self.bindings
            .push_back(Arc::new((dest, key.into(), args.clone())));
        true
    }

    pub fn unbind(&mut self, dest: &D, key: &str, args: &FieldTable) -> bool {
        match self.position(dest, key, args) {
            Some(at) => {
                self.bindings.remove(at);
                true
            }
            None => false,
        }
    }

    pub fn unbind_all(&mut self, dest: &D) -> usize {
        let before = self.bindings.len();
        self.bindings.retain(|b| b.0 != *dest);
        before - self.bindings.len()
    }

    pub fn leads_to(&self, dest: &D) -> bool {
        self.bindings.iter().any(|b| b.0 == *dest)
    }

    pub fn route(&self, out: &mut Vec<D>) {
        out.extend(self.bindings.iter().map(|b| b.0.clone()));
    }

    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    fn position(&self, dest: &D, key: &str, args: &FieldTable) -> Option<usize> {
        self.bindings
            .iter()
            .position(|b| b.0 == *dest && &*b.1 == key && b.2 == *args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_gets_every_message() {
        let mut r = FanoutRouter::default();
        let none = FieldTable::default();
        assert!(r.bind("q1", "", &none));
        assert!(r.bind("q2", "ignored", &none));
        assert!(!r.bind("q2", "ignored", &none));
        let mut out = Vec::new();
        r.route(&mut out);
        assert_eq!(out, ["q1", "q2"]);
        assert!(r.unbind(&"q1", "", &none));
        assert_eq!(r.unbind_all(&"q2"), 1);
        assert!(r.is_empty());
    }
}
