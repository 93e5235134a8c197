//! Decoding errors, each carrying what the connection layer needs to send RabbitMQ's close:
//! `reply_code()`, the reply text (`Display`), and the class and method ids for the close.
//!
//! Every one of these is a connection error (all codes are hard). The texts were taken from a
//! RabbitMQ 3.10.8 answering raw sockets (the close it sent is quoted beside each variant).

use std::fmt::{self, Write};

use bytes::Bytes;

use super::generated::{method_name, ReplyCode, FRAME_HEADER, FRAME_METHOD};

/// Reply texts must fit a shortstr, so long byte dumps are cut after this many octets.
const MAX_OCTETS_SHOWN: usize = 32;

/// Formats bytes the way Erlang's `~p` prints a binary: `<<"text">>` when printable,
/// `<<0,90,0,10>>` otherwise, so our texts read like RabbitMQ's.
pub(crate) fn erlang_binary(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(MAX_OCTETS_SHOWN)];
    let ellipsis = if shown.len() < bytes.len() { "..." } else { "" };
    let printable = !shown.is_empty() && shown.iter().all(|b| (0x20..0x7f).contains(b));
    let mut out = String::from("<<");
    if printable {
        out.push('"');
        for &b in shown {
            if b == b'"' || b == b'\\' {
                out.push('\\');
            }
            out.push(char::from(b));
        }
        out.push('"');
        out.push_str(ellipsis);
    } else {
        for (index, b) in shown.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let _ = write!(out, "{b}");
        }
        if !ellipsis.is_empty() {
            out.push_str(",...");
        }
    }
    out.push_str(">>");
    out
}

/// A method frame payload that is not a method we can decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodError {
    /// Fewer than four octets: not even a class and method id.
    /// RabbitMQ: `501 FRAME_ERROR - type 1, all octets = <<0>>: unknown_frame`, ids 0.
    TooShort { payload: Bytes },
    /// A class/method id pair the spec does not define. RabbitMQ 3.10.8 crashes the connection
    /// process (`{unknown_method_id,{99,1}}`) and resets the socket without a close; we send
    /// `540 NOT_IMPLEMENTED - unknown method id {99,1}` instead: a deliberate difference.
    Unknown { class_id: u16, method_id: u16 },
    /// Truncated arguments, trailing bytes, a bad field-table type code or nesting past
    /// `MAX_TABLE_DEPTH`. RabbitMQ: `501 FRAME_ERROR - cannot decode <<0,0,5,97,98>>` with
    /// the method's class and method ids (the octets are the arguments after the ids).
    Malformed {
        class_id: u16,
        method_id: u16,
        args: Bytes,
    },
    /// A shortstr that is not UTF-8. RabbitMQ: `501 FRAME_ERROR - Malformed UTF-8 in
    /// shortstr` with class and method ids 0, which `class_id()`/`method_id()` reproduce.
    InvalidUtf8 { class_id: u16, method_id: u16 },
}

impl MethodError {
    pub(crate) fn unknown(class_id: u16, method_id: u16) -> MethodError {
        MethodError::Unknown {
            class_id,
            method_id,
        }
    }

    pub fn reply_code(&self) -> ReplyCode {
        match self {
            MethodError::Unknown { .. } => ReplyCode::NOT_IMPLEMENTED,
            _ => ReplyCode::FRAME_ERROR,
        }
    }

    /// The class id to put in the close, as RabbitMQ does.
    pub fn class_id(&self) -> u16 {
        match self {
            MethodError::Unknown { class_id, .. } | MethodError::Malformed { class_id, .. } => {
                *class_id
            }
            MethodError::TooShort { .. } | MethodError::InvalidUtf8 { .. } => 0,
        }
    }

    /// The method id to put in the close, as RabbitMQ does.
    pub fn method_id(&self) -> u16 {
        match self {
            MethodError::Unknown { method_id, .. } | MethodError::Malformed { method_id, .. } => {
                *method_id
            }
            MethodError::TooShort { .. } | MethodError::InvalidUtf8 { .. } => 0,
        }
    }

    /// The method that failed to decode, when the payload named one we know.
    pub fn method_name(&self) -> Option<&'static str> {
        match self {
            MethodError::Malformed {
                class_id,
                method_id,
                ..
            }
            | MethodError::InvalidUtf8 {
                class_id,
                method_id,
            } => method_name(*class_id, *method_id),
            _ => None,
        }
    }
}

/// The full reply text, `CODE_NAME - detail`, ready for `connection.close`.
impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - ", self.reply_code().name())?;
        match self {
            MethodError::TooShort { payload } => {
                write!(
                    f,
                    "type {FRAME_METHOD}, all octets = {}: unknown_frame",
                    erlang_binary(payload)
                )
            }
            MethodError::Unknown {
                class_id,
                method_id,
            } => write!(f, "unknown method id {{{class_id},{method_id}}}"),
            MethodError::Malformed { args, .. } => {
                write!(f, "cannot decode {}", erlang_binary(args))
            }
            MethodError::InvalidUtf8 { .. } => f.write_str("Malformed UTF-8 in shortstr"),
        }
    }
}

impl std::error::Error for MethodError {}

/// A content header frame that cannot be decoded.
///
/// RabbitMQ 3.10.8 decodes properties only when it needs them and then answers a malformed
/// property list with `541 INTERNAL_ERROR` after the body arrives; we decode eagerly and answer
/// `501 FRAME_ERROR`, as for malformed method arguments: a deliberate difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than the 14 fixed octets. RabbitMQ:
    /// `501 FRAME_ERROR - type 2, all octets = <<0,60>>: unknown_frame`.
    TooShort { payload: Bytes },
    /// Bit 0 of the property flags asks for another flags word; class basic has 14 properties
    /// and RabbitMQ never sends one, so it is rejected.
    Continuation { flags: u16 },
    /// Property values that are truncated, trailing, or bad field tables.
    Malformed { payload: Bytes },
    /// A shortstr property that is not UTF-8.
    InvalidUtf8,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FRAME_ERROR - ")?;
        match self {
            HeaderError::TooShort { payload } => {
                write!(
                    f,
                    "type {FRAME_HEADER}, all octets = {}: unknown_frame",
                    erlang_binary(payload)
                )
            }
            HeaderError::Continuation { flags } => {
                write!(f, "cannot decode content header: property flags {flags:#06x} set the continuation bit")
            }
            HeaderError::Malformed { payload } => {
                write!(f, "cannot decode content header {}", erlang_binary(payload))
            }
            HeaderError::InvalidUtf8 => f.write_str("Malformed UTF-8 in shortstr"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// A frame the decoder rejects. All are connection errors; `reply_code()` and `Display` (the
/// full reply text) give the close, `class_id()`/`method_id()` its failing-method fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The header declared a payload above `frame_max - 8`; detected before buffering it.
    /// RabbitMQ: `501 FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,200000,131064}`.
    TooLarge {
        frame_type: u8,
        channel: u16,
        size: u32,
        max_payload: u32,
    },
    /// The octet after the payload was not 0xCE. RabbitMQ:
    /// `501 FRAME_ERROR - type 1, all octets = <<0,90,0,10>>: {invalid_frame_end_marker,0}`.
    BadFrameEnd {
        frame_type: u8,
        channel: u16,
        found: u8,
        payload: Bytes,
    },
    /// An unknown frame type, or a heartbeat with a payload. RabbitMQ:
    /// `501 FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame`.
    UnknownFrame {
        frame_type: u8,
        channel: u16,
        payload: Bytes,
    },
    Method {
        channel: u16,
        error: MethodError,
    },
    Header {
        channel: u16,
        error: HeaderError,
    },
}

impl FrameError {
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            FrameError::Method { error, .. } => error.reply_code(),
            _ => ReplyCode::FRAME_ERROR,
        }
    }

    /// The channel the offending frame arrived on (the close itself goes on channel 0).
    pub fn channel(&self) -> u16 {
        match self {
            FrameError::TooLarge { channel, .. }
            | FrameError::BadFrameEnd { channel, .. }
            | FrameError::UnknownFrame { channel, .. }
            | FrameError::Method { channel, .. }
            | FrameError::Header { channel, .. } => *channel,
        }
    }

    pub fn class_id(&self) -> u16 {
        match self {
            FrameError::Method { error, .. } => error.class_id(),
            _ => 0,
        }
    }

    pub fn method_id(&self) -> u16 {
        match self {
            FrameError::Method { error, .. } => error.method_id(),
            _ => 0,
        }
    }
}

/// The full reply text, `FRAME_ERROR - detail`, ready for `connection.close`.
impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge {
                frame_type,
                size,
                max_payload,
                ..
            } => write!(
                f,
                "FRAME_ERROR - type {frame_type}, all octets = <<>>: {{frame_too_large,{size},{max_payload}}}"
            ),
            FrameError::BadFrameEnd {
                frame_type,
                found,
                payload,
                ..
            } => write!(
                f,
                "FRAME_ERROR - type {frame_type}, all octets = {}: {{invalid_frame_end_marker,{found}}}",
                erlang_binary(payload)
            ),
            FrameError::UnknownFrame {
                frame_type, payload, ..
            } => write!(
                f,
                "FRAME_ERROR - type {frame_type}, all octets = {}: unknown_frame",
                erlang_binary(payload)
            ),
            FrameError::Method { error, .. } => error.fmt(f),
            FrameError::Header { error, .. } => error.fmt(f),
        }
    }
}

impl std::error::Error for FrameError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_print_like_erlang() {
        assert_eq!(erlang_binary(b""), "<<>>");
        assert_eq!(erlang_binary(b"abc"), "<<\"abc\">>");
        assert_eq!(erlang_binary(&[0, 90, 0, 10]), "<<0,90,0,10>>");
        assert_eq!(erlang_binary(b"a\"b"), "<<\"a\\\"b\">>");
        let long = erlang_binary(&[1; 100]);
        assert!(long.ends_with(",...>>"), "{long}");
        assert!(long.len() < 255);
    }

    #[test]
    fn texts_match_rabbitmq() {
        let too_large = FrameError::TooLarge {
            frame_type: 1,
            channel: 1,
            size: 200_000,
            max_payload: 131_064,
        };
        assert_eq!(
            too_large.to_string(),
            "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,200000,131064}"
        );
        assert_eq!(too_large.reply_code().code(), 501);
        let malformed = FrameError::Method {
            channel: 1,
            error: MethodError::Malformed {
                class_id: 50,
                method_id: 10,
                args: Bytes::from_static(&[0, 0, 5, 97, 98]),
            },
        };
        assert_eq!(
            malformed.to_string(),
            "FRAME_ERROR - cannot decode <<0,0,5,97,98>>"
        );
        assert_eq!((malformed.class_id(), malformed.method_id()), (50, 10));
        let unknown = MethodError::unknown(99, 1);
        assert_eq!(unknown.reply_code(), ReplyCode::NOT_IMPLEMENTED);
        assert_eq!(
            unknown.to_string(),
            "NOT_IMPLEMENTED - unknown method id {99,1}"
        );
        let utf8 = MethodError::InvalidUtf8 {
            class_id: 50,
            method_id: 10,
        };
        assert_eq!(
            utf8.to_string(),
            "FRAME_ERROR - Malformed UTF-8 in shortstr"
        );
        assert_eq!((utf8.class_id(), utf8.method_id()), (0, 0));
        assert_eq!(utf8.method_name(), Some("queue.declare"));
    }
}
