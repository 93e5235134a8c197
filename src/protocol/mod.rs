//! AMQP 0-9-1 codec, sans I/O: bytes in, frames out, and back.
//!
//! `generated` (from `amqp-spec/amqp-0-9-1.spec`) holds the constants, reply codes, methods and
//! basic properties; the hand-written modules hold the primitive types and the framing.

mod content_header;
mod error;
pub mod field;
pub mod frame;
pub mod fuzz;
#[rustfmt::skip]
mod generated;
#[cfg(test)]
mod method_tests;
mod protocol_header;
mod wire;

pub use content_header::ContentHeader;
pub use error::{FrameError, HeaderError, MethodError};
pub use field::{FieldTable, FieldValue, LongStr, ShortStr, ShortStrError, MAX_TABLE_DEPTH};
pub use frame::{encode_body, encode_header, encode_heartbeat, encode_method, Frame, FrameDecoder};
pub use generated::*;
pub use protocol_header::{check_protocol_header, HeaderCheck, PROTOCOL_HEADER};
