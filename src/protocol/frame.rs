//! Frames: the decoder that cuts them out of a read buffer, and their encoders.
//!
//! A frame is `type:u8 channel:u16 size:u32 payload[size] 0xCE`. As in RabbitMQ, frame_max
//! counts the whole frame, so the largest payload is `frame_max - 8`.

use bytes::{BufMut, Bytes, BytesMut};

use super::content_header::ContentHeader;
use super::error::FrameError;
use super::generated::{
    Method, FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD,
};

/// Octets of a frame header: type, channel, size.
pub const FRAME_HEADER_SIZE: usize = 7;

/// Octets a frame adds around its payload: the header and the frame-end octet.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_SIZE + 1;

/// One decoded frame.
///
/// A heartbeat is decoded whatever its channel; RabbitMQ answers one on a channel other than 0
/// with `505 UNEXPECTED_FRAME - type 8, all octets = <<>>`, which is the connection's call.
// Header is the largest variant (the 14 properties inline); boxing it would cost an allocation
// per message to save a short memcpy, so the size difference is accepted.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Method { channel: u16, method: Method },
    Header { channel: u16, header: ContentHeader },
    Body { channel: u16, payload: Bytes },
    Heartbeat { channel: u16 },
}

impl Frame {
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. }
            | Frame::Heartbeat { channel } => *channel,
        }
    }

    /// Appends the frame. A body is written as one frame whatever its size; use
    /// [`encode_body`] to split a message body at frame_max.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Method { channel, method } => encode_method(*channel, method, out),
            Frame::Header { channel, header } => encode_header(*channel, header, out),
            Frame::Body { channel, payload } => {
                put_frame(out, FRAME_BODY, *channel, |out| out.put_slice(payload))
            }
            Frame::Heartbeat { channel } => put_frame(out, FRAME_HEARTBEAT, *channel, |_| {}),
        }
    }
}

/// The largest payload a frame_max allows; 0 means "no limit" in AMQP.
fn max_payload(frame_max: u32) -> u32 {
    match frame_max {
        0 => u32::MAX,
        n => n.saturating_sub(FRAME_OVERHEAD as u32),
    }
}

/// Cuts frames out of a read buffer. It holds only the negotiated frame_max: all partial-frame
/// state lives in the caller's buffer, so it can be retried after every read.
///
/// Invariant: a frame whose declared size exceeds `frame_max - 8` is rejected as soon as its
/// 7-octet header is in the buffer, and the buffer is never grown beyond the frame being
/// decoded, so a peer cannot make us buffer more than frame_max octets per frame.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    frame_max: u32,
}

impl FrameDecoder {
    /// `frame_max` counts the whole frame (header and frame-end octet included). 0 means "no
    /// limit" in AMQP, which lets the peer decide how much we buffer: a server should always
    /// pass its own maximum, and `FRAME_MIN_SIZE` before tune-ok.
    pub fn new(frame_max: u32) -> FrameDecoder {
        FrameDecoder { frame_max }
    }

    pub fn frame_max(&self) -> u32 {
        self.frame_max
    }

    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max;
    }

    /// Decodes one frame from the front of `buf`, removing its octets. `Ok(None)` means more
    /// octets are needed (the buffer is reserved up to the end of the frame, no further). After
    /// an error the connection must close: what is left in the buffer is unspecified.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(&[frame_type, c1, c2, s1, s2, s3, s4]) = buf.get(..FRAME_HEADER_SIZE) else {
            return Ok(None);
        };
        let channel = u16::from_be_bytes([c1, c2]);
        let size = u32::from_be_bytes([s1, s2, s3, s4]);
        let max_payload = max_payload(self.frame_max);
        if size > max_payload {
            return Err(FrameError::TooLarge {
                frame_type,
                channel,
                size,
                max_payload,
            });
        }
        let total = FRAME_OVERHEAD + size as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let end = buf[total - 1];
        if end != FRAME_END {
            let payload = Bytes::copy_from_slice(&buf[FRAME_HEADER_SIZE..total - 1]);
            return Err(FrameError::BadFrameEnd {
                frame_type,
                channel,
                found: end,
                payload,
            });
        }
        // Split first so the payload is a view of the read buffer, not a copy.
        let frame = buf.split_to(total).freeze();
        let payload = frame.slice(FRAME_HEADER_SIZE..total - 1);
        parse_payload(frame_type, channel, payload)
    }
}

fn parse_payload(
    frame_type: u8,
    channel: u16,
    payload: Bytes,
) -> Result<Option<Frame>, FrameError> {
    match frame_type {
        FRAME_METHOD => match Method::decode(payload) {
            Ok(method) => Ok(Some(Frame::Method { channel, method })),
            Err(error) => Err(FrameError::Method { channel, error }),
        },
        FRAME_HEADER => match ContentHeader::decode(payload) {
            Ok(header) => Ok(Some(Frame::Header { channel, header })),
            Err(error) => Err(FrameError::Header { channel, error }),
        },
        FRAME_BODY => Ok(Some(Frame::Body { channel, payload })),
        FRAME_HEARTBEAT if payload.is_empty() => Ok(Some(Frame::Heartbeat { channel })),
        _ => Err(FrameError::UnknownFrame {
            frame_type,
            channel,
            payload,
        }),
    }
}

/// Writes a frame around what `payload` appends, patching the size in afterwards.
fn put_frame(
    out: &mut BytesMut,
    frame_type: u8,
    channel: u16,
    payload: impl FnOnce(&mut BytesMut),
) {
    out.put_u8(frame_type);
    out.put_u16(channel);
    let at = out.len();
    out.put_u32(0);
    payload(out);
    let size = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

pub fn encode_method(channel: u16, method: &Method, out: &mut BytesMut) {
    put_frame(out, FRAME_METHOD, channel, |out| method.encode(out));
}

pub fn encode_header(channel: u16, header: &ContentHeader, out: &mut BytesMut) {
    put_frame(out, FRAME_HEADER, channel, |out| header.encode(out));
}

/// Appends `body` as body frames of at most `frame_max` octets each (0: no limit). An empty
/// body gets no frame at all, as RabbitMQ sends it.
pub fn encode_body(channel: u16, body: &[u8], frame_max: u32, out: &mut BytesMut) {
    let chunk = (max_payload(frame_max) as usize).max(1);
    out.reserve(body.len() + body.len().div_ceil(chunk) * FRAME_OVERHEAD);
    for part in body.chunks(chunk) {
        put_frame(out, FRAME_BODY, channel, |out| out.put_slice(part));
    }
}

pub fn encode_heartbeat(out: &mut BytesMut) {
    put_frame(out, FRAME_HEARTBEAT, 0, |_| {});
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::generated::{arbitrary, BasicPublish, ConnectionTuneOk, FRAME_MIN_SIZE};

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let channel = any::<u16>();
        prop_oneof![
            (channel, arbitrary::method())
                .prop_map(|(channel, method)| Frame::Method { channel, method }),
            (channel, arbitrary::properties(), any::<u64>()).prop_map(
                |(channel, properties, body_size)| {
                    Frame::Header {
                        channel,
                        header: ContentHeader {
                            class_id: 60,
                            body_size,
                            properties,
                        },
                    }
                }
            ),
            (channel, vec(any::<u8>(), 0..300)).prop_map(|(channel, body)| Frame::Body {
                channel,
                payload: Bytes::from(body),
            }),
            channel.prop_map(|channel| Frame::Heartbeat { channel }),
        ]
    }

    /// Feeds `bytes` in chunks of the given sizes (cycled), decoding after each.
    fn decode_in_chunks(
        bytes: &[u8],
        chunks: &[usize],
        frame_max: u32,
    ) -> Result<Vec<Frame>, FrameError> {
        let mut decoder = FrameDecoder::new(frame_max);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut rest = bytes;
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let take = sizes
                .next()
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            while let Some(frame) = decoder.decode(&mut buf)? {
                frames.push(frame);
            }
            assert!(
                buf.len() < frame_max as usize,
                "waiting with {} octets buffered, frame_max {frame_max}",
                buf.len()
            );
        }
        Ok(frames)
    }

    proptest! {
        #[test]
        fn frames_round_trip_in_any_chunking(
            frames in vec(arb_frame(), 1..8),
            chunks in vec(1usize..200, 1..8),
        ) {
            let mut bytes = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut bytes);
            }
            let decoded = decode_in_chunks(&bytes, &chunks, 1 << 20).unwrap();
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn every_method_round_trips(method in arbitrary::method(), channel in any::<u16>()) {
            let mut bytes = BytesMut::new();
            encode_method(channel, &method, &mut bytes);
            let frame = FrameDecoder::new(0).decode(&mut bytes).unwrap();
            prop_assert_eq!(frame, Some(Frame::Method { channel, method }));
            prop_assert!(bytes.is_empty());
        }

        #[test]
        fn truncated_methods_are_errors_not_panics(method in arbitrary::method(), cut in 1usize..32) {
            let mut bytes = BytesMut::new();
            method.encode(&mut bytes);
            prop_assume!(cut <= bytes.len() - 4);
            let short = bytes.freeze().slice(..);
            let keep = short.len() - cut;
            prop_assert!(Method::decode(short.slice(..keep)).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_overbuffer(
            bytes in vec(any::<u8>(), 0..2000),
            chunks in vec(1usize..300, 1..6),
            frame_max in 8u32..600,
        ) {
            let _ = decode_in_chunks(&bytes, &chunks, frame_max);
        }

        #[test]
        fn plausible_headers_with_random_payloads_never_panic(
            frame_type in prop_oneof![Just(1u8), Just(2u8), Just(3u8), Just(8u8)],
            class_method in prop_oneof![Just((10u16, 11u16)), Just((50, 10)), Just((60, 40)), Just((60, 60))],
            body in vec(any::<u8>(), 0..200),
        ) {
            let mut payload = BytesMut::new();
            if frame_type == 1 {
                payload.put_u16(class_method.0);
                payload.put_u16(class_method.1);
            }
            payload.put_slice(&body);
            let mut bytes = BytesMut::new();
            put_frame(&mut bytes, frame_type, 1, |out| out.put_slice(&payload));
            let _ = FrameDecoder::new(FRAME_MIN_SIZE).decode(&mut bytes);
        }

        #[test]
        fn bodies_split_at_frame_max(len in 0usize..5000, frame_max in 9u32..1000) {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut bytes = BytesMut::new();
            encode_body(3, &body, frame_max, &mut bytes);
            let mut decoder = FrameDecoder::new(frame_max);
            let mut joined = Vec::new();
            while let Some(frame) = decoder.decode(&mut bytes).unwrap() {
                let Frame::Body { channel: 3, payload } = frame else { panic!("not a body frame") };
                prop_assert!(payload.len() + FRAME_OVERHEAD <= frame_max as usize);
                prop_assert!(!payload.is_empty());
                joined.extend_from_slice(&payload);
            }
            prop_assert!(bytes.is_empty());
            prop_assert_eq!(joined, body);
        }
    }

    #[test]
    fn oversized_frame_is_rejected_from_its_header_alone() {
        let mut decoder = FrameDecoder::new(131_072);
        let mut buf = BytesMut::new();
        buf.put_u8(FRAME_METHOD);
        buf.put_u16(1);
        buf.put_u32(200_000);
        let error = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(
            error,
            FrameError::TooLarge {
                frame_type: 1,
                channel: 1,
                size: 200_000,
                max_payload: 131_064
            }
        );
        assert_eq!(error.reply_code().code(), 501);
        assert!(buf.capacity() < 1024, "reserved {} octets", buf.capacity());
        // Exactly frame_max is allowed: the limit counts the 8 octets of framing.
        let mut frame = BytesMut::new();
        encode_body(1, &[7; 4088], 4096, &mut frame);
        assert_eq!(frame.len(), 4096);
        let frame = FrameDecoder::new(4096).decode(&mut frame).unwrap();
        assert!(matches!(frame, Some(Frame::Body { payload, .. }) if payload.len() == 4088));
    }

    #[test]
    fn bad_frame_end_is_501() {
        let mut buf = BytesMut::new();
        buf.put_slice(&[1, 0, 1, 0, 0, 0, 4, 0, 90, 0, 10, 0]);
        let error = FrameDecoder::new(4096).decode(&mut buf).unwrap_err();
        assert_eq!(
            error.to_string(),
            "FRAME_ERROR - type 1, all octets = <<0,90,0,10>>: {invalid_frame_end_marker,0}"
        );
        assert_eq!(error.reply_code().code(), 501);
    }

    #[test]
    fn unknown_frame_type_and_noisy_heartbeat_are_501() {
        let mut buf = BytesMut::new();
        put_frame(&mut buf, 9, 1, |out| out.put_slice(b"abc"));
        let error = FrameDecoder::new(4096).decode(&mut buf).unwrap_err();
        assert_eq!(
            error.to_string(),
            "FRAME_ERROR - type 9, all octets = <<\"abc\">>: unknown_frame"
        );
        let mut buf = BytesMut::new();
        put_frame(&mut buf, FRAME_HEARTBEAT, 0, |out| out.put_u8(1));
        let error = FrameDecoder::new(4096).decode(&mut buf).unwrap_err();
        assert_eq!(error.reply_code().code(), 501);
    }

    #[test]
    fn method_errors_carry_ids_and_rabbitmq_texts() {
        let decode = |payload: &[u8]| {
            let mut buf = BytesMut::new();
            put_frame(&mut buf, FRAME_METHOD, 1, |out| out.put_slice(payload));
            FrameDecoder::new(4096).decode(&mut buf).unwrap_err()
        };
        let truncated = decode(&[0, 50, 0, 10, 0, 0, 5, 97, 98]);
        assert_eq!(
            truncated.to_string(),
            "FRAME_ERROR - cannot decode <<0,0,5,97,98>>"
        );
        assert_eq!(
            (
                truncated.class_id(),
                truncated.method_id(),
                truncated.channel()
            ),
            (50, 10, 1)
        );
        let trailing = decode(&[0, 90, 0, 10, b'x', b'y', b'z']);
        assert_eq!(
            trailing.to_string(),
            "FRAME_ERROR - cannot decode <<\"xyz\">>"
        );
        let short = decode(&[0]);
        assert_eq!(
            short.to_string(),
            "FRAME_ERROR - type 1, all octets = <<0>>: unknown_frame"
        );
        let unknown = decode(&[0, 99, 0, 1]);
        assert_eq!(unknown.reply_code().code(), 540);
        assert_eq!((unknown.class_id(), unknown.method_id()), (99, 1));
        let utf8 = decode(&[0, 50, 0, 10, 0, 0, 2, 0xff, 0xfe, 0, 0, 0, 0, 0]);
        assert_eq!(
            utf8.to_string(),
            "FRAME_ERROR - Malformed UTF-8 in shortstr"
        );
    }

    #[test]
    fn body_payload_is_not_copied() {
        let mut buf = BytesMut::new();
        encode_body(5, &[1; 1000], 0, &mut buf);
        let start = buf.as_ptr() as usize;
        let Some(Frame::Body { payload, .. }) = FrameDecoder::new(4096).decode(&mut buf).unwrap()
        else {
            panic!("expected a body frame");
        };
        assert_eq!(payload.as_ptr() as usize, start + FRAME_HEADER_SIZE);
    }

    #[test]
    fn known_bytes_of_a_real_client() {
        // tune-ok with channel_max 2047, frame_max 131072, heartbeat 60, as pika sends it.
        let mut buf = BytesMut::from(
            &b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1f\x07\xff\x00\x02\x00\x00\x00\x3c\xce"[..],
        );
        let frame = FrameDecoder::new(4096).decode(&mut buf).unwrap();
        let expected = ConnectionTuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        };
        assert_eq!(
            frame,
            Some(Frame::Method {
                channel: 0,
                method: expected.into()
            })
        );
        let publish = Method::from(BasicPublish {
            exchange: "".into(),
            routing_key: "q".into(),
            mandatory: true,
            immediate: false,
        });
        let mut bytes = BytesMut::new();
        publish.encode(&mut bytes);
        assert_eq!(&bytes[..], b"\x00\x3c\x00\x28\x00\x00\x00\x01q\x01");
    }
}
