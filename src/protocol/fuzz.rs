//! Entry points shared by the cargo-fuzz targets (`tests/fuzz/`) and the stable test that
//! replays their corpus (`tests/it/protocol_fuzz_corpus.rs`), so both exercise the same path.

use bytes::BytesMut;

use super::frame::{Frame, FrameDecoder};
use super::generated::FRAME_MIN_SIZE;

/// Decodes `data` as a stream of frames the way a connection does, until it needs more input
/// or hits an error. Every decoded frame is re-encoded and decoded again, which must give the
/// same bytes. Returns how many frames were decoded.
///
/// The first two octets choose how `data` is cut into reads and the frame_max, so the fuzzer
/// also explores partial frames and limits.
#[allow(clippy::panic)] // a broken round trip is the bug the fuzzer looks for
pub fn decode_all(data: &[u8]) -> usize {
    let (chunk, frame_max, data) = match data {
        [a, b, rest @ ..] => (usize::from(*a).max(1), FRAME_MIN_SIZE << (b % 6), rest),
        _ => (1, FRAME_MIN_SIZE, data),
    };
    let mut decoder = FrameDecoder::new(frame_max);
    let mut buf = BytesMut::new();
    let mut decoded = 0;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    check_round_trip(&frame);
                    decoded += 1;
                }
                Ok(None) => break,
                Err(error) => {
                    // The close must be expressible: a hard code and a shortstr-sized text.
                    let text = error.to_string();
                    if !error.reply_code().is_hard() || text.len() > 255 {
                        panic!("unusable close for {error:?}: {text}");
                    }
                    return decoded;
                }
            }
        }
        if buf.len() >= frame_max as usize {
            panic!("waiting for more input with {} octets buffered", buf.len());
        }
    }
    decoded
}

/// Compares encodings rather than frames: decoding normalizes some input (any non-zero octet is
/// `true`, reserved fields are dropped) and NaN floats never compare equal, but a frame we
/// produced must decode to one that encodes to the very same bytes.
#[allow(clippy::panic)]
fn check_round_trip(frame: &Frame) {
    let mut first = BytesMut::new();
    frame.encode(&mut first);
    let expected = first.clone().freeze();
    let again = match FrameDecoder::new(0).decode(&mut first) {
        Ok(Some(again)) if first.is_empty() => again,
        other => panic!("{frame:?} re-decoded as {other:?}"),
    };
    let mut second = BytesMut::new();
    again.encode(&mut second);
    if second != expected {
        panic!("{frame:?} re-encoded differently");
    }
}
