//! Just enough of Erlang's `~p` to reproduce the reply texts RabbitMQ builds with
//! `io_lib:format`: atoms, integers, floats, strings (char lists), binaries, lists and tuples,
//! and the one line-breaking rule we observed on RabbitMQ 3.10.8.
//!
//! Texts are built as bytes because RabbitMQ formats raw bytes (a queue name or an argument
//! value is a binary printed as Latin-1 characters, so its UTF-8 bytes pass through
//! unchanged); callers turn them into a `String` at the end.

use bytes::Bytes;

use crate::protocol::FieldValue;

/// An Erlang term as RabbitMQ's error texts contain them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Term {
    Atom(&'static str),
    /// An integer in decimal, sign included (kept as text: `string:to_integer` makes bignums).
    Int(String),
    Float(f64),
    /// A char list such as `"expected integer, got longstr"`; printed as a string when every
    /// byte is printable in Latin-1, otherwise as a list of integers (as `~p` does).
    Str(Bytes),
    Bin(Bytes),
    List(Vec<Term>),
    Tuple(Vec<Term>),
}

impl Term {
    pub(crate) fn int(value: impl std::fmt::Display) -> Term {
        Term::Int(value.to_string())
    }

    pub(crate) fn str(value: impl Into<Vec<u8>>) -> Term {
        Term::Str(Bytes::from(value.into()))
    }

    /// `{Tag, Value}`, the shape of most of RabbitMQ's validation errors.
    pub(crate) fn tagged(tag: &'static str, value: Term) -> Term {
        Term::Tuple(vec![Term::Atom(tag), value])
    }

    /// The term on one line, as `~p` prints it when it fits.
    pub(crate) fn flat(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_flat(&mut out);
        out
    }

    fn write_flat(&self, out: &mut Vec<u8>) {
        match self {
            Term::Atom(atom) => out.extend_from_slice(atom.as_bytes()),
            Term::Int(digits) => out.extend_from_slice(digits.as_bytes()),
            Term::Float(value) => out.extend_from_slice(float_text(*value).as_bytes()),
            Term::Str(chars) => {
                if chars.iter().all(|&c| is_printable_latin1(c)) {
                    write_quoted(out, chars);
                } else {
                    let items = chars.iter().map(|&c| Term::int(c)).collect();
                    Term::List(items).write_flat(out);
                }
            }
            Term::Bin(bytes) => {
                out.extend_from_slice(b"<<");
                if bytes.iter().all(|&c| is_printable_latin1(c)) {
                    write_quoted(out, bytes);
                } else {
                    let digits: Vec<String> = bytes.iter().map(u8::to_string).collect();
                    out.extend_from_slice(digits.join(",").as_bytes());
                }
                out.extend_from_slice(b">>");
            }
            Term::List(items) => write_seq(out, b'[', b']', items),
            Term::Tuple(items) => write_seq(out, b'{', b'}', items),
        }
    }

    /// The term as `~Wp` prints it starting at byte column `column` with line length `width`.
    ///
    /// Observed on RabbitMQ 3.10.8 (`invalid expiration` texts, `~p` so width 80): a term that
    /// would end past column `width - 2` breaks after a tuple's first element and the rest is
    /// indented to one past the opening brace: `{value_too_large,\n<spaces>99999999999999999999}`.
    /// Atoms, numbers and strings never break. Lists are not broken here (only a list of
    /// integers from a non-printable string could need it, far past any real text).
    pub(crate) fn pretty(&self, column: usize, width: usize) -> Vec<u8> {
        let flat = self.flat();
        let fits = column + flat.len() + 2 <= width;
        match self {
            Term::Tuple(items) if !fits && items.len() > 1 => {
                let mut out = vec![b'{'];
                let indent = column + 1;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b",\n");
                        out.extend(std::iter::repeat_n(b' ', indent));
                    }
                    out.extend_from_slice(&item.flat());
                }
                out.push(b'}');
                out
            }
            _ => flat,
        }
    }
}

fn write_seq(out: &mut Vec<u8>, open: u8, close: u8, items: &[Term]) {
    out.push(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write_flat(out);
    }
    out.push(close);
}

/// `io_lib:printable_latin1_list/1`: what `~p` prints as a string rather than a list.
fn is_printable_latin1(c: u8) -> bool {
    matches!(c, 0x20..=0x7e | 0xa0..=0xff | b'\n' | b'\r' | b'\t' | 0x0b | 0x08 | 0x0c | 0x1b)
}

fn write_quoted(out: &mut Vec<u8>, chars: &[u8]) {
    out.push(b'"');
    for &c in chars {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x0b => out.extend_from_slice(b"\\v"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x1b => out.extend_from_slice(b"\\e"),
            other => out.push(other),
        }
    }
    out.push(b'"');
}

/// Erlang's shortest float text (`float_to_list(F, [short])`): the shorter of the plain and
/// the scientific form of the shortest round-trip digits, the plain one on a tie
/// (`10.0`, `10.5`, `1.0e3`, `1.0e-5`).
fn float_text(value: f64) -> String {
    if !value.is_finite() {
        // Erlang has no such floats; RabbitMQ's parser would not produce them.
        return format!("{value}");
    }
    let plain = {
        let text = format!("{value}");
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    };
    let scientific = {
        // Rust's `{:e}` gives the shortest digits: `1e3`, `1.5e-7`.
        let text = format!("{value:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) if mantissa.contains('.') => {
                format!("{mantissa}e{exponent}")
            }
            Some((mantissa, exponent)) => format!("{mantissa}.0e{exponent}"),
            None => text,
        }
    };
    if scientific.len() < plain.len() {
        scientific
    } else {
        plain
    }
}

/// A field value's integer when its type is in RabbitMQ's integer class
/// (`?INTEGER_ARG_TYPES`: byte, short, signedint, long and their unsigned forms).
pub(crate) fn integer(value: &FieldValue) -> Option<i64> {
    value.integer()
}

/// The Erlang value RabbitMQ's parser makes of a field (the `Value` of `{Type, Value}`):
/// what `~p` prints and what `=:=` compares in the redeclare check.
pub(crate) fn value_term(value: &FieldValue) -> Term {
    match value {
        FieldValue::Bool(true) => Term::Atom("true"),
        FieldValue::Bool(false) => Term::Atom("false"),
        FieldValue::F32(v) => Term::Float(f64::from(*v)),
        FieldValue::F64(v) => Term::Float(*v),
        FieldValue::Decimal { scale, value } => {
            Term::Tuple(vec![Term::int(scale), Term::int(value)])
        }
        FieldValue::LongStr(bytes) | FieldValue::ByteArray(bytes) => Term::Bin(bytes.clone()),
        FieldValue::Timestamp(v) => Term::int(v),
        FieldValue::Void => Term::Atom("undefined"),
        FieldValue::Array(items) => Term::List(
            items
                .iter()
                .map(|item| Term::Tuple(vec![Term::Atom(item.type_name()), value_term(item)]))
                .collect(),
        ),
        FieldValue::Table(table) => Term::List(
            table
                .iter()
                .map(|(key, item)| {
                    Term::Tuple(vec![
                        Term::Bin(Bytes::copy_from_slice(key.as_bytes())),
                        Term::Atom(item.type_name()),
                        value_term(item),
                    ])
                })
                .collect(),
        ),
        other => match integer(other) {
            Some(v) => Term::int(v),
            None => Term::Atom("undefined"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn tagged_tuples_and_strings_print_like_erlang() {
        assert_eq!(
            text(Term::tagged("value_negative", Term::int(-1)).flat()),
            "{value_negative,-1}"
        );
        assert_eq!(
            text(Term::str("expected integer, got longstr").flat()),
            "\"expected integer, got longstr\""
        );
        assert_eq!(text(Term::str("a\"b\\c\n").flat()), "\"a\\\"b\\\\c\\n\"");
        // Latin-1 printable bytes pass through (so UTF-8 "é" comes out as "é").
        assert_eq!(text(Term::str("é").flat()), "\"é\"");
        // 0x82 (inside "€") is not printable: the whole string becomes a list of integers.
        assert_eq!(text(Term::str("f€").flat()), "[102,226,130,172]");
        assert_eq!(
            text(Term::Atom("invalid_overflow").flat()),
            "invalid_overflow"
        );
    }

    #[test]
    fn values_print_like_rabbitmq_val() {
        let table: crate::protocol::FieldTable = [("a", 1i32)].into_iter().collect();
        assert_eq!(
            text(value_term(&FieldValue::Table(table)).flat()),
            "[{<<\"a\">>,signedint,1}]"
        );
        assert_eq!(
            text(value_term(&FieldValue::Decimal { scale: 2, value: 5 }).flat()),
            "{2,5}"
        );
        assert_eq!(text(value_term(&FieldValue::F64(10.0)).flat()), "10.0");
        assert_eq!(text(value_term(&FieldValue::F64(10.5)).flat()), "10.5");
        assert_eq!(text(value_term(&FieldValue::F64(1000.0)).flat()), "1.0e3");
        assert_eq!(text(value_term(&FieldValue::F64(100.0)).flat()), "100.0");
        assert_eq!(text(value_term(&FieldValue::Bool(true)).flat()), "true");
    }

    /// Boundaries measured on RabbitMQ 3.10.8 with `invalid expiration` texts (width 80):
    /// a term ending at column 78 stays on the line, one ending at 79 breaks.
    #[test]
    fn tuples_break_past_width_minus_two() {
        let term = Term::tagged("value_too_large", Term::int("999999999999999999"));
        // "invalid expiration '+999999999999999999': " is 42 bytes; the term is 36.
        assert_eq!(
            text(term.pretty(42, 80)),
            "{value_too_large,999999999999999999}"
        );
        let term = Term::tagged("value_too_large", Term::int("9999999999999999999"));
        // 42 + 37 = 79: breaks, the value indented to column 43.
        assert_eq!(
            text(term.pretty(42, 80)),
            format!(
                "{{value_too_large,\n{}9999999999999999999}}",
                " ".repeat(43)
            )
        );
        // Strings never break.
        let long = Term::str("x".repeat(100));
        assert_eq!(long.pretty(70, 80), long.flat());
    }
}
