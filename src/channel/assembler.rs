//! Publish assembly: `basic.publish`, then a content header, then body frames until the
//! header's body size is reached. Any other order is 505 UNEXPECTED_FRAME (a connection error)
//! with RabbitMQ's texts.

use bytes::{Bytes, BytesMut};

use crate::error::AmqpError;
use crate::protocol::{BasicProperties, BasicPublish, ContentHeader, CLASS_BASIC};

/// A publish whose content is complete.
#[derive(Debug)]
pub struct Published {
    pub method: BasicPublish,
    pub properties: BasicProperties,
    pub body: Bytes,
}

/// Where the assembly stands. Invariant: in `Body`, `received + parts' length < body_size`
/// (a complete content leaves the assembler at once).
#[derive(Debug, Default)]
pub enum Assembler {
    #[default]
    Idle,
    Header(BasicPublish),
    Body {
        method: BasicPublish,
        properties: Box<BasicProperties>,
        body_size: u64,
        parts: Vec<Bytes>,
        received: u64,
    },
}

impl Assembler {
    pub fn is_idle(&self) -> bool {
        matches!(self, Assembler::Idle)
    }

    /// A method frame arrived: fine only when idle.
    pub fn check_method(&self) -> Result<(), AmqpError> {
        match self {
            Assembler::Idle => Ok(()),
            Assembler::Header(_) => Err(AmqpError::unexpected_frame(format!(
                "expected content header for class {CLASS_BASIC}, got non content header frame instead"
            ))),
            Assembler::Body { .. } => Err(AmqpError::unexpected_frame(
                "expected content body, got non content body frame instead",
            )),
        }
    }

    pub fn start(&mut self, method: BasicPublish) {
        *self = Assembler::Header(method);
    }

    /// A header frame; `max_size` is the configured largest message. Returns the content when
    /// the body is empty.
    pub fn header(
        &mut self,
        header: ContentHeader,
        max_size: u64,
    ) -> Result<Option<Published>, AmqpError> {
        let method = match std::mem::take(self) {
            Assembler::Header(method) => method,
            Assembler::Idle => {
                return Err(AmqpError::unexpected_frame(
                    "expected method frame, got non method frame instead",
                ))
            }
            Assembler::Body { .. } => {
                return Err(AmqpError::unexpected_frame(
                    "expected content body, got non content body frame instead",
                ))
            }
        };
        if header.class_id != CLASS_BASIC {
            return Err(AmqpError::unexpected_frame(format!(
                "expected content header for class {CLASS_BASIC}, got one for class {} instead",
                header.class_id
            )));
        }
        if header.body_size > max_size {
            return Err(AmqpError::new(
                crate::protocol::ReplyCode::PRECONDITION_FAILED,
                format!(
                    "message size {} is larger than configured max size {max_size}",
                    header.body_size
                ),
            )
            .on(60, 40));
        }
        if header.body_size == 0 {
            return Ok(Some(Published {
                method,
                properties: header.properties,
                body: Bytes::new(),
            }));
        }
        *self = Assembler::Body {
            method,
            properties: Box::new(header.properties),
            body_size: header.body_size,
            parts: Vec::new(),
            received: 0,
        };
        Ok(None)
    }

    /// A body frame. A single-frame body stays the `Bytes` it arrived in (no copy).
    pub fn body(&mut self, payload: Bytes) -> Result<Option<Published>, AmqpError> {
        let Assembler::Body {
            body_size,
            parts,
            received,
            ..
        } = self
        else {
            let error = match self {
                Assembler::Header(_) => format!(
                    "expected content header for class {CLASS_BASIC}, got non content header frame instead"
                ),
                _ => "expected method frame, got non method frame instead".to_owned(),
            };
            return Err(AmqpError::unexpected_frame(error));
        };
        *received += payload.len() as u64;
        if *received > *body_size {
            return Err(AmqpError::unexpected_frame(format!(
                "received {} bytes of content body, more than the {body_size} the header announced",
                *received
            )));
        }
        parts.push(payload);
        if *received < *body_size {
            return Ok(None);
        }
        let Assembler::Body {
            method,
            properties,
            mut parts,
            ..
        } = std::mem::take(self)
        else {
            return Ok(None);
        };
        let body = if parts.len() == 1 {
            parts.pop().unwrap_or_default()
        } else {
            let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for part in &parts {
                all.extend_from_slice(part);
            }
            all.freeze()
        };
        Ok(Some(Published {
            method,
            properties: *properties,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn publish() -> BasicPublish {
        BasicPublish {
            exchange: "".into(),
            routing_key: "q".into(),
            mandatory: false,
            immediate: false,
        }
    }

    fn header(size: u64) -> ContentHeader {
        ContentHeader {
            class_id: CLASS_BASIC,
            body_size: size,
            properties: BasicProperties::default(),
        }
    }

    #[test]
    fn assembles_in_order_without_copying_one_frame() {
        let mut a = Assembler::default();
        a.start(publish());
        assert!(a.header(header(3), 10).unwrap().is_none());
        let body = Bytes::from_static(b"abc");
        let p = a.body(body.clone()).unwrap().unwrap();
        assert_eq!(p.body.as_ptr(), body.as_ptr());
        assert!(a.is_idle());
        a.start(publish());
        assert!(a.header(header(4), 10).unwrap().is_none());
        assert!(a.body(Bytes::from_static(b"ab")).unwrap().is_none());
        assert_eq!(
            &a.body(Bytes::from_static(b"cd")).unwrap().unwrap().body[..],
            b"abcd"
        );
        a.start(publish());
        assert!(a.header(header(0), 10).unwrap().is_some());
    }

    #[test]
    fn wrong_order_and_sizes() {
        let mut a = Assembler::default();
        assert_eq!(a.body(Bytes::new()).unwrap_err().code.code(), 505);
        a.start(publish());
        assert_eq!(
            a.check_method().unwrap_err().text,
            "expected content header for class 60, got non content header frame instead"
        );
        assert_eq!(
            a.header(header(11), 10).unwrap_err().text,
            "message size 11 is larger than configured max size 10"
        );
        a.start(publish());
        a.header(header(2), 10).unwrap();
        assert_eq!(
            a.body(Bytes::from_static(b"abc")).unwrap_err().code.code(),
            505
        );
    }
}
