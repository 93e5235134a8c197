//! The primitive AMQP argument types as nom parsers and `BytesMut` writers.
//!
//! Parsers take the whole payload (`src`) beside the remaining input so that strings can be
//! returned as `Bytes` slices of the payload (`Bytes::slice_ref`) instead of copies.

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::take;
use nom::error::{ErrorKind, ParseError};
use nom::number::complete::{be_u16, be_u32, be_u64, be_u8};
use nom::IResult;

use super::error::MethodError;
use super::field::ShortStr;

/// Why argument bytes could not be decoded. It is always turned into a [`MethodError`] or a
/// [`super::FrameError`] before leaving the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The input ended inside a value (or a length pointed past its container).
    Truncated,
    /// A shortstr (or table key) was not UTF-8.
    InvalidUtf8,
    /// A field-table value used a type code RabbitMQ does not define.
    UnknownFieldType(u8),
    /// Tables and arrays were nested deeper than [`super::field::MAX_TABLE_DEPTH`].
    TooDeep,
}

impl<'a> ParseError<&'a [u8]> for WireError {
    fn from_error_kind(_input: &'a [u8], _kind: ErrorKind) -> Self {
        WireError::Truncated
    }

    fn append(_input: &'a [u8], _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

pub(crate) type WireResult<'a, T> = IResult<&'a [u8], T, WireError>;

/// A failure that no alternative parse can recover from.
pub(crate) fn fail<T>(error: WireError) -> Result<T, nom::Err<WireError>> {
    Err(nom::Err::Failure(error))
}

pub(crate) fn octet(i: &[u8]) -> WireResult<'_, u8> {
    be_u8(i)
}

pub(crate) fn short(i: &[u8]) -> WireResult<'_, u16> {
    be_u16(i)
}

pub(crate) fn long(i: &[u8]) -> WireResult<'_, u32> {
    be_u32(i)
}

pub(crate) fn longlong(i: &[u8]) -> WireResult<'_, u64> {
    be_u64(i)
}

/// The raw bytes of a shortstr, without checking them.
fn short_str_bytes(i: &[u8]) -> WireResult<'_, &[u8]> {
    let (i, len) = be_u8(i)?;
    take(len)(i)
}

fn long_str_bytes(i: &[u8]) -> WireResult<'_, &[u8]> {
    let (i, len) = be_u32(i)?;
    take(len)(i)
}

/// A shortstr: its UTF-8 is checked here, so a `ShortStr` is valid wherever it travels.
pub(crate) fn short_str<'a>(src: &Bytes, i: &'a [u8]) -> WireResult<'a, ShortStr> {
    let (i, raw) = short_str_bytes(i)?;
    match ShortStr::try_from(src.slice_ref(raw)) {
        Ok(value) => Ok((i, value)),
        Err(_) => fail(WireError::InvalidUtf8),
    }
}

/// A longstr: raw bytes, since RabbitMQ carries binary data (SASL responses) in them.
pub(crate) fn long_str<'a>(src: &Bytes, i: &'a [u8]) -> WireResult<'a, Bytes> {
    let (i, raw) = long_str_bytes(i)?;
    Ok((i, src.slice_ref(raw)))
}

pub(crate) fn skip_short_str(i: &[u8]) -> WireResult<'_, ()> {
    short_str_bytes(i).map(|(i, _)| (i, ()))
}

pub(crate) fn skip_long_str(i: &[u8]) -> WireResult<'_, ()> {
    long_str_bytes(i).map(|(i, _)| (i, ()))
}

pub(crate) fn put_short_str(out: &mut BytesMut, value: &ShortStr) {
    // ShortStr guarantees at most 255 bytes, so the length always fits the octet.
    out.put_u8(value.len() as u8);
    out.put_slice(value.as_bytes());
}

/// Longstr lengths above u32::MAX cannot be represented; such a value is cut at u32::MAX bytes
/// rather than writing a length that disagrees with the bytes that follow.
pub(crate) fn put_long_str(out: &mut BytesMut, value: &[u8]) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.put_u32(len);
    out.put_slice(&value[..len as usize]);
}

/// Writes a u32 length prefix for what `body` appends, patching it in afterwards.
pub(crate) fn put_length_prefixed(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32(0);
    body(out);
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Splits a method payload into class id, method id and arguments.
pub(crate) fn method_ids(payload: &Bytes) -> Result<(u16, u16, &[u8]), MethodError> {
    match payload.as_ref() {
        [c1, c2, m1, m2, args @ ..] => Ok((
            u16::from_be_bytes([*c1, *c2]),
            u16::from_be_bytes([*m1, *m2]),
            args,
        )),
        _ => Err(MethodError::TooShort {
            payload: payload.clone(),
        }),
    }
}

/// Turns the outcome of a method's argument parser into the public result: arguments must be
/// consumed exactly, as RabbitMQ rejects trailing bytes too.
pub(crate) fn finish_method<T>(
    class_id: u16,
    method_id: u16,
    payload: &Bytes,
    decoded: WireResult<'_, T>,
) -> Result<T, MethodError> {
    match decoded {
        Ok(([], method)) => Ok(method),
        Err(
            nom::Err::Error(WireError::InvalidUtf8) | nom::Err::Failure(WireError::InvalidUtf8),
        ) => Err(MethodError::InvalidUtf8 {
            class_id,
            method_id,
        }),
        _ => Err(MethodError::Malformed {
            class_id,
            method_id,
            args: payload.slice(4..),
        }),
    }
}
