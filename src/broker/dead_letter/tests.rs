use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::broker::queue_args::MAX_EXPIRY_MS;

fn keys(list: &[&str]) -> Vec<Bytes> {
    list.iter()
        .map(|k| Bytes::copy_from_slice(k.as_bytes()))
        .collect()
}

fn ls(text: &str) -> FieldValue {
    FieldValue::LongStr(Bytes::copy_from_slice(text.as_bytes()))
}

fn death<'a>(
    queue: &'a str,
    reason: DeathReason,
    exchange: &'a str,
    routing_keys: &'a [Bytes],
    now_ms: u64,
) -> Death<'a> {
    Death {
        queue,
        reason,
        exchange,
        routing_keys,
        bcc: &[],
        now_ms,
    }
}

fn header_keys(properties: &BasicProperties) -> Vec<String> {
    properties
        .headers
        .as_ref()
        .unwrap()
        .iter()
        .map(|(k, _)| k.to_string())
        .collect()
}

fn x_death(properties: &BasicProperties) -> Vec<FieldTable> {
    match properties.headers.as_ref().unwrap().get("x-death") {
        Some(FieldValue::Array(items)) => items
            .iter()
            .map(|item| match item {
                FieldValue::Table(table) => table.clone(),
                other => panic!("x-death item {other:?}"),
            })
            .collect(),
        other => panic!("x-death {other:?}"),
    }
}

const NOW: u64 = 1_795_000_000_123;

#[test]
fn first_death_writes_x_death_field_by_field() {
    let published = keys(&["k0", "k1"]);
    let headers: FieldTable = [("zz", FieldValue::I32(1)), ("aa", FieldValue::I32(2))]
        .into_iter()
        .collect();
    let properties = BasicProperties {
        headers: Some(headers),
        expiration: Some("5000".into()),
        priority: Some(3),
        message_id: Some("m1".into()),
        ..BasicProperties::default()
    };
    let target = DeadLetterTarget {
        exchange: b"dlx",
        routing_key: None,
    };
    let copy = dead_letter(
        &properties,
        None,
        &death("work", DeathReason::Expired, "amq.direct", &published, NOW),
        &target,
    );

    // The copy loses its expiration and keeps every other property.
    assert_eq!(copy.properties.expiration, None);
    assert_eq!(copy.properties.priority, Some(3));
    assert_eq!(copy.properties.message_id, Some("m1".into()));
    assert_eq!(copy.exchange, Bytes::from_static(b"dlx"));
    assert_eq!(copy.routing_keys, published);

    assert_eq!(
        header_keys(&copy.properties),
        [
            "x-last-death-reason",
            "x-last-death-queue",
            "x-last-death-exchange",
            "x-first-death-reason",
            "x-first-death-queue",
            "x-first-death-exchange",
            "aa",
            "x-death",
            "zz",
        ]
    );
    let headers = copy.properties.headers.as_ref().unwrap();
    assert_eq!(headers.get("x-first-death-queue"), Some(&ls("work")));
    assert_eq!(headers.get("x-first-death-reason"), Some(&ls("expired")));
    assert_eq!(
        headers.get("x-first-death-exchange"),
        Some(&ls("amq.direct"))
    );
    assert_eq!(headers.get("x-last-death-queue"), Some(&ls("work")));

    let entries = x_death(&copy.properties);
    assert_eq!(entries.len(), 1);
    let fields: Vec<(String, FieldValue)> = entries[0]
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("original-expiration".to_owned(), ls("5000")),
            ("count".to_owned(), FieldValue::I64(1)),
            ("reason".to_owned(), ls("expired")),
            ("queue".to_owned(), ls("work")),
            ("time".to_owned(), FieldValue::Timestamp(NOW / 1000)),
            ("exchange".to_owned(), ls("amq.direct")),
            (
                "routing-keys".to_owned(),
                FieldValue::Array(vec![ls("k0"), ls("k1")])
            ),
        ]
    );
}

#[test]
fn no_expiration_no_original_expiration_and_4x_normalises_it() {
    let published = keys(&["q"]);
    let target = DeadLetterTarget {
        exchange: b"",
        routing_key: Some(b"other"),
    };
    let plain = dead_letter(
        &BasicProperties::default(),
        None,
        &death("q", DeathReason::Rejected, "", &published, NOW),
        &target,
    );
    let entry = &x_death(&plain.properties)[0];
    assert_eq!(entry.iter().next().unwrap().0.as_str(), "count");
    assert_eq!(entry.get("original-expiration"), None);

    // 4.x writes the parsed TTL back (integer_to_binary): "007" becomes "7" (3.10.8 kept "007").
    let padded = BasicProperties {
        expiration: Some("007".into()),
        ..BasicProperties::default()
    };
    let copy = dead_letter(
        &padded,
        None,
        &death("q", DeathReason::Expired, "", &published, NOW),
        &target,
    );
    assert_eq!(
        x_death(&copy.properties)[0].get("original-expiration"),
        Some(&ls("7"))
    );
}

/// The interop `dlx_retry_xdeath` loop: work --rejected--> DLX --> wait (TTL) --expired-->
/// default exchange --> work, three rounds.
#[test]
fn retry_loop_counts_and_keeps_first_times() {
    let mut properties = BasicProperties {
        headers: Some([("app", ls("kept"))].into_iter().collect()),
        ..BasicProperties::default()
    };
    let mut history: Option<Deaths> = None;
    let mut exchange = String::from("");
    let mut routing = keys(&["work"]);
    let to_wait = DeadLetterTarget {
        exchange: b"dlx",
        routing_key: Some(b"wait"),
    };
    let to_work = DeadLetterTarget {
        exchange: b"",
        routing_key: Some(b"work"),
    };
    for round in 0..3u64 {
        let t = NOW + round * 10_000;
        let rejected = dead_letter(
            &properties,
            history.as_ref(),
            &death("work", DeathReason::Rejected, &exchange, &routing, t),
            &to_wait,
        );
        assert!(!rejected.is_cycle("work"), "a rejection is never a cycle");
        assert!(!rejected.is_cycle("wait"));
        let expired = dead_letter(
            &rejected.properties,
            Some(&rejected.deaths),
            &death(
                "wait",
                DeathReason::Expired,
                "dlx",
                &rejected.x_death_routing_keys,
                t + 5_000,
            ),
            &to_work,
        );
        // Back to work: the cycle contains the rejection, so it is delivered.
        assert!(!expired.is_cycle("work"));
        properties = expired.properties;
        history = Some(expired.deaths);
        exchange = String::from_utf8(expired.exchange.to_vec()).unwrap();
        routing = expired.x_death_routing_keys;

        let entries = x_death(&properties);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].get("queue"), Some(&ls("wait")));
        assert_eq!(entries[0].get("reason"), Some(&ls("expired")));
        assert_eq!(
            entries[0].get("count"),
            Some(&FieldValue::I64(round as i64 + 1))
        );
        assert_eq!(
            entries[0].get("time"),
            Some(&FieldValue::Timestamp((NOW + 5_000) / 1000))
        );
        assert_eq!(entries[0].get("exchange"), Some(&ls("dlx")));
        assert_eq!(
            entries[0].get("routing-keys"),
            Some(&FieldValue::Array(vec![ls("wait")]))
        );
        assert_eq!(entries[1].get("queue"), Some(&ls("work")));
        assert_eq!(entries[1].get("reason"), Some(&ls("rejected")));
        assert_eq!(
            entries[1].get("count"),
            Some(&FieldValue::I64(round as i64 + 1))
        );
        assert_eq!(
            entries[1].get("time"),
            Some(&FieldValue::Timestamp(NOW / 1000))
        );
        // The entry keeps how the message was published when it first died this way.
        assert_eq!(entries[1].get("exchange"), Some(&ls("")));
        assert_eq!(
            entries[1].get("routing-keys"),
            Some(&FieldValue::Array(vec![ls("work")]))
        );

        let headers = properties.headers.as_ref().unwrap();
        assert_eq!(headers.get("x-first-death-queue"), Some(&ls("work")));
        assert_eq!(headers.get("x-first-death-reason"), Some(&ls("rejected")));
        assert_eq!(headers.get("x-first-death-exchange"), Some(&ls("")));
        assert_eq!(headers.get("x-last-death-queue"), Some(&ls("wait")));
        assert_eq!(headers.get("x-last-death-reason"), Some(&ls("expired")));
        assert_eq!(headers.get("x-last-death-exchange"), Some(&ls("dlx")));
        assert_eq!(headers.get("app"), Some(&ls("kept")));
        // Each key once, however often the headers were rewritten.
        let names = header_keys(&properties);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len());
    }
}

#[test]
fn a_repeated_death_moves_its_entry_to_the_front() {
    let rk = keys(&["a"]);
    let target = DeadLetterTarget {
        exchange: b"x",
        routing_key: None,
    };
    let p = BasicProperties::default();
    let one = dead_letter(
        &p,
        None,
        &death("a", DeathReason::Expired, "x", &rk, NOW),
        &target,
    );
    let two = dead_letter(
        &one.properties,
        Some(&one.deaths),
        &death("b", DeathReason::Maxlen, "x", &rk, NOW + 1000),
        &target,
    );
    let three = dead_letter(
        &two.properties,
        Some(&two.deaths),
        &death("a", DeathReason::Expired, "x", &rk, NOW + 2000),
        &target,
    );
    let order: Vec<_> = three
        .deaths
        .records()
        .iter()
        .map(|r| (r.queue.to_string(), r.reason, r.count))
        .collect();
    assert_eq!(
        order,
        vec![
            ("a".to_owned(), DeathReason::Expired, 2),
            ("b".to_owned(), DeathReason::Maxlen, 1)
        ]
    );
    assert_eq!(three.deaths.records()[0].first_time_ms, NOW);
    assert_eq!(three.deaths.records()[0].last_time_ms, NOW + 2000);
    assert_eq!(three.deaths.first().queue, "a");
    assert_eq!(three.deaths.last().queue, "a");
    assert_eq!(two.deaths.last().reason, DeathReason::Maxlen);
}

#[test]
fn dead_letter_routing_key_replaces_keys_and_drops_cc() {
    let cc = FieldValue::Array(vec![ls("k1")]);
    let properties = BasicProperties {
        headers: Some([("CC", cc.clone())].into_iter().collect()),
        ..BasicProperties::default()
    };
    let published = keys(&["k0", "k1"]);
    let bcc = keys(&["k2"]);
    let mut d = death("src", DeathReason::Rejected, "amq.direct", &published, NOW);
    d.bcc = &bcc;

    let with_key = dead_letter(
        &properties,
        None,
        &d,
        &DeadLetterTarget {
            exchange: b"amq.direct",
            routing_key: Some(b"k1"),
        },
    );
    assert_eq!(with_key.routing_keys, keys(&["k1"]));
    assert_eq!(with_key.x_death_routing_keys, keys(&["k1"]));
    let headers = with_key.properties.headers.as_ref().unwrap();
    assert_eq!(headers.get("CC"), None);
    // x-death still shows the keys it was published with (CC included, BCC not).
    assert_eq!(
        x_death(&with_key.properties)[0].get("routing-keys"),
        Some(&FieldValue::Array(vec![ls("k0"), ls("k1")]))
    );

    let without_key = dead_letter(
        &properties,
        None,
        &d,
        &DeadLetterTarget {
            exchange: b"amq.direct",
            routing_key: None,
        },
    );
    // Routed to k0, CC k1 and (as seen on 3.10.8) BCC k2; counted as published with k0, k1.
    assert_eq!(without_key.routing_keys, keys(&["k0", "k1", "k2"]));
    assert_eq!(without_key.x_death_routing_keys, keys(&["k0", "k1"]));
    assert_eq!(
        without_key.properties.headers.as_ref().unwrap().get("CC"),
        Some(&cc)
    );
}

/// 4.x does not interpret a client's `x-death`: it is replaced (in place, then the table is
/// sorted), and a client's summary headers give way to the broker's.
#[test]
fn client_supplied_death_headers_are_not_history() {
    let forged = FieldValue::Array(vec![FieldValue::Table(
        [
            ("count", FieldValue::I64(99)),
            ("queue", ls("q")),
            ("reason", ls("expired")),
        ]
        .into_iter()
        .collect(),
    )]);
    let properties = BasicProperties {
        headers: Some(
            [
                ("x-death", forged),
                ("x-first-death-queue", ls("forged")),
                ("B", FieldValue::I32(1)),
            ]
            .into_iter()
            .collect(),
        ),
        ..BasicProperties::default()
    };
    let rk = keys(&["q"]);
    let copy = dead_letter(
        &properties,
        None,
        &death("q", DeathReason::Expired, "", &rk, NOW),
        &DeadLetterTarget {
            exchange: b"",
            routing_key: None,
        },
    );
    let entries = x_death(&copy.properties);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].get("count"), Some(&FieldValue::I64(1)));
    let headers = copy.properties.headers.as_ref().unwrap();
    assert_eq!(headers.get("x-first-death-queue"), Some(&ls("q")));
    assert_eq!(
        header_keys(&copy.properties)[6..],
        ["B".to_owned(), "x-death".to_owned()]
    );
    // Self-loop through the default exchange on expiry: a cycle, dropped.
    assert!(copy.is_cycle("q"));
}

#[test]
fn stored_history_round_trips_and_rejects_garbage() {
    let rk = keys(&["r"]);
    let properties = BasicProperties {
        expiration: Some("60000".into()),
        ..BasicProperties::default()
    };
    let copy = dead_letter(
        &properties,
        None,
        &death("q", DeathReason::Expired, "ex", &rk, NOW),
        &DeadLetterTarget {
            exchange: b"",
            routing_key: None,
        },
    );
    let table = copy.deaths.to_table();
    assert_eq!(Deaths::from_table(&table), Some(copy.deaths.clone()));
    assert_eq!(Deaths::from_table(&FieldTable::new()), None);
    let mut broken = table.clone();
    broken.insert("records", FieldValue::Array(vec![]));
    assert_eq!(Deaths::from_table(&broken), None);
}

#[test]
fn cycle_rules() {
    let rk = keys(&["r"]);
    let p = BasicProperties::default();
    let dlx = DeadLetterTarget {
        exchange: b"",
        routing_key: None,
    };
    let step = |prev: Option<&DeadLettered>, queue: &str, reason| {
        dead_letter(
            prev.map_or(&p, |d| &d.properties),
            prev.map(|d| &d.deaths),
            &death(queue, reason, "", &rk, NOW),
            &dlx,
        )
    };
    // q1 (TTL) -> q2 (TTL) -> q1: fully automatic, dropped at q1.
    let a = step(None, "q1", DeathReason::Expired);
    assert!(!a.is_cycle("q2"));
    let b = step(Some(&a), "q2", DeathReason::Expired);
    assert!(b.is_cycle("q1"));
    assert!(b.is_cycle("q2"));
    assert!(!b.is_cycle("q3"));
    // A max-length drop is automatic too.
    let m = step(None, "q1", DeathReason::Maxlen);
    assert!(m.is_cycle("q1"));
    let l = step(None, "q1", DeathReason::DeliveryLimit);
    assert!(l.is_cycle("q1"));
    // A rejection anywhere between the last visit to the target and now breaks the cycle.
    let r = step(None, "q1", DeathReason::Rejected);
    let r2 = step(Some(&r), "q2", DeathReason::Expired);
    assert!(!r2.is_cycle("q1"));
    assert!(r2.is_cycle("q2"));
    // A rejection older than the loop does not: q0 rejected, then q1 -> q2 -> q1 by TTL.
    let old = step(None, "q0", DeathReason::Rejected);
    let o1 = step(Some(&old), "q1", DeathReason::Expired);
    let o2 = step(Some(&o1), "q2", DeathReason::Expired);
    assert!(o2.is_cycle("q1"));
    assert!(!o2.is_cycle("q0"));
    // The death being recorded now is a rejection: never a cycle.
    let now_rejected = step(Some(&o2), "q2", DeathReason::Rejected);
    assert!(!now_rejected.is_cycle("q1"));
}

#[test]
fn expiration_texts() {
    // Each from RabbitMQ 3.10.8's channel.close on publish.
    let rows: &[(&str, &str)] = &[
        ("-1", "invalid expiration '-1': {value_negative,-1}"),
        ("abc", "invalid expiration 'abc': no_integer"),
        ("", "invalid expiration '': no_integer"),
        ("10x", "invalid expiration '10x': {leftover_string,\"x\"}"),
        (" 5", "invalid expiration ' 5': no_integer"),
        ("5 ", "invalid expiration '5 ': {leftover_string,\" \"}"),
        ("1.5", "invalid expiration '1.5': {leftover_string,\".5\"}"),
        ("5\n", "invalid expiration '5\n': {leftover_string,\"\\n\"}"),
        ("\t5", "invalid expiration '\t5': no_integer"),
        ("-", "invalid expiration '-': no_integer"),
        ("+", "invalid expiration '+': no_integer"),
        ("-abc", "invalid expiration '-abc': no_integer"),
        ("1e3", "invalid expiration '1e3': {leftover_string,\"e3\"}"),
        (
            "0x10",
            "invalid expiration '0x10': {leftover_string,\"x10\"}",
        ),
        ("5_0", "invalid expiration '5_0': {leftover_string,\"_0\"}"),
        ("'", "invalid expiration ''': no_integer"),
        ("a\"b", "invalid expiration 'a\"b': no_integer"),
        ("\u{661}", "invalid expiration '\u{661}': no_integer"),
        ("1é", "invalid expiration '1é': {leftover_string,\"é\"}"),
        (
            "1€",
            "invalid expiration '1€': {leftover_string,[226,130,172]}",
        ),
        (
            "315360000001",
            "invalid expiration '315360000001': {value_too_large,315360000001}",
        ),
        (
            "+999999999999999999",
            "invalid expiration '+999999999999999999': {value_too_large,999999999999999999}",
        ),
        (
            "-999999999999999999",
            "invalid expiration '-999999999999999999': {value_negative,-999999999999999999}",
        ),
        (
            "1xxxxxxxxxxxxxxxxx",
            "invalid expiration '1xxxxxxxxxxxxxxxxx': {leftover_string,\"xxxxxxxxxxxxxxxxx\"}",
        ),
        (
            "1ééééééééx",
            "invalid expiration '1ééééééééx': {leftover_string,\"ééééééééx\"}",
        ),
    ];
    for (value, text) in rows {
        assert_eq!(
            parse_expiration(value).unwrap_err().to_string(),
            *text,
            "{value:?}"
        );
    }
    // Past column 78 the tuple breaks (observed byte for byte).
    let wrapped: &[(&str, &str, usize)] = &[
        ("9999999999999999999", "{value_too_large,\n", 43),
        ("+9999999999999999999", "{value_too_large,\n", 44),
        ("99999999999999999999", "{value_too_large,\n", 44),
        ("12xxxxxxxxxxxxxxxxx", "{leftover_string,\n", 43),
        ("1ééééééééé", "{leftover_string,\n", 43),
        ("-999999999999999999999999999999", "{value_negative,\n", 55),
    ];
    for (value, head, indent) in wrapped {
        let text = parse_expiration(value).unwrap_err().to_string();
        let prefix = format!("invalid expiration '{value}': {head}");
        assert!(text.starts_with(&prefix), "{text:?}");
        let rest = &text[prefix.len()..];
        assert_eq!(rest.len() - rest.trim_start().len(), *indent, "{text:?}");
    }
    assert_eq!(
        parse_expiration("99999999999999999999").unwrap_err().to_string(),
        format!(
            "invalid expiration '99999999999999999999': {{value_too_large,\n{}99999999999999999999}}",
            " ".repeat(44)
        )
    );
}

#[test]
fn valid_expirations() {
    for (value, ms) in [
        ("0", 0),
        ("-0", 0),
        ("+5", 5),
        ("007", 7),
        ("315360000000", 315_360_000_000),
        ("-000", 0),
    ] {
        assert_eq!(parse_expiration(value), Ok(ms), "{value:?}");
    }
    assert_eq!(
        parse_expiration("-007").unwrap_err().problem,
        ExpirationProblem::Negative("-7".to_owned())
    );
    assert_eq!(
        parse_expiration("000315360000001").unwrap_err().problem,
        ExpirationProblem::TooLarge("315360000001".to_owned())
    );
}

#[test]
fn effective_ttl_is_the_lower() {
    assert_eq!(effective_ttl(None, None), None);
    assert_eq!(effective_ttl(Some(1000), None), Some(1000));
    assert_eq!(effective_ttl(None, Some(100)), Some(100));
    assert_eq!(effective_ttl(Some(1000), Some(100)), Some(100));
    assert_eq!(effective_ttl(Some(10), Some(100)), Some(10));
    assert_eq!(expires_at(NOW, Some(5)), Some(NOW + 5));
    assert_eq!(expires_at(u64::MAX, Some(5)), Some(u64::MAX));
    assert_eq!(expires_at(NOW, None), None);
}

fn reason() -> impl Strategy<Value = DeathReason> {
    prop_oneof![
        Just(DeathReason::Rejected),
        Just(DeathReason::Expired),
        Just(DeathReason::Maxlen),
        Just(DeathReason::DeliveryLimit),
    ]
}

proptest! {
    /// Over any sequence of deaths: one entry per {queue, reason} whose count is how often it
    /// happened, the most recent first, `time` the first time, `x-first-death-*` fixed by the
    /// first death and `x-last-death-*` by the latest.
    #[test]
    fn history_invariants(steps in proptest::collection::vec((0..3usize, reason()), 1..30)) {
        let queues = ["a", "b", "c"];
        let rk = keys(&["r"]);
        let target = DeadLetterTarget { exchange: b"x", routing_key: None };
        let mut properties = BasicProperties::default();
        let mut history: Option<Deaths> = None;
        let mut seen: Vec<((usize, DeathReason), u64, u64)> = vec![];
        for (i, (q, reason)) in steps.iter().enumerate() {
            let now = NOW + i as u64 * 1000;
            if let Some(h) = &history {
                // The stored form gives the same history back.
                let restored = Deaths::from_table(&h.to_table());
                prop_assert_eq!(restored.as_ref(), Some(h));
            }
            let copy = dead_letter(&properties, history.as_ref(), &death(queues[*q], *reason, "x", &rk, now), &target);
            match seen.iter().position(|(key, _, _)| *key == (*q, *reason)) {
                Some(pos) => {
                    let (key, count, first) = seen.remove(pos);
                    seen.insert(0, (key, count + 1, first));
                }
                None => seen.insert(0, ((*q, *reason), 1, now)),
            }
            let entries = x_death(&copy.properties);
            prop_assert_eq!(entries.len(), seen.len());
            for (entry, ((q, reason), count, first)) in entries.iter().zip(&seen) {
                prop_assert_eq!(entry.get("queue"), Some(&ls(queues[*q])));
                prop_assert_eq!(entry.get("reason"), Some(&ls(reason.as_str())));
                prop_assert_eq!(entry.get("count"), Some(&FieldValue::I64(*count as i64)));
                prop_assert_eq!(entry.get("time"), Some(&FieldValue::Timestamp(first / 1000)));
            }
            let headers = copy.properties.headers.as_ref().unwrap();
            prop_assert_eq!(headers.get("x-first-death-queue"), Some(&ls(queues[steps[0].0])));
            prop_assert_eq!(headers.get("x-first-death-reason"), Some(&ls(steps[0].1.as_str())));
            prop_assert_eq!(headers.get("x-last-death-queue"), Some(&ls(queues[*q])));
            prop_assert_eq!(headers.get("x-last-death-reason"), Some(&ls(reason.as_str())));
            properties = copy.properties;
            history = Some(copy.deaths);
        }
    }

    /// Any string parses like `string:to_integer` + `check_expiry`; what parses is in range
    /// and equals Rust's reading of the same digits.
    #[test]
    fn expiration_parsing_matches_a_model(value in "[+-]?[0-9]{0,14}[a-z ]?") {
        let model = (|| -> Result<i128, ()> {
            let body = value.trim_start_matches(['+', '-']);
            if value.len() - body.len() > 1 || body.is_empty() || !body.chars().all(|c| c.is_ascii_digit()) {
                Err(())
            } else {
                let n: i128 = body.parse().map_err(|_| ())?;
                Ok(if value.starts_with('-') { -n } else { n })
            }
        })();
        match (parse_expiration(&value), model) {
            (Ok(ms), Ok(n)) => prop_assert_eq!(i128::from(ms), n),
            (Err(_), Ok(n)) => prop_assert!(!(0..=i128::from(MAX_EXPIRY_MS)).contains(&n)),
            (Ok(ms), Err(())) => prop_assert!(false, "{:?} parsed as {}", value, ms),
            (Err(_), Err(())) => {}
        }
    }
}
