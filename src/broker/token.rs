//! Random names for server-named queues (`amq.gen-…`) and consumer tags (`amq.ctag-…`).
//!
//! They only have to be unique and hard to guess by accident, not secret, so `std`'s randomly
//! keyed SipHash over a counter and the clock is enough and saves a dependency.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The characters RabbitMQ's names use (base64url).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn next_u64() -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEY.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.finish()
}

/// `len` random base64url characters.
pub fn random_token(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut bits = 0u64;
    let mut left = 0;
    for _ in 0..len {
        if left == 0 {
            bits = next_u64();
            left = 10;
        }
        out.push(char::from(ALPHABET[(bits & 63) as usize]));
        bits >>= 6;
        left -= 1;
    }
    out
}

/// A server-generated queue name, as RabbitMQ makes them: `amq.gen-` and 22 characters.
pub fn queue_name() -> String {
    format!("amq.gen-{}", random_token(22))
}

/// A server-generated consumer tag.
pub fn consumer_tag() -> String {
    format!("amq.ctag-{}", random_token(22))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_look_like_rabbitmqs_and_differ() {
        let a = queue_name();
        let b = queue_name();
        assert_eq!(a.len(), 30);
        assert!(a.starts_with("amq.gen-"));
        assert_ne!(a, b);
        assert!(consumer_tag().starts_with("amq.ctag-"));
        assert!(random_token(100)
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
