//! Key and value encodings shared by both stores (layout in the module doc of `store`).
//! Decoders return [`StoreError::Corrupt`] instead of panicking on a short or damaged record.

use bytes::{BufMut, Bytes, BytesMut};

use super::{DefinitionKind, MessageId, QueueEntry, QueueId, StoreError};

pub(crate) const CF_DEFINITIONS: &str = "definitions";
pub(crate) const CF_MESSAGES: &str = "messages";
pub(crate) const CF_REFS: &str = "refs";
pub(crate) const CF_QUEUE_INDEX: &str = "queue_index";
pub(crate) const CF_TRANSIENT: &str = "transient";
pub(crate) const CF_DEFAULT: &str = "default";

/// Key of the format-version record in the `default` column family.
pub(crate) const FORMAT_VERSION_KEY: &[u8] = b"format_version";

pub(crate) fn definition_key(kind: DefinitionKind, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(kind.0);
    out.extend_from_slice(key);
    out
}

pub(crate) fn message_key(id: MessageId) -> [u8; 8] {
    id.to_be_bytes()
}

/// `queue id + position`, both big-endian: one queue's keys are contiguous and in order.
pub(crate) fn position_key(queue: QueueId, position: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&queue.to_be_bytes());
    out[8..].copy_from_slice(&position.to_be_bytes());
    out
}

/// The exclusive upper bound of every key of `queue`: the first key of the next queue, or (for
/// the last possible queue id) a 17-byte key that sorts after all of its 16-byte keys.
pub(crate) fn queue_end_key(queue: QueueId) -> Vec<u8> {
    match queue.checked_add(1) {
        Some(next) => position_key(next, 0).to_vec(),
        None => {
            let mut key = position_key(queue, u64::MAX).to_vec();
            key.push(0);
            key
        }
    }
}

fn u64_at(column_family: &'static str, key: &[u8], at: usize) -> Result<u64, StoreError> {
    key.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            column_family,
            key: key.to_vec(),
            reason: format!("expected 8 bytes at offset {at}, record has {}", key.len()),
        })
}

/// Decodes a `queue id + position` key, checking it is exactly 16 bytes.
pub(crate) fn decode_position_key(
    column_family: &'static str,
    key: &[u8],
) -> Result<(QueueId, u64), StoreError> {
    if key.len() != 16 {
        return Err(StoreError::Corrupt {
            column_family,
            key: key.to_vec(),
            reason: format!("position key must be 16 bytes, found {}", key.len()),
        });
    }
    Ok((
        u64_at(column_family, key, 0)?,
        u64_at(column_family, key, 8)?,
    ))
}

pub(crate) fn decode_message_key(key: &[u8]) -> Result<MessageId, StoreError> {
    if key.len() != 8 {
        return Err(StoreError::Corrupt {
            column_family: CF_MESSAGES,
            key: key.to_vec(),
            reason: format!("message key must be 8 bytes, found {}", key.len()),
        });
    }
    u64_at(CF_MESSAGES, key, 0)
}

pub(crate) fn encode_entry(entry: &QueueEntry) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + entry.meta.len());
    out.put_u64(entry.message);
    out.put_slice(&entry.meta);
    out.freeze()
}

/// `key` is only for the error message.
pub(crate) fn decode_entry(key: &[u8], value: &[u8]) -> Result<QueueEntry, StoreError> {
    let message = u64_at(CF_QUEUE_INDEX, value, 0).map_err(|_| StoreError::Corrupt {
        column_family: CF_QUEUE_INDEX,
        key: key.to_vec(),
        reason: format!(
            "entry value must start with an 8-byte message id, found {} bytes",
            value.len()
        ),
    })?;
    Ok(QueueEntry {
        message,
        meta: Bytes::copy_from_slice(&value[8..]),
    })
}

pub(crate) fn encode_refs(refs: u32) -> [u8; 4] {
    refs.to_be_bytes()
}

pub(crate) fn decode_refs(key: &[u8], value: &[u8]) -> Result<u32, StoreError> {
    <[u8; 4]>::try_from(value)
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            column_family: CF_REFS,
            key: key.to_vec(),
            reason: format!("reference count must be 4 bytes, found {}", value.len()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_keys_sort_numerically() {
        assert!(position_key(1, 255) < position_key(1, 256));
        assert!(position_key(1, u64::MAX) < position_key(2, 0));
        assert!(position_key(1, u64::MAX).as_slice() < queue_end_key(1).as_slice());
        assert!(position_key(u64::MAX, u64::MAX).as_slice() < queue_end_key(u64::MAX).as_slice());
        assert_eq!(
            decode_position_key(CF_QUEUE_INDEX, &position_key(7, 300)).unwrap(),
            (7, 300)
        );
    }

    #[test]
    fn entries_round_trip() {
        let entry = QueueEntry {
            message: 42,
            meta: Bytes::from_static(b"\x01\x02"),
        };
        let bytes = encode_entry(&entry);
        assert_eq!(decode_entry(b"k", &bytes).unwrap(), entry);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        assert!(matches!(
            decode_entry(b"k", b"short"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_position_key(CF_QUEUE_INDEX, b"123"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_refs(b"k", b"12345"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_message_key(b""),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
