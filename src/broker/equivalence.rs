//! RabbitMQ's redeclaration checks (`rabbit_misc:assert_field_equivalence` and
//! `assert_args_equivalence`) and their exact 406 texts.

use super::error::BrokerError;
use crate::protocol::{FieldTable, FieldValue};

/// A flag or type that must match: "received 'true' but current is 'false'".
pub fn field(
    key: &str,
    current: impl std::fmt::Display,
    requested: impl std::fmt::Display,
    resource: &str,
) -> Result<(), BrokerError> {
    let (current, requested) = (current.to_string(), requested.to_string());
    if current == requested {
        return Ok(());
    }
    Err(fail(
        key,
        resource,
        &format!("'{requested}'"),
        &format!("'{current}'"),
    ))
}

/// Compares the arguments named in `keys` the way RabbitMQ does: integers of any width are
/// one type class, so `10` as a short equals `10` as a long.
pub fn args(
    current: &FieldTable,
    requested: &FieldTable,
    keys: &[&str],
    resource: &str,
) -> Result<(), BrokerError> {
    for key in keys {
        let (c, r) = (current.get(key), requested.get(key));
        let same = match (c, r) {
            (None, None) => true,
            (Some(c), Some(r)) => match (as_int(c), as_int(r)) {
                (Some(a), Some(b)) => a == b,
                _ => c.eq_as_parsed(r),
            },
            _ => false,
        };
        if !same {
            return Err(fail(key, resource, &describe(r), &describe(c)));
        }
    }
    Ok(())
}

fn fail(key: &str, resource: &str, requested: &str, current: &str) -> BrokerError {
    BrokerError::NotEquivalent {
        text: format!("inequivalent arg '{key}' for {resource}: received {requested} but current is {current}"),
    }
}

fn as_int(v: &FieldValue) -> Option<i128> {
    v.integer().map(i128::from)
}

/// RabbitMQ's `val/1`: "none" or "the value '10' of type 'long'".
fn describe(v: Option<&FieldValue>) -> String {
    let Some(v) = v else {
        return "none".to_owned();
    };
    let value = match v {
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::I8(n) => n.to_string(),
        FieldValue::U8(n) => n.to_string(),
        FieldValue::I16(n) => n.to_string(),
        FieldValue::U16(n) => n.to_string(),
        FieldValue::I32(n) => n.to_string(),
        FieldValue::U32(n) => n.to_string(),
        FieldValue::I64(n) | FieldValue::I64L(n) => n.to_string(),
        FieldValue::F32(n) => n.to_string(),
        FieldValue::F64(n) => n.to_string(),
        FieldValue::LongStr(s) | FieldValue::ByteArray(s) => {
            String::from_utf8_lossy(s).into_owned()
        }
        FieldValue::Timestamp(n) => n.to_string(),
        other => format!("{other:?}"),
    };
    let kind = v.type_name();
    format!("the value '{value}' of type '{kind}'")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::broker::error::resource;

    #[test]
    fn rabbitmq_texts() {
        let r = resource("exchange", "x", "/");
        assert_eq!(
            field("durable", false, true, &r).unwrap_err().to_string(),
            "inequivalent arg 'durable' for exchange 'x' in vhost '/': received 'true' but current is 'false'"
        );
        let mut a = FieldTable::new();
        a.insert("x-max-length", FieldValue::I32(10));
        let mut b = FieldTable::new();
        b.insert("x-max-length", FieldValue::I64(10));
        assert!(args(&a, &b, &["x-max-length"], &r).is_ok());
        assert_eq!(
            args(&FieldTable::new(), &b, &["x-max-length"], &r)
                .unwrap_err()
                .to_string(),
            "inequivalent arg 'x-max-length' for exchange 'x' in vhost '/': received the value '10' of type 'long' but current is none"
        );
    }
}
