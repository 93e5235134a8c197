//! Entry points shared by the cargo-fuzz targets (`tests/fuzz/`) and the stable test that
//! replays their corpus (`tests/protocol_fuzz_corpus.rs`), so both exercise the same path.

use bytes::BytesMut;

use super::frame::{Frame, FrameDecoder};
use super::generated::FRAME_MIN_SIZE;

/// Decodes `data` as a stream of frames the way a connection does, until it needs more input
/// or hits an error. Every decoded frame is re-encoded and decoded again, which must give the
/// same frame. Returns how many frames were decoded.
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

#[allow(clippy::panic)]
fn check_round_trip(frame: &Frame) {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    match FrameDecoder::new(0).decode(&mut out) {
        Ok(Some(again)) if again == *frame || is_nan_noise(frame) => {}
        other => panic!("{frame:?} re-decoded as {other:?}"),
    }
}

/// NaN floats in a table compare unequal to themselves, so such frames cannot be compared.
fn is_nan_noise(frame: &Frame) -> bool {
    format!("{frame:?}").contains("NaN")
}
