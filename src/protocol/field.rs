//! Strings, field values, field tables and arrays, with RabbitMQ's type codes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{
    be_f32, be_f64, be_i16, be_i32, be_i64, be_i8, be_u16, be_u32, be_u64, be_u8,
};

use super::generated::field_type;
use super::wire::{self, fail, WireError, WireResult};

/// How deep tables and arrays may nest inside one another (the outermost table is depth 1).
/// Decoding deeper input is an error: recursion depth must not be chosen by the peer.
pub const MAX_TABLE_DEPTH: usize = 64;

/// A longstr: raw bytes (RabbitMQ carries binary SASL responses and arbitrary data in them).
pub type LongStr = Bytes;

/// A shortstr: valid UTF-8 of at most 255 bytes, sharing the frame's buffer when decoded.
///
/// Invariant: the bytes are UTF-8 and at most [`ShortStr::MAX_LEN`] long. Every constructor
/// checks it, so encoding never fails.
#[derive(Clone, Default)]
pub struct ShortStr(Bytes);

/// Why bytes cannot become a [`ShortStr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortStrError {
    TooLong(usize),
    InvalidUtf8,
}

impl fmt::Display for ShortStrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShortStrError::TooLong(len) => write!(f, "shortstr of {len} bytes is longer than 255"),
            ShortStrError::InvalidUtf8 => f.write_str("Malformed UTF-8 in shortstr"),
        }
    }
}

impl std::error::Error for ShortStrError {}

impl ShortStr {
    pub const MAX_LEN: usize = 255;

    /// Checks length and UTF-8 of `value`.
    pub fn new(value: &str) -> Result<ShortStr, ShortStrError> {
        if value.len() > Self::MAX_LEN {
            return Err(ShortStrError::TooLong(value.len()));
        }
        Ok(ShortStr(Bytes::copy_from_slice(value.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        // Checked at construction; the fallback is unreachable but keeps this panic-free.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Cuts `value` to at most 255 bytes on a character boundary.
    fn truncated(value: &str) -> &str {
        let mut end = value.len().min(Self::MAX_LEN);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        &value[..end]
    }
}

/// Infallible, so strings longer than 255 bytes are truncated on a character boundary; use
/// [`ShortStr::new`] to reject them instead.
impl From<&str> for ShortStr {
    fn from(value: &str) -> ShortStr {
        ShortStr(Bytes::copy_from_slice(Self::truncated(value).as_bytes()))
    }
}

/// Truncates like `From<&str>`; reuses the allocation when no truncation is needed.
impl From<String> for ShortStr {
    fn from(mut value: String) -> ShortStr {
        let len = Self::truncated(&value).len();
        value.truncate(len);
        ShortStr(Bytes::from(value))
    }
}

impl TryFrom<Bytes> for ShortStr {
    type Error = ShortStrError;

    fn try_from(value: Bytes) -> Result<ShortStr, ShortStrError> {
        if value.len() > Self::MAX_LEN {
            return Err(ShortStrError::TooLong(value.len()));
        }
        match std::str::from_utf8(&value) {
            Ok(_) => Ok(ShortStr(value)),
            Err(_) => Err(ShortStrError::InvalidUtf8),
        }
    }
}

impl Deref for ShortStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ShortStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ShortStr {
    fn eq(&self, other: &ShortStr) -> bool {
        self.0 == other.0
    }
}

impl Eq for ShortStr {}

impl PartialEq<str> for ShortStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// Hashes like `str` so that `Borrow<str>` lookups in hash maps work.
impl Hash for ShortStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for ShortStr {
    fn partial_cmp(&self, other: &ShortStr) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortStr {
    fn cmp(&self, other: &ShortStr) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A field-table or array value; variants follow the type codes RabbitMQ's parser reads
/// (`t b B s u I i l L f d D S x A T F V`), each with the width and signedness it gives them.
///
/// Every variant encodes with the code it was decoded from, so a table passes through
/// unchanged. Equality is structural: `I64(5)` and `I64L(5)` differ (their bytes do) although
/// RabbitMQ reads both as the same `long`; compare through [`FieldValue::integer`] where the
/// meaning is what counts.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    /// `l`: what RabbitMQ (and we) write for a 64-bit integer.
    I64(i64),
    /// `L`: the spec's long-long-int, signed 64-bit as RabbitMQ reads it (py-amqp writes every
    /// integer outside ±2³¹ so). Means the same as `I64`; kept apart only to keep the letter.
    I64L(i64),
    F32(f32),
    F64(f64),
    Decimal {
        scale: u8,
        value: u32,
    },
    LongStr(LongStr),
    ByteArray(Bytes),
    Array(Vec<FieldValue>),
    Timestamp(u64),
    Table(FieldTable),
    Void,
}

impl FieldValue {
    /// The type code this value is encoded with.
    pub fn type_code(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => field_type::BOOL,
            FieldValue::I8(_) => field_type::I8,
            FieldValue::U8(_) => field_type::U8,
            FieldValue::I16(_) => field_type::I16,
            FieldValue::U16(_) => field_type::U16,
            FieldValue::I32(_) => field_type::I32,
            FieldValue::U32(_) => field_type::U32,
            FieldValue::I64(_) => field_type::I64,
            FieldValue::I64L(_) => field_type::I64L,
            FieldValue::F32(_) => field_type::F32,
            FieldValue::F64(_) => field_type::F64,
            FieldValue::Decimal { .. } => field_type::DECIMAL,
            FieldValue::LongStr(_) => field_type::LONG_STR,
            FieldValue::ByteArray(_) => field_type::BYTE_ARRAY,
            FieldValue::Array(_) => field_type::ARRAY,
            FieldValue::Timestamp(_) => field_type::TIMESTAMP,
            FieldValue::Table(_) => field_type::TABLE,
            FieldValue::Void => field_type::VOID,
        }
    }

    /// Appends the type code and the value.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.type_code());
        match self {
            FieldValue::Bool(v) => out.put_u8(u8::from(*v)),
            FieldValue::I8(v) => out.put_i8(*v),
            FieldValue::U8(v) => out.put_u8(*v),
            FieldValue::I16(v) => out.put_i16(*v),
            FieldValue::U16(v) => out.put_u16(*v),
            FieldValue::I32(v) => out.put_i32(*v),
            FieldValue::U32(v) => out.put_u32(*v),
            FieldValue::I64(v) | FieldValue::I64L(v) => out.put_i64(*v),
            FieldValue::F32(v) => out.put_f32(*v),
            FieldValue::F64(v) => out.put_f64(*v),
            FieldValue::Decimal { scale, value } => {
                out.put_u8(*scale);
                out.put_u32(*value);
            }
            FieldValue::LongStr(v) | FieldValue::ByteArray(v) => wire::put_long_str(out, v),
            FieldValue::Array(values) => wire::put_length_prefixed(out, |out| {
                for value in values {
                    value.encode(out);
                }
            }),
            FieldValue::Timestamp(v) => out.put_u64(*v),
            FieldValue::Table(table) => table.encode(out),
            FieldValue::Void => {}
        }
    }
}

impl From<bool> for FieldValue {
    fn from(value: bool) -> FieldValue {
        FieldValue::Bool(value)
    }
}

impl From<i32> for FieldValue {
    fn from(value: i32) -> FieldValue {
        FieldValue::I32(value)
    }
}

impl From<i64> for FieldValue {
    fn from(value: i64) -> FieldValue {
        FieldValue::I64(value)
    }
}

impl From<&str> for FieldValue {
    fn from(value: &str) -> FieldValue {
        FieldValue::LongStr(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl From<FieldTable> for FieldValue {
    fn from(value: FieldTable) -> FieldValue {
        FieldValue::Table(value)
    }
}

/// A field table: entries in wire order. Lookups return the first entry with a key, as
/// RabbitMQ's `table_lookup` does; `insert` replaces in place to keep one entry per key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldTable(Vec<(ShortStr, FieldValue)>);

impl FieldValue {
    /// RabbitMQ's name for this value's type (`rabbit_binary_parser`), which its error texts
    /// print ("invalid type 'signedint' …").
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Bool(_) => "bool",
            FieldValue::I8(_) => "byte",
            FieldValue::U8(_) => "unsignedbyte",
            FieldValue::I16(_) => "short",
            FieldValue::U16(_) => "unsignedshort",
            FieldValue::I32(_) => "signedint",
            FieldValue::U32(_) => "unsignedint",
            FieldValue::I64(_) | FieldValue::I64L(_) => "long",
            FieldValue::F32(_) => "float",
            FieldValue::F64(_) => "double",
            FieldValue::Decimal { .. } => "decimal",
            FieldValue::LongStr(_) => "longstr",
            FieldValue::ByteArray(_) => "binary",
            FieldValue::Array(_) => "array",
            FieldValue::Timestamp(_) => "timestamp",
            FieldValue::Table(_) => "table",
            FieldValue::Void => "void",
        }
    }

    /// The value of an integer-typed field, whatever its width: RabbitMQ's integer class
    /// (`?INTEGER_ARG_TYPES`: byte, short, signedint, long and the unsigned byte, short and
    /// int), which it accepts wherever it wants an integer argument. Timestamps, floats and
    /// decimals are not integers here, as there.
    pub fn integer(&self) -> Option<i64> {
        match self {
            FieldValue::I8(v) => Some(i64::from(*v)),
            FieldValue::U8(v) => Some(i64::from(*v)),
            FieldValue::I16(v) => Some(i64::from(*v)),
            FieldValue::U16(v) => Some(i64::from(*v)),
            FieldValue::I32(v) => Some(i64::from(*v)),
            FieldValue::U32(v) => Some(i64::from(*v)),
            FieldValue::I64(v) | FieldValue::I64L(v) => Some(*v),
            FieldValue::Bool(_)
            | FieldValue::F32(_)
            | FieldValue::F64(_)
            | FieldValue::Decimal { .. }
            | FieldValue::LongStr(_)
            | FieldValue::ByteArray(_)
            | FieldValue::Array(_)
            | FieldValue::Timestamp(_)
            | FieldValue::Table(_)
            | FieldValue::Void => None,
        }
    }

    /// Equal as RabbitMQ's parser reads the two: `l` and `L` are both `long`, here and inside
    /// arrays and tables. Anything else compares as `==` does.
    pub fn eq_as_parsed(&self, other: &FieldValue) -> bool {
        match (self, other) {
            (
                FieldValue::I64(a) | FieldValue::I64L(a),
                FieldValue::I64(b) | FieldValue::I64L(b),
            ) => a == b,
            (FieldValue::Array(a), FieldValue::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.eq_as_parsed(b))
            }
            (FieldValue::Table(a), FieldValue::Table(b)) => a.eq_as_parsed(b),
            _ => self == other,
        }
    }

    /// The value with the codes RabbitMQ writes when it re-encodes what it parsed (as it does
    /// for the headers of a message it dead-letters): `L` comes back as `l`, at any depth.
    pub fn into_rabbitmq_codes(self) -> FieldValue {
        match self {
            FieldValue::I64L(v) => FieldValue::I64(v),
            FieldValue::Array(values) => FieldValue::Array(
                values
                    .into_iter()
                    .map(FieldValue::into_rabbitmq_codes)
                    .collect(),
            ),
            FieldValue::Table(table) => FieldValue::Table(table.into_rabbitmq_codes()),
            other => other,
        }
    }
}

impl FieldTable {
    pub fn new() -> FieldTable {
        FieldTable::default()
    }

    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, returning the value it replaced.
    pub fn insert(
        &mut self,
        key: impl Into<ShortStr>,
        value: impl Into<FieldValue>,
    ) -> Option<FieldValue> {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.0.push((key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let index = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(index).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ShortStr, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Same keys in the same order with values [`FieldValue::eq_as_parsed`].
    pub fn eq_as_parsed(&self, other: &FieldTable) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((ka, va), (kb, vb))| ka == kb && va.eq_as_parsed(vb))
    }

    /// See [`FieldValue::into_rabbitmq_codes`].
    pub fn into_rabbitmq_codes(self) -> FieldTable {
        FieldTable(
            self.0
                .into_iter()
                .map(|(key, value)| (key, value.into_rabbitmq_codes()))
                .collect(),
        )
    }

    /// Decodes a table written by [`FieldTable::encode`] that fills `src` exactly (how the
    /// store reads back the tables it wrote); `None` when it is damaged.
    pub fn decode_exact(src: &Bytes) -> Option<FieldTable> {
        match table(src, src) {
            Ok(([], t)) => Some(t),
            _ => None,
        }
    }

    /// Appends the table with its u32 length prefix.
    pub fn encode(&self, out: &mut BytesMut) {
        wire::put_length_prefixed(out, |out| {
            for (key, value) in &self.0 {
                wire::put_short_str(out, key);
                value.encode(out);
            }
        });
    }
}

impl From<Vec<(ShortStr, FieldValue)>> for FieldTable {
    fn from(entries: Vec<(ShortStr, FieldValue)>) -> FieldTable {
        FieldTable(entries)
    }
}

impl<K: Into<ShortStr>, V: Into<FieldValue>> FromIterator<(K, V)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> FieldTable {
        FieldTable(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl IntoIterator for FieldTable {
    type Item = (ShortStr, FieldValue);
    type IntoIter = std::vec::IntoIter<(ShortStr, FieldValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Decodes a length-prefixed field table.
pub(crate) fn table<'a>(src: &Bytes, i: &'a [u8]) -> WireResult<'a, FieldTable> {
    table_at(src, i, 1)
}

fn table_at<'a>(src: &Bytes, i: &'a [u8], depth: usize) -> WireResult<'a, FieldTable> {
    if depth > MAX_TABLE_DEPTH {
        return fail(WireError::TooDeep);
    }
    let (rest, len) = be_u32(i)?;
    let (rest, mut body) = take(len)(rest)?;
    let mut entries = Vec::new();
    while !body.is_empty() {
        let (after_key, key) = wire::short_str(src, body)?;
        let (after_value, value) = value_at(src, after_key, depth)?;
        entries.push((key, value));
        body = after_value;
    }
    Ok((rest, FieldTable(entries)))
}

fn array_at<'a>(src: &Bytes, i: &'a [u8], depth: usize) -> WireResult<'a, Vec<FieldValue>> {
    if depth > MAX_TABLE_DEPTH {
        return fail(WireError::TooDeep);
    }
    let (rest, len) = be_u32(i)?;
    let (rest, mut body) = take(len)(rest)?;
    let mut values = Vec::new();
    while !body.is_empty() {
        let (after, value) = value_at(src, body, depth)?;
        values.push(value);
        body = after;
    }
    Ok((rest, values))
}

/// One type code and value; `depth` is that of the table or array holding it.
fn value_at<'a>(src: &Bytes, i: &'a [u8], depth: usize) -> WireResult<'a, FieldValue> {
    let (i, code) = be_u8(i)?;
    match code {
        field_type::BOOL => be_u8(i).map(|(i, v)| (i, FieldValue::Bool(v != 0))),
        field_type::I8 => be_i8(i).map(|(i, v)| (i, FieldValue::I8(v))),
        field_type::U8 => be_u8(i).map(|(i, v)| (i, FieldValue::U8(v))),
        field_type::I16 => be_i16(i).map(|(i, v)| (i, FieldValue::I16(v))),
        field_type::U16 => be_u16(i).map(|(i, v)| (i, FieldValue::U16(v))),
        field_type::I32 => be_i32(i).map(|(i, v)| (i, FieldValue::I32(v))),
        field_type::U32 => be_u32(i).map(|(i, v)| (i, FieldValue::U32(v))),
        field_type::I64 => be_i64(i).map(|(i, v)| (i, FieldValue::I64(v))),
        field_type::I64L => be_i64(i).map(|(i, v)| (i, FieldValue::I64L(v))),
        field_type::F32 => be_f32(i).map(|(i, v)| (i, FieldValue::F32(v))),
        field_type::F64 => be_f64(i).map(|(i, v)| (i, FieldValue::F64(v))),
        field_type::DECIMAL => {
            let (i, scale) = be_u8(i)?;
            let (i, value) = be_u32(i)?;
            Ok((i, FieldValue::Decimal { scale, value }))
        }
        field_type::LONG_STR => wire::long_str(src, i).map(|(i, v)| (i, FieldValue::LongStr(v))),
        field_type::BYTE_ARRAY => {
            wire::long_str(src, i).map(|(i, v)| (i, FieldValue::ByteArray(v)))
        }
        field_type::ARRAY => array_at(src, i, depth + 1).map(|(i, v)| (i, FieldValue::Array(v))),
        field_type::TIMESTAMP => be_u64(i).map(|(i, v)| (i, FieldValue::Timestamp(v))),
        field_type::TABLE => table_at(src, i, depth + 1).map(|(i, v)| (i, FieldValue::Table(v))),
        field_type::VOID => Ok((i, FieldValue::Void)),
        other => fail(WireError::UnknownFieldType(other)),
    }
}

/// proptest strategies for strings, values and tables (nested up to a few levels).
#[cfg(test)]
pub(crate) mod arbitrary {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn short_str() -> impl Strategy<Value = ShortStr> {
        prop_oneof![
            "[a-zA-Z0-9._-]{0,20}".prop_map(ShortStr::from),
            // Multi-byte characters near the 255-byte limit.
            "\\PC{0,85}".prop_map(ShortStr::from),
        ]
    }

    pub(crate) fn long_str() -> impl Strategy<Value = LongStr> {
        vec(any::<u8>(), 0..64).prop_map(Bytes::from)
    }

    fn scalar() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<bool>().prop_map(FieldValue::Bool),
            any::<i8>().prop_map(FieldValue::I8),
            any::<u8>().prop_map(FieldValue::U8),
            any::<i16>().prop_map(FieldValue::I16),
            any::<u16>().prop_map(FieldValue::U16),
            any::<i32>().prop_map(FieldValue::I32),
            any::<u32>().prop_map(FieldValue::U32),
            any::<i64>().prop_map(FieldValue::I64),
            any::<i64>().prop_map(FieldValue::I64L),
            // NaN is never equal to itself, which would fail round-trip comparisons.
            any::<f32>()
                .prop_filter("not NaN", |v| !v.is_nan())
                .prop_map(FieldValue::F32),
            any::<f64>()
                .prop_filter("not NaN", |v| !v.is_nan())
                .prop_map(FieldValue::F64),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
            long_str().prop_map(FieldValue::LongStr),
            long_str().prop_map(FieldValue::ByteArray),
            any::<u64>().prop_map(FieldValue::Timestamp),
            Just(FieldValue::Void),
        ]
    }

    pub(crate) fn field_value() -> impl Strategy<Value = FieldValue> {
        scalar().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
                vec((short_str(), inner), 0..6)
                    .prop_map(|entries| FieldValue::Table(FieldTable(entries))),
            ]
        })
    }

    pub(crate) fn table() -> impl Strategy<Value = FieldTable> {
        vec((short_str(), field_value()), 0..6).prop_map(FieldTable)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encoded(table: &FieldTable) -> Bytes {
        let mut out = BytesMut::new();
        table.encode(&mut out);
        out.freeze()
    }

    fn decoded(src: &Bytes) -> Result<FieldTable, nom::Err<WireError>> {
        let (rest, table) = table(src, src)?;
        assert!(rest.is_empty(), "{} bytes left over", rest.len());
        Ok(table)
    }

    /// A table nested `depth` tables deep (the outer one counts).
    fn nested(depth: usize) -> FieldTable {
        let mut table = FieldTable::new();
        for _ in 1..depth {
            let mut outer = FieldTable::new();
            outer.insert("k", table);
            table = outer;
        }
        table
    }

    proptest! {
        #[test]
        fn value_round_trips(value in arbitrary::field_value()) {
            let table: FieldTable = [("v", value)].into_iter().collect();
            prop_assert_eq!(decoded(&encoded(&table)).unwrap(), table);
        }

        #[test]
        fn table_round_trips(table in arbitrary::table()) {
            prop_assert_eq!(decoded(&encoded(&table)).unwrap(), table);
        }

        #[test]
        fn each_value_keeps_its_code(value in arbitrary::field_value()) {
            let mut out = BytesMut::new();
            value.encode(&mut out);
            prop_assert_eq!(out[0], value.type_code());
            let src = out.freeze();
            let (rest, again) = value_at(&src, &src, 1).unwrap();
            prop_assert!(rest.is_empty());
            prop_assert_eq!(again.type_code(), value.type_code());
        }

        #[test]
        fn l_and_upper_l_mean_the_same(v in any::<i64>()) {
            let (l, upper) = (FieldValue::I64(v), FieldValue::I64L(v));
            prop_assert!(l.eq_as_parsed(&upper) && upper.eq_as_parsed(&l));
            prop_assert_eq!(upper.integer(), Some(v));
            prop_assert_eq!(upper.type_name(), l.type_name());
            prop_assert_eq!(upper.clone().into_rabbitmq_codes(), l);
        }

        #[test]
        fn truncated_table_is_an_error(table in arbitrary::table(), cut in 1usize..64) {
            let bytes = encoded(&table);
            let keep = bytes.len().saturating_sub(cut);
            prop_assert!(decoded(&bytes.slice(..keep)).is_err());
        }

        #[test]
        fn short_str_from_str_keeps_valid_prefix(s in "\\PC{0,300}") {
            let short = ShortStr::from(s.as_str());
            prop_assert!(short.len() <= 255);
            prop_assert!(s.starts_with(short.as_str()));
            prop_assert_eq!(ShortStr::from(s.clone()), short);
        }
    }

    #[test]
    fn rabbitmq_type_codes() {
        let table: FieldTable = [
            ("s", FieldValue::I16(-2)),
            ("l", FieldValue::I64(-3)),
            ("x", FieldValue::ByteArray(Bytes::from_static(b"\x00\xff"))),
            ("u", FieldValue::U16(7)),
            ("I", FieldValue::I32(-1)),
            ("i", FieldValue::U32(1)),
            ("L", FieldValue::I64L(-4)),
            ("B", FieldValue::U8(200)),
            ("b", FieldValue::I8(-8)),
        ]
        .into_iter()
        .collect();
        let bytes = encoded(&table);
        // Each key is a one-letter shortstr naming the code its value must be written with.
        let mut at = 4;
        for (key, value) in table.iter() {
            assert_eq!(bytes[at + 2], key.as_bytes()[0], "code of {value:?}");
            let mut one = BytesMut::new();
            value.encode(&mut one);
            at += 2 + one.len();
        }
        assert_eq!(at, bytes.len());
    }

    /// Each code RabbitMQ's `rabbit_binary_parser` reads, as a client writes it, with the value
    /// and type name RabbitMQ gives it.
    fn every_rabbitmq_code() -> Vec<(&'static [u8], FieldValue, &'static str)> {
        vec![
            (b"t\x01", FieldValue::Bool(true), "bool"),
            (b"b\xfb", FieldValue::I8(-5), "byte"),
            (b"B\xfa", FieldValue::U8(250), "unsignedbyte"),
            (b"s\xfe\xd4", FieldValue::I16(-300), "short"),
            (b"u\xfd\xe8", FieldValue::U16(65000), "unsignedshort"),
            (b"I\xff\xfe\xee\x90", FieldValue::I32(-70000), "signedint"),
            (
                b"i\xee\x6b\x28\x00",
                FieldValue::U32(4_000_000_000),
                "unsignedint",
            ),
            (
                b"l\xff\xff\xff\x00\x00\x00\x00\x00",
                FieldValue::I64(-(1 << 40)),
                "long",
            ),
            // py-amqp's `pack('>q')` of a millisecond timestamp, and of 2^31 and 4 GiB.
            (
                b"L\x00\x00\x01\x8b\xcf\xe5\x68\x7b",
                FieldValue::I64L(1_700_000_000_123),
                "long",
            ),
            (
                b"L\x00\x00\x00\x00\x80\x00\x00\x00",
                FieldValue::I64L(1 << 31),
                "long",
            ),
            (
                b"L\x00\x00\x00\x01\x00\x00\x00\x00",
                FieldValue::I64L(1 << 32),
                "long",
            ),
            // Signed, as RabbitMQ reads it (`Value:64/signed`), not the Qpid unsigned reading.
            (
                b"L\xff\xff\xff\xff\x80\x00\x00\x00",
                FieldValue::I64L(-(1 << 31)),
                "long",
            ),
            (b"f\x3f\xc0\x00\x00", FieldValue::F32(1.5), "float"),
            (
                b"d\xc0\x02\x00\x00\x00\x00\x00\x00",
                FieldValue::F64(-2.25),
                "double",
            ),
            (
                b"D\x02\x00\x00\x30\x39",
                FieldValue::Decimal {
                    scale: 2,
                    value: 12345,
                },
                "decimal",
            ),
            (b"S\x00\x00\x00\x02ab", FieldValue::from("ab"), "longstr"),
            (
                b"x\x00\x00\x00\x02\x00\xff",
                FieldValue::ByteArray(Bytes::from_static(b"\x00\xff")),
                "binary",
            ),
            (
                b"T\x00\x00\x00\x00\x65\x53\xf1\x00",
                FieldValue::Timestamp(1_700_000_000),
                "timestamp",
            ),
            (
                b"A\x00\x00\x00\x0b\x4c\x00\x00\x00\x02\x00\x00\x00\x00\x42\x07",
                FieldValue::Array(vec![FieldValue::I64L(1 << 33), FieldValue::U8(7)]),
                "array",
            ),
            (
                b"F\x00\x00\x00\x0b\x01n\x4c\x00\x00\x00\x00\x00\x00\x00\x09",
                FieldValue::Table([("n", FieldValue::I64L(9))].into_iter().collect()),
                "table",
            ),
            (b"V", FieldValue::Void, "void"),
        ]
    }

    #[test]
    fn every_rabbitmq_code_decodes_and_comes_back_unchanged() {
        for (wire, value, name) in every_rabbitmq_code() {
            let src = Bytes::from_static(wire);
            let (rest, decoded) = value_at(&src, &src, 1).unwrap();
            assert!(rest.is_empty(), "{value:?}: {} octets left", rest.len());
            assert_eq!(decoded, value);
            assert_eq!(decoded.type_name(), name, "{value:?}");
            let mut out = BytesMut::new();
            decoded.encode(&mut out);
            assert_eq!(&out[..], wire, "{value:?} re-encoded differently");
        }
        // The same values as one table, in arrays too: the table's bytes come back as sent.
        let mut body = Vec::new();
        for (index, (wire, _, _)) in every_rabbitmq_code().into_iter().enumerate() {
            let key = format!("k{index}");
            body.push(u8::try_from(key.len()).unwrap());
            body.extend_from_slice(key.as_bytes());
            body.extend_from_slice(wire);
        }
        let mut wire = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        wire.extend_from_slice(&body);
        let wire = Bytes::from(wire);
        assert_eq!(encoded(&decoded(&wire).unwrap()), wire);
    }

    #[test]
    fn integer_class_is_rabbitmqs() {
        for (_, value, name) in every_rabbitmq_code() {
            let integer = [
                "byte",
                "unsignedbyte",
                "short",
                "unsignedshort",
                "signedint",
                "unsignedint",
                "long",
            ]
            .contains(&name);
            assert_eq!(value.integer().is_some(), integer, "{value:?}");
        }
        assert_eq!(FieldValue::U32(u32::MAX).integer(), Some(4_294_967_295));
        assert_eq!(FieldValue::I64L(i64::MIN).integer(), Some(i64::MIN));
    }

    #[test]
    fn upper_l_becomes_l_at_any_depth_when_rabbitmq_rewrites() {
        let inner: FieldTable = [("n", FieldValue::I64L(1))].into_iter().collect();
        let table: FieldTable = [
            (
                "a",
                FieldValue::Array(vec![FieldValue::I64L(2), FieldValue::Table(inner)]),
            ),
            ("b", FieldValue::I32(3)),
        ]
        .into_iter()
        .collect();
        let rewritten = table.clone().into_rabbitmq_codes();
        let inner_l: FieldTable = [("n", FieldValue::I64(1))].into_iter().collect();
        let expected: FieldTable = [
            (
                "a",
                FieldValue::Array(vec![FieldValue::I64(2), FieldValue::Table(inner_l)]),
            ),
            ("b", FieldValue::I32(3)),
        ]
        .into_iter()
        .collect();
        assert_eq!(rewritten, expected);
        assert!(table.eq_as_parsed(&expected) && table != expected);
        // Other integer widths stay apart, as RabbitMQ's types do ({signedint,3} is not {long,3}).
        assert!(!FieldValue::I32(3).eq_as_parsed(&FieldValue::I64(3)));
        let shorter: FieldTable = [("a", FieldValue::Void)].into_iter().collect();
        assert!(!table.eq_as_parsed(&shorter));
    }

    #[test]
    fn nesting_limit_is_enforced() {
        let ok = encoded(&nested(MAX_TABLE_DEPTH));
        assert_eq!(decoded(&ok).unwrap(), nested(MAX_TABLE_DEPTH));
        let deep = encoded(&nested(MAX_TABLE_DEPTH + 1));
        assert_eq!(
            decoded(&deep).unwrap_err(),
            nom::Err::Failure(WireError::TooDeep)
        );
    }

    #[test]
    fn arrays_count_towards_depth() {
        let mut value = FieldValue::Void;
        for _ in 0..MAX_TABLE_DEPTH {
            value = FieldValue::Array(vec![value]);
        }
        let table: FieldTable = [("a", value)].into_iter().collect();
        assert_eq!(
            decoded(&encoded(&table)).unwrap_err(),
            nom::Err::Failure(WireError::TooDeep)
        );
    }

    #[test]
    fn unknown_type_code_and_bad_key_are_errors() {
        let bytes = Bytes::from_static(b"\x00\x00\x00\x03\x01kZ");
        assert_eq!(
            decoded(&bytes).unwrap_err(),
            nom::Err::Failure(WireError::UnknownFieldType(b'Z'))
        );
        let bytes = Bytes::from_static(b"\x00\x00\x00\x03\x01\xffV");
        assert_eq!(
            decoded(&bytes).unwrap_err(),
            nom::Err::Failure(WireError::InvalidUtf8)
        );
    }

    #[test]
    fn decoded_strings_share_the_buffer() {
        let table: FieldTable = [("key", FieldValue::from("value"))].into_iter().collect();
        let bytes = encoded(&table);
        let decoded = decoded(&bytes).unwrap();
        let Some(FieldValue::LongStr(value)) = decoded.get("key") else {
            panic!("missing key");
        };
        let range = bytes.as_ptr_range();
        assert!(range.contains(&value.as_ptr()));
    }

    #[test]
    fn table_api() {
        let mut table = FieldTable::new();
        assert!(table.is_empty());
        assert_eq!(table.insert("a", 1), None);
        assert_eq!(table.insert("b", true), None);
        assert_eq!(table.insert("a", 2), Some(FieldValue::I32(1)));
        assert_eq!(table.len(), 2);
        assert_eq!(table.get("a"), Some(&FieldValue::I32(2)));
        assert_eq!(table.remove("a"), Some(FieldValue::I32(2)));
        assert_eq!(table.get("a"), None);
        let keys: Vec<&str> = table.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b"]);
    }

    #[test]
    fn short_str_checks() {
        assert_eq!(
            ShortStr::new(&"x".repeat(256)),
            Err(ShortStrError::TooLong(256))
        );
        assert_eq!(
            ShortStr::try_from(Bytes::from_static(b"\xc3")),
            Err(ShortStrError::InvalidUtf8)
        );
        let s = ShortStr::try_from(Bytes::from_static(b"caf\xc3\xa9")).unwrap();
        assert_eq!(s.as_str(), "café");
        assert_eq!(s.to_string(), "café");
        let mut set = std::collections::HashSet::new();
        set.insert(s.clone());
        assert!(set.contains("café"));
        let (a, b) = (ShortStr::from("a"), ShortStr::from("b"));
        assert!(a < b);
        // 'é' is two bytes: 128 of them are 256 bytes, cut to 127 characters.
        assert_eq!(ShortStr::from("é".repeat(128).as_str()).len(), 254);
    }
}
