//! The headers exchange: a binding selects a message by its `headers` table, not its routing
//! key. The binding's `x-match` says how: `all` (the default) or `any` of the binding's other
//! arguments must equal the message's header of the same name; `all-with-x` and `any-with-x`
//! also compare arguments whose names start with `x-`, which the plain modes skip. A binding
//! argument of type void only asks that the header be present. Values compare as RabbitMQ's
//! Erlang `==` does: numbers by value across integer and float types, strings by bytes whether
//! long string or byte array, nested arrays and tables exactly.

use std::fmt;
use std::sync::Arc;

use crate::protocol::{FieldTable, FieldValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

#[derive(Debug, Clone)]
struct Binding<D> {
    dest: D,
    key: Box<str>,
    args: FieldTable,
    mode: Mode,
    /// The arguments that take part in matching, after `x-match` (and `x-` ones unless a
    /// `-with-x` mode) are left out: computed once at bind time, not per message.
    pattern: Vec<(String, FieldValue)>,
}

/// The bindings in a persistent vector of shared entries: copying the router (the routing
/// snapshot does on every definition change) costs O(1), a bind O(1) amortised.
#[derive(Debug, Clone)]
pub struct HeadersRouter<D> {
    bindings: imbl::Vector<Arc<Binding<D>>>,
}

impl<D> Default for HeadersRouter<D> {
    fn default() -> Self {
        Self {
            bindings: imbl::Vector::new(),
        }
    }
}

/// A binding whose `x-match` RabbitMQ would refuse: the channel answers 406 PRECONDITION_FAILED
/// with this text.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadersBindingError {
    UnknownMatchMode(String),
    MatchModeNotAString(&'static str),
}

impl fmt::Display for HeadersBindingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMatchMode(value) => write!(
                f,
                "Invalid x-match field value <<\"{value}\">>; expected all, any, all-with-x, or any-with-x"
            ),
            Self::MatchModeNotAString(kind) => {
                write!(f, "Invalid x-match field type {kind}; expected longstr")
            }
        }
    }
}

impl std::error::Error for HeadersBindingError {}

/// Reads `x-match`; an absent one means `all`.
fn match_mode(args: &FieldTable) -> Result<(Mode, bool), HeadersBindingError> {
    match args.get("x-match") {
        None => Ok((Mode::All, false)),
        Some(FieldValue::LongStr(value)) => match &value[..] {
            b"all" => Ok((Mode::All, false)),
            b"any" => Ok((Mode::Any, false)),
            b"all-with-x" => Ok((Mode::All, true)),
            b"any-with-x" => Ok((Mode::Any, true)),
            other => Err(HeadersBindingError::UnknownMatchMode(
                String::from_utf8_lossy(other).into_owned(),
            )),
        },
        Some(other) => Err(HeadersBindingError::MatchModeNotAString(other.type_name())),
    }
}

pub(super) fn validate(args: &FieldTable) -> Result<(), HeadersBindingError> {
    match_mode(args).map(|_| ())
}

enum Number {
    Int(i128),
    Float(f64),
}

fn as_number(value: &FieldValue) -> Option<Number> {
    if let Some(v) = value.integer() {
        return Some(Number::Int(v.into()));
    }
    Some(match value {
        FieldValue::Timestamp(v) => Number::Int((*v).into()),
        FieldValue::F32(v) => Number::Float((*v).into()),
        FieldValue::F64(v) => Number::Float(*v),
        _ => return None,
    })
}

/// Erlang's `==` on the values RabbitMQ decodes field values into.
fn erlang_eq(pattern: &FieldValue, data: &FieldValue) -> bool {
    if let (Some(a), Some(b)) = (as_number(pattern), as_number(data)) {
        #[allow(clippy::cast_precision_loss, clippy::float_cmp)]
        return match (a, b) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (Number::Int(a), Number::Float(b)) | (Number::Float(b), Number::Int(a)) => {
                a as f64 == b
            }
            (Number::Float(a), Number::Float(b)) => a == b,
        };
    }
    match (pattern, data) {
        (
            FieldValue::LongStr(a) | FieldValue::ByteArray(a),
            FieldValue::LongStr(b) | FieldValue::ByteArray(b),
        ) => a == b,
        _ => pattern.eq_as_parsed(data),
    }
}

impl<D: Clone + PartialEq> HeadersRouter<D> {
    /// Adds a binding. Its `x-match` must have passed `validate`; an invalid one is treated as
    /// `all`, as RabbitMQ does for bindings it accepted before it validated.
    pub fn bind(&mut self, dest: D, key: &str, args: &FieldTable) -> bool {
        if self.position(&dest, key, args).is_some() {
            return false;
        }
        let (mode, with_x) = match_mode(args).unwrap_or((Mode::All, false));
        let pattern = args
            .iter()
            .filter(|(name, _)| {
                let name = name.as_str();
                name != "x-match" && (with_x || !name.starts_with("x-"))
            })
            .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
            .collect();
        self.bindings.push_back(Arc::new(Binding {
            dest,
            key: key.into(),
            args: args.clone(),
            mode,
            pattern,
        }));
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
        self.bindings.retain(|b| b.dest != *dest);
        before - self.bindings.len()
    }

    pub fn leads_to(&self, dest: &D) -> bool {
        self.bindings.iter().any(|b| b.dest == *dest)
    }

    pub fn route(&self, headers: Option<&FieldTable>, out: &mut Vec<D>) {
        let empty = FieldTable::default();
        let headers = headers.unwrap_or(&empty);
        for binding in &self.bindings {
            let mut pairs = binding.pattern.iter().map(|(name, want)| {
                headers
                    .get(name)
                    .is_some_and(|have| matches!(want, FieldValue::Void) || erlang_eq(want, have))
            });
            let selected = match binding.mode {
                Mode::All => pairs.all(|matched| matched),
                Mode::Any => pairs.any(|matched| matched),
            };
            if selected {
                out.push(binding.dest.clone());
            }
        }
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
            .position(|b| b.dest == *dest && &*b.key == key && b.args == *args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn table(pairs: &[(&str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(*k, v.clone());
        }
        t
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn selects(binding: &FieldTable, headers: Option<&FieldTable>) -> bool {
        let mut r = HeadersRouter::default();
        r.bind(1, "", binding);
        let mut out = Vec::new();
        r.route(headers, &mut out);
        out == [1]
    }

    #[test]
    fn all_and_any() {
        let all = table(&[
            ("x-match", s("all")),
            ("a", s("1")),
            ("b", FieldValue::I32(2)),
        ]);
        let any = table(&[
            ("x-match", s("any")),
            ("a", s("1")),
            ("b", FieldValue::I32(2)),
        ]);
        let both = table(&[("a", s("1")), ("b", FieldValue::I32(2)), ("c", s("x"))]);
        let one = table(&[("a", s("1"))]);
        let wrong = table(&[("a", s("2")), ("b", FieldValue::I32(3))]);
        assert!(selects(&all, Some(&both)));
        assert!(!selects(&all, Some(&one)));
        assert!(selects(&any, Some(&one)));
        assert!(!selects(&any, Some(&wrong)));
        assert!(!selects(&any, None));
    }

    #[test]
    fn default_mode_is_all_and_empty_all_matches_everything() {
        let plain = table(&[("a", s("1"))]);
        assert!(selects(&plain, Some(&table(&[("a", s("1"))]))));
        assert!(!selects(&plain, Some(&table(&[("a", s("2"))]))));
        assert!(selects(&table(&[("x-match", s("all"))]), None));
        assert!(!selects(&table(&[("x-match", s("any"))]), None));
    }

    #[test]
    fn x_arguments_count_only_in_with_x_modes() {
        let plain = table(&[("x-match", s("all")), ("x-tenant", s("t1"))]);
        let with_x = table(&[("x-match", s("all-with-x")), ("x-tenant", s("t1"))]);
        let other = table(&[("x-tenant", s("t2"))]);
        assert!(
            selects(&plain, Some(&other)),
            "x- arguments are skipped by all"
        );
        assert!(!selects(&with_x, Some(&other)));
        assert!(selects(&with_x, Some(&table(&[("x-tenant", s("t1"))]))));
        let any_with_x = table(&[("x-match", s("any-with-x")), ("x-a", s("1")), ("b", s("2"))]);
        assert!(selects(&any_with_x, Some(&table(&[("x-a", s("1"))]))));
    }

    #[test]
    fn void_means_present_and_values_compare_like_erlang() {
        let present = table(&[("a", FieldValue::Void)]);
        assert!(selects(
            &present,
            Some(&table(&[("a", FieldValue::I64(9))]))
        ));
        assert!(!selects(
            &present,
            Some(&table(&[("b", FieldValue::I64(9))]))
        ));
        let one = table(&[("n", FieldValue::I8(1))]);
        assert!(selects(&one, Some(&table(&[("n", FieldValue::I64(1))]))));
        assert!(selects(&one, Some(&table(&[("n", FieldValue::F64(1.0))]))));
        assert!(!selects(&one, Some(&table(&[("n", s("1"))]))));
        let bytes = table(&[("k", FieldValue::ByteArray(Bytes::from_static(b"v")))]);
        assert!(selects(&bytes, Some(&table(&[("k", s("v"))]))));
    }

    /// `L` is RabbitMQ's `long` like `l` (checked against 3.10.8 with a binding written as `L`).
    #[test]
    fn upper_l_compares_as_the_integer_it_is() {
        let five = table(&[("n", FieldValue::I64L(5))]);
        for data in [FieldValue::I32(5), FieldValue::I64(5), FieldValue::U8(5)] {
            assert!(selects(&five, Some(&table(&[("n", data)]))));
        }
        assert!(!selects(&five, Some(&table(&[("n", FieldValue::I64L(6))]))));
        let in_array = table(&[("a", FieldValue::Array(vec![FieldValue::I64L(1)]))]);
        let as_l = table(&[("a", FieldValue::Array(vec![FieldValue::I64(1)]))]);
        assert!(selects(&in_array, Some(&as_l)));
    }

    #[test]
    fn x_match_is_validated_with_rabbitmq_texts() {
        let bad = table(&[("x-match", s("some"))]);
        let err = validate(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, or any-with-x"
        );
        let wrong_type = table(&[("x-match", FieldValue::I32(1))]);
        assert_eq!(
            validate(&wrong_type).unwrap_err().to_string(),
            "Invalid x-match field type signedint; expected longstr"
        );
        assert!(validate(&table(&[("x-match", s("any-with-x"))])).is_ok());
        assert!(validate(&FieldTable::default()).is_ok());
    }

    #[test]
    fn bindings_are_identified_by_destination_key_and_arguments() {
        let mut r = HeadersRouter::default();
        let a = table(&[("a", s("1"))]);
        assert!(r.bind(1, "k", &a));
        assert!(!r.bind(1, "k", &a));
        assert!(r.bind(1, "other", &a));
        assert!(r.unbind(&1, "k", &a));
        assert_eq!(r.len(), 1);
        assert_eq!(r.unbind_all(&1), 1);
        assert!(r.is_empty());
    }
}
