//! The topic exchange: binding keys are dot-separated words where `*` matches exactly one word
//! and `#` zero or more. Bindings live in a trie of words, so a publish walks only the branches
//! its key can match, whatever the number of bindings (100k bindings cost about what 10 do).

use std::sync::Arc;

use crate::protocol::FieldTable;

/// Bindings indexed by a trie of binding-key words.
///
/// Invariants: every node other than the root has a binding at or below it (empty branches are
/// pruned on unbind), and `len` is the number of `(destination, key, args)` bindings stored.
///
/// The trie is persistent (children in a persistent map, shared nodes behind `Arc`): the
/// vhost's routing snapshot is copied on every definition change, and a copy costs O(1), a bind
/// or unbind the nodes on its path.
#[derive(Debug, Clone)]
pub struct TopicRouter<D> {
    root: Node<D>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Node<D> {
    words: imbl::HashMap<Arc<str>, Node<D>>,
    star: Option<Arc<Node<D>>>,
    hash: Option<Arc<Node<D>>>,
    /// Bindings whose key ends here.
    bindings: Arc<Vec<(D, FieldTable)>>,
}

impl<D> Default for Node<D> {
    fn default() -> Self {
        Self {
            words: imbl::HashMap::new(),
            star: None,
            hash: None,
            bindings: Arc::new(Vec::new()),
        }
    }
}

impl<D: Clone> Node<D> {
    fn is_empty(&self) -> bool {
        self.bindings.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }

    fn child_mut(&mut self, word: &str) -> &mut Node<D> {
        match word {
            "*" => Arc::make_mut(self.star.get_or_insert_with(Default::default)),
            "#" => Arc::make_mut(self.hash.get_or_insert_with(Default::default)),
            _ => self.words.entry(word.into()).or_default(),
        }
    }
}

impl<D> Default for TopicRouter<D> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

/// Splits a key into words as RabbitMQ does: the empty key has no words, and every dot
/// separates two words even when they are empty (`"a."` is `["a", ""]`).
fn words(key: &str) -> impl Iterator<Item = &str> {
    let mut split = key.split('.');
    if key.is_empty() {
        split.next();
    }
    split
}

impl<D: Clone + PartialEq> TopicRouter<D> {
    pub fn bind(&mut self, dest: D, key: &str, args: &FieldTable) -> bool {
        if find(&self.root, key)
            .is_some_and(|n| n.bindings.iter().any(|(d, a)| *d == dest && a == args))
        {
            return false;
        }
        let node = words(key).fold(&mut self.root, |node, word| node.child_mut(word));
        Arc::make_mut(&mut node.bindings).push((dest, args.clone()));
        self.len += 1;
        true
    }

    pub fn unbind(&mut self, dest: &D, key: &str, args: &FieldTable) -> bool {
        let bound = find(&self.root, key)
            .is_some_and(|n| n.bindings.iter().any(|(d, a)| d == dest && a == args));
        if !bound {
            return false;
        }
        let path: Vec<&str> = words(key).collect();
        let removed = remove_at(&mut self.root, &path, &mut |bindings| match bindings
            .iter()
            .position(|(d, a)| d == dest && a == args)
        {
            Some(at) => {
                bindings.swap_remove(at);
                1
            }
            None => 0,
        });
        self.len -= removed;
        removed == 1
    }

    pub fn unbind_all(&mut self, dest: &D) -> usize {
        let removed = remove_everywhere(&mut self.root, dest);
        self.len -= removed;
        removed
    }

    pub fn leads_to(&self, dest: &D) -> bool {
        leads_to(&self.root, dest)
    }

    pub fn route(&self, routing_key: &str, out: &mut Vec<D>) {
        let key: Vec<&str> = words(routing_key).collect();
        let mut seen = Vec::new();
        walk(&self.root, &key, 0, out, &mut seen);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The node a binding key ends at, if the trie has it (read-only, so a refused bind or unbind
/// copies nothing).
fn find<'n, D>(root: &'n Node<D>, key: &str) -> Option<&'n Node<D>> {
    words(key).try_fold(root, |node, word| match word {
        "*" => node.star.as_deref(),
        "#" => node.hash.as_deref(),
        _ => node.words.get(word),
    })
}

/// Collects the bindings of every node that matches `key[at..]` starting from `node`.
///
/// A `#` node can be entered at many positions from many parents; `seen` records each
/// `(# node, position)` state once, so patterns such as `#.#.#` stay linear instead of
/// exponential and no binding is reported twice through different `#` splits. Every other state
/// has a single parent state, so it cannot repeat.
fn walk<D: Clone>(
    node: &Node<D>,
    key: &[&str],
    at: usize,
    out: &mut Vec<D>,
    seen: &mut Vec<(*const Node<D>, usize)>,
) {
    match key.get(at) {
        None => out.extend(node.bindings.iter().map(|(d, _)| d.clone())),
        Some(word) => {
            if let Some(child) = node.words.get(*word) {
                walk(child, key, at + 1, out, seen);
            }
            if let Some(star) = &node.star {
                walk(star, key, at + 1, out, seen);
            }
        }
    }
    if let Some(hash) = &node.hash {
        let id: *const Node<D> = &**hash;
        for from in at..=key.len() {
            if seen.contains(&(id, from)) {
                continue;
            }
            seen.push((id, from));
            walk(hash, key, from, out, seen);
        }
    }
}

/// Takes the matching bindings out of a node's list; returns how many it took.
type RemoveFn<'f, D> = dyn FnMut(&mut Vec<(D, FieldTable)>) -> usize + 'f;

/// Applies `remove` to the bindings at the end of `path` and prunes the branches left empty.
fn remove_at<D: Clone>(node: &mut Node<D>, path: &[&str], remove: &mut RemoveFn<'_, D>) -> usize {
    let Some((word, rest)) = path.split_first() else {
        return remove(Arc::make_mut(&mut node.bindings));
    };
    match *word {
        "*" => remove_in_slot(&mut node.star, rest, remove),
        "#" => remove_in_slot(&mut node.hash, rest, remove),
        _ => {
            let Some(child) = node.words.get_mut(*word) else {
                return 0;
            };
            let removed = remove_at(child, rest, remove);
            if child.is_empty() {
                node.words.remove(*word);
            }
            removed
        }
    }
}

fn remove_in_slot<D: Clone>(
    slot: &mut Option<Arc<Node<D>>>,
    rest: &[&str],
    remove: &mut RemoveFn<'_, D>,
) -> usize {
    let Some(child) = slot else {
        return 0;
    };
    let child = Arc::make_mut(child);
    let removed = remove_at(child, rest, remove);
    if child.is_empty() {
        *slot = None;
    }
    removed
}

/// Whether any binding at or below `node` leads to `dest`.
fn leads_to<D: PartialEq>(node: &Node<D>, dest: &D) -> bool {
    node.bindings.iter().any(|(d, _)| d == dest)
        || node.words.values().any(|child| leads_to(child, dest))
        || node.star.as_deref().is_some_and(|c| leads_to(c, dest))
        || node.hash.as_deref().is_some_and(|c| leads_to(c, dest))
}

/// Removes every binding to `dest`, copying only the branches that hold one.
fn remove_everywhere<D: Clone + PartialEq>(node: &mut Node<D>, dest: &D) -> usize {
    if !leads_to(node, dest) {
        return 0;
    }
    let mut removed = 0;
    if node.bindings.iter().any(|(d, _)| d == dest) {
        let bindings = Arc::make_mut(&mut node.bindings);
        let before = bindings.len();
        bindings.retain(|(d, _)| d != dest);
        removed += before - bindings.len();
    }
    let words: Vec<Arc<str>> = node
        .words
        .iter()
        .filter(|(_, child)| leads_to(child, dest))
        .map(|(word, _)| Arc::clone(word))
        .collect();
    for word in words {
        if let Some(child) = node.words.get_mut(&*word) {
            removed += remove_everywhere(child, dest);
            if child.is_empty() {
                node.words.remove(&*word);
            }
        }
    }
    for slot in [&mut node.star, &mut node.hash] {
        if let Some(child) = slot {
            if leads_to(child, dest) {
                let child = Arc::make_mut(child);
                removed += remove_everywhere(child, dest);
                if child.is_empty() {
                    *slot = None;
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn routed(r: &TopicRouter<usize>, key: &str) -> Vec<usize> {
        let mut out = Vec::new();
        r.route(key, &mut out);
        out.sort_unstable();
        out
    }

    /// The obvious recursive definition of a topic match, to check the trie against.
    fn naive_match(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| naive_match(rest, &key[skip..])),
            Some((&"*", rest)) => !key.is_empty() && naive_match(rest, &key[1..]),
            Some((word, rest)) => key.first() == Some(word) && naive_match(rest, &key[1..]),
        }
    }

    #[test]
    fn rabbitmq_topic_table() {
        // (binding key, routing key, matches) in the spirit of RabbitMQ's own topic tests.
        let table = [
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("#", "", true),
            ("#", "a.b.c", true),
            ("", "", true),
            ("", "a", false),
            ("*", "", false),
            ("*", "a", true),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("a.#", "b", false),
            ("#.c", "c", true),
            ("#.c", "a.b.c", true),
            ("#.c", "a.b.c.d", false),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.b.b.c", true),
            ("*.#", "", false),
            ("#.*", "a", true),
            ("#.#", "", true),
            ("a.*.#.d", "a.b.d", true),
            ("a.*.#.d", "a.d", false),
            ("a..b", "a..b", true),
            ("a.", "a.", true),
            ("a.", "a", false),
            ("a.*", "a.", true),
            ("*.*.*", "a.b", false),
            ("#.b.#", "a.b.c", true),
            ("#.b.#", "b", true),
        ];
        for (pattern, key, expected) in table {
            let mut r = TopicRouter::default();
            r.bind(1, pattern, &FieldTable::default());
            let got = routed(&r, key) == [1];
            assert_eq!(
                got, expected,
                "binding {pattern:?} with routing key {key:?}"
            );
        }
    }

    #[test]
    fn a_binding_matched_through_many_hash_splits_is_reported_once() {
        let mut r = TopicRouter::default();
        r.bind(7, "#.#.#.#", &FieldTable::default());
        assert_eq!(routed(&r, "a.b.c.d.e.f.g.h.i.j"), [7]);
    }

    #[test]
    fn unbind_prunes_and_keeps_others() {
        let mut r = TopicRouter::default();
        let none = FieldTable::default();
        assert!(r.bind(1, "a.*.c", &none));
        assert!(r.bind(2, "a.#", &none));
        assert!(!r.bind(2, "a.#", &none));
        assert!(r.bind(1, "a.#", &none));
        assert_eq!(r.len(), 3);
        assert!(r.unbind(&1, "a.*.c", &none));
        assert!(!r.unbind(&1, "a.*.c", &none));
        assert!(!r.unbind(&1, "x.y", &none));
        assert_eq!(routed(&r, "a.b.c"), [1, 2]);
        assert_eq!(r.unbind_all(&1), 1);
        assert_eq!(routed(&r, "a.b.c"), [2]);
        assert!(r.unbind(&2, "a.#", &none));
        assert!(r.is_empty());
        assert!(r.root.is_empty(), "empty branches are pruned");
    }

    fn word() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just(""), Just("*"), Just("#")]
    }

    proptest! {
        #[test]
        fn trie_agrees_with_the_naive_matcher(
            patterns in proptest::collection::vec(proptest::collection::vec(word(), 0..5), 1..8),
            key in proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("")], 0..6),
        ) {
            let mut r = TopicRouter::default();
            let patterns: Vec<String> = patterns.iter().map(|p| p.join(".")).collect();
            for (i, p) in patterns.iter().enumerate() {
                r.bind(i, p, &FieldTable::default());
            }
            let key = key.join(".");
            let key_words: Vec<&str> = words(&key).collect();
            let expected: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| naive_match(&words(p).collect::<Vec<_>>(), &key_words))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(routed(&r, &key), expected);
        }
    }
}
