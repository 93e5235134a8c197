//! The 8-octet protocol header a client sends before any frame.

/// `AMQP` followed by protocol id 0 and version 0-9-1.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// What the first octets of a connection say about the protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// Everything so far matches; more octets are needed.
    Incomplete,
    /// The 8 octets are AMQP 0-9-1's header.
    Valid,
    /// The octets seen cannot start the header: the server answers with its own header and
    /// closes, as the spec asks.
    Invalid,
}

/// Checks the start of `buf` against [`PROTOCOL_HEADER`], deciding as early as possible.
pub fn check_protocol_header(buf: &[u8]) -> HeaderCheck {
    let seen = buf.len().min(PROTOCOL_HEADER.len());
    if buf[..seen] != PROTOCOL_HEADER[..seen] {
        HeaderCheck::Invalid
    } else if seen < PROTOCOL_HEADER.len() {
        HeaderCheck::Incomplete
    } else {
        HeaderCheck::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_is_incomplete_and_the_whole_is_valid() {
        for len in 0..PROTOCOL_HEADER.len() {
            assert_eq!(
                check_protocol_header(&PROTOCOL_HEADER[..len]),
                HeaderCheck::Incomplete
            );
        }
        assert_eq!(check_protocol_header(&PROTOCOL_HEADER), HeaderCheck::Valid);
        let mut more = PROTOCOL_HEADER.to_vec();
        more.extend_from_slice(b"\x01\x00");
        assert_eq!(check_protocol_header(&more), HeaderCheck::Valid);
    }

    #[test]
    fn a_wrong_octet_is_invalid_at_once() {
        assert_eq!(check_protocol_header(b"G"), HeaderCheck::Invalid);
        assert_eq!(
            check_protocol_header(b"GET / HTTP/1.1"),
            HeaderCheck::Invalid
        );
        // AMQP 0-8 and 0-10 headers.
        assert_eq!(
            check_protocol_header(b"AMQP\x01\x01\x08\x00"),
            HeaderCheck::Invalid
        );
        assert_eq!(
            check_protocol_header(b"AMQP\x01\x01\x00\x0a"),
            HeaderCheck::Invalid
        );
        assert_eq!(
            check_protocol_header(b"AMQP\x00\x00\x09\x02"),
            HeaderCheck::Invalid
        );
    }
}
