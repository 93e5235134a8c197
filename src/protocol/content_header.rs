//! The content header frame payload: class, body size and the basic properties.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::HeaderError;
use super::generated::BasicProperties;
use super::wire::WireError;

/// Bit 0 of a property-flags word announces another flags word.
const CONTINUATION_FLAG: u16 = 0x0001;

/// class id, weight, body size and the first flags word.
const FIXED_LEN: usize = 14;

/// The header frame that follows a content-carrying method.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    pub properties: BasicProperties,
}

impl ContentHeader {
    /// Decodes a header frame payload. Properties are decoded as class basic's whatever the
    /// class id says (basic is the only content class), leaving the class check (505
    /// UNEXPECTED_FRAME) to the assembler that knows which method came before.
    ///
    /// Flag bit 1 is not assigned to any property; RabbitMQ ignores it, and so do we.
    pub fn decode(payload: Bytes) -> Result<ContentHeader, HeaderError> {
        // The fixed part is read by hand: it cannot fail once the length is checked, and the
        // properties are then decoded straight into the returned value (this is per message).
        let Some(&[c1, c2, _, _, b1, b2, b3, b4, b5, b6, b7, b8, f1, f2]) =
            payload.get(..FIXED_LEN)
        else {
            return Err(HeaderError::TooShort { payload });
        };
        let flags = u16::from_be_bytes([f1, f2]);
        if flags & CONTINUATION_FLAG != 0 {
            return Err(HeaderError::Continuation { flags });
        }
        let known = flags & BasicProperties::KNOWN_FLAGS;
        match BasicProperties::decode_fields(&payload, known, &payload[FIXED_LEN..]) {
            Ok(([], properties)) => Ok(ContentHeader {
                class_id: u16::from_be_bytes([c1, c2]),
                body_size: u64::from_be_bytes([b1, b2, b3, b4, b5, b6, b7, b8]),
                properties,
            }),
            Err(
                nom::Err::Error(WireError::InvalidUtf8) | nom::Err::Failure(WireError::InvalidUtf8),
            ) => Err(HeaderError::InvalidUtf8),
            _ => Err(HeaderError::Malformed { payload }),
        }
    }

    /// Appends the header frame payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.class_id);
        // The weight field is unused and must be zero.
        out.put_u16(0);
        out.put_u64(self.body_size);
        out.put_u16(self.properties.flags());
        self.properties.encode_fields(out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::field::{FieldTable, FieldValue};
    use crate::protocol::generated::arbitrary;

    fn encoded(header: &ContentHeader) -> Bytes {
        let mut out = BytesMut::new();
        header.encode(&mut out);
        out.freeze()
    }

    proptest! {
        #[test]
        fn header_round_trips(properties in arbitrary::properties(), body_size in any::<u64>(), class_id in any::<u16>()) {
            let header = ContentHeader { class_id, body_size, properties };
            prop_assert_eq!(ContentHeader::decode(encoded(&header)).unwrap(), header);
        }

        #[test]
        fn truncated_header_is_an_error(properties in arbitrary::properties(), cut in 1usize..40) {
            let header = ContentHeader { class_id: 60, body_size: 1, properties };
            let bytes = encoded(&header);
            prop_assume!(bytes.len() > FIXED_LEN);
            let keep = bytes.len().saturating_sub(cut).max(FIXED_LEN);
            prop_assume!(keep < bytes.len());
            prop_assert!(ContentHeader::decode(bytes.slice(..keep)).is_err());
        }
    }

    #[test]
    fn flags_follow_property_order() {
        let mut header = ContentHeader {
            class_id: 60,
            body_size: 3,
            properties: BasicProperties::default(),
        };
        header.properties.content_type = Some("text/plain".into());
        header.properties.delivery_mode = Some(2);
        header.properties.cluster_id = Some("c".into());
        let bytes = encoded(&header);
        assert_eq!(&bytes[12..14], &0x9004u16.to_be_bytes());
        assert_eq!(&bytes[14..], b"\x0atext/plain\x02\x01c");
    }

    #[test]
    fn continuation_flag_is_rejected_and_bit_one_ignored() {
        let mut bytes = BytesMut::from(&encoded(&ContentHeader::default())[..]);
        bytes[13] = 0x01;
        assert_eq!(
            ContentHeader::decode(bytes.clone().freeze()),
            Err(HeaderError::Continuation { flags: 1 })
        );
        bytes[13] = 0x02;
        assert_eq!(
            ContentHeader::decode(bytes.freeze()).unwrap(),
            ContentHeader::default()
        );
    }

    #[test]
    fn short_trailing_and_bad_tables_are_errors() {
        let short = Bytes::from_static(b"\x00\x3c");
        assert!(matches!(
            ContentHeader::decode(short),
            Err(HeaderError::TooShort { .. })
        ));
        let mut trailing = BytesMut::from(&encoded(&ContentHeader::default())[..]);
        trailing.put_u8(0);
        assert!(matches!(
            ContentHeader::decode(trailing.freeze()),
            Err(HeaderError::Malformed { .. })
        ));
        let mut bad_table = BytesMut::new();
        bad_table.put_slice(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0x20, 0]);
        bad_table.put_slice(b"\x00\x00\x00\x03\x01kZ");
        assert!(matches!(
            ContentHeader::decode(bad_table.freeze()),
            Err(HeaderError::Malformed { .. })
        ));
    }

    #[test]
    fn headers_table_survives() {
        let mut headers = FieldTable::new();
        headers.insert("x-delay", FieldValue::I64(5000));
        let header = ContentHeader {
            class_id: 60,
            body_size: 0,
            properties: BasicProperties {
                headers: Some(headers),
                ..BasicProperties::default()
            },
        };
        assert_eq!(ContentHeader::decode(encoded(&header)).unwrap(), header);
    }
}
