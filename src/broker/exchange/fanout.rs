//! The fanout exchange: every binding selects every message, whatever its key.

use crate::protocol::FieldTable;

#[derive(Debug, Clone)]
pub struct FanoutRouter<D> {
    bindings: Vec<(D, Box<str>, FieldTable)>,
}

impl<D> Default for FanoutRouter<D> {
    fn default() -> Self {
        Self {
            bindings: Vec::new(),
        }
    }
}

impl<D: Clone + PartialEq> FanoutRouter<D> {
    pub fn bind(&mut self, dest: D, key: &str, args: &FieldTable) -> bool {
        if self.position(&dest, key, args).is_some() {
            return false;
        }
        self.bindings.push((dest, key.into(), args.clone()));
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
        self.bindings.retain(|(d, _, _)| d != dest);
        before - self.bindings.len()
    }

    pub fn route(&self, out: &mut Vec<D>) {
        out.extend(self.bindings.iter().map(|(d, _, _)| d.clone()));
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
            .position(|(d, k, a)| d == dest && &**k == key && a == args)
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
