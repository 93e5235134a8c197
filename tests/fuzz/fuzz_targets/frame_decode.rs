//! Frame decoding from arbitrary bytes: no panic, no over-buffering, and every decoded frame
//! survives a re-encode. The checks live in `warren::protocol::fuzz::decode_all`, which the
//! stable test `tests/protocol_fuzz_corpus.rs` also runs over the saved corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warren::protocol::fuzz::decode_all(data);
});
