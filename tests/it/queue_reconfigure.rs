//! A live queue reconfigured through the broker (what a policy change will do): the new
//! settings take effect without a restart and without redeclaring, and are seen over the
//! wire by a real client. Precedence as RabbitMQ's: numeric limits take the smaller of
//! argument and policy, the overflow behaviour is the argument's.

use std::time::Duration;

use crate::common::*;
use warren::broker::queue_args::Overflow;
use warren::broker::settings::PolicyValues;
use warren::protocol::*;

/// Reconfigures queue `name` of vhost `/` with `policy` as its matching policy.
async fn reconfigure(server: &TestServer, name: &str, policy: &PolicyValues) {
    let broker = server.handle.broker().expect("server running");
    let registry = broker.registry("/").expect("the default vhost");
    registry
        .reconfigure_queue(name, Some(policy), None)
        .await
        .unwrap();
}

/// Publishes `body` and waits for its confirm: true for ack, false for nack. Once confirmed,
/// the message is in the queue's mailbox, ahead of any later reconfigure.
async fn publish_confirmed(c: &mut RawClient, queue: &str, body: &[u8], tag: u64) -> bool {
    c.publish(1, "", queue, body).await;
    match c.next_method().await.1 {
        Method::BasicAck(a) => {
            assert_eq!(a.delivery_tag, tag);
            true
        }
        Method::BasicNack(n) => {
            assert_eq!(n.delivery_tag, tag);
            false
        }
        other => panic!("expected a confirm, got {other:?}"),
    }
}

async fn ready(c: &mut RawClient, queue: &str) -> u32 {
    let mut declare = queue_declare(queue);
    if let Method::QueueDeclare(d) = &mut declare {
        d.passive = true;
    }
    let Method::QueueDeclareOk(ok) = c.ok(1, declare, "queue.declare-ok").await else {
        unreachable!()
    };
    ok.message_count
}

#[tokio::test]
async fn a_new_message_ttl_expires_the_messages_published_after_it() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "reconfigure-ttl", 0).await;
    c.open_channel(1).await;
    c.confirm_select(1).await;
    c.declare_queue(1, "ttl").await;
    assert!(publish_confirmed(&mut c, "ttl", b"before", 1).await);
    let policy = PolicyValues {
        message_ttl: Some(50),
        ..PolicyValues::default()
    };
    reconfigure(&server, "ttl", &policy).await;
    assert!(publish_confirmed(&mut c, "ttl", b"after", 2).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.drain(1, "ttl").await,
        [b"before".to_vec()],
        "the message published before the new TTL keeps none"
    );
}

#[tokio::test]
async fn a_shrunk_max_length_keeps_the_newest_messages() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "reconfigure-maxlen", 0).await;
    c.open_channel(1).await;
    c.confirm_select(1).await;
    c.declare_queue(1, "limited").await;
    let mut policy = PolicyValues {
        max_length: Some(5),
        ..PolicyValues::default()
    };
    reconfigure(&server, "limited", &policy).await;
    for (i, body) in [b"m1", b"m2", b"m3", b"m4", b"m5", b"m6", b"m7"]
        .iter()
        .enumerate()
    {
        assert!(publish_confirmed(&mut c, "limited", *body, i as u64 + 1).await);
    }
    assert_eq!(ready(&mut c, "limited").await, 5, "drop-head at 5");
    policy.max_length = Some(2);
    reconfigure(&server, "limited", &policy).await;
    assert_eq!(ready(&mut c, "limited").await, 2);
    assert_eq!(
        c.drain(1, "limited").await,
        [b"m6".to_vec(), b"m7".to_vec()]
    );
}

#[tokio::test]
async fn declared_arguments_win_over_the_policy() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "reconfigure-precedence", 0).await;
    c.open_channel(1).await;
    c.confirm_select(1).await;
    c.ok(
        1,
        declare_with_args(
            "declared",
            &[
                ("x-max-length", FieldValue::I32(3)),
                ("x-overflow", longstr("reject-publish")),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
    // A looser limit and another overflow: the argument's smaller limit and its overflow
    // stay in force.
    let policy = PolicyValues {
        max_length: Some(10),
        overflow: Some(Overflow::DropHead),
        ..PolicyValues::default()
    };
    reconfigure(&server, "declared", &policy).await;
    let confirms = [
        publish_confirmed(&mut c, "declared", b"a", 1).await,
        publish_confirmed(&mut c, "declared", b"b", 2).await,
        publish_confirmed(&mut c, "declared", b"c", 3).await,
        publish_confirmed(&mut c, "declared", b"d", 4).await,
    ];
    assert_eq!(confirms, [true, true, true, false], "reject-publish at 3");
    assert_eq!(
        c.drain(1, "declared").await,
        [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    // The redeclare compares with the declared arguments, not the settings in force.
    c.ok(
        1,
        declare_with_args(
            "declared",
            &[
                ("x-max-length", FieldValue::I32(3)),
                ("x-overflow", longstr("reject-publish")),
            ],
        ),
        "queue.declare-ok",
    )
    .await;
}

#[tokio::test]
async fn a_policy_limit_turns_on_reject_publish_on_a_live_queue() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "reconfigure-reject", 0).await;
    c.open_channel(1).await;
    c.confirm_select(1).await;
    c.declare_queue(1, "open").await;
    assert!(publish_confirmed(&mut c, "open", b"1", 1).await);
    let policy = PolicyValues {
        max_length: Some(1),
        overflow: Some(Overflow::RejectPublish),
        ..PolicyValues::default()
    };
    reconfigure(&server, "open", &policy).await;
    assert!(!publish_confirmed(&mut c, "open", b"2", 2).await);
    assert_eq!(c.drain(1, "open").await, [b"1".to_vec()]);
    assert!(publish_confirmed(&mut c, "open", b"3", 3).await);
    reconfigure(&server, "open", &PolicyValues::default()).await;
    assert!(publish_confirmed(&mut c, "open", b"4", 4).await);
    assert_eq!(ready(&mut c, "open").await, 2);
}

#[tokio::test]
async fn a_policy_dead_letter_target_takes_what_a_shrunk_limit_drops() {
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "reconfigure-dlx", 0).await;
    c.open_channel(1).await;
    c.confirm_select(1).await;
    c.declare_queue(1, "work").await;
    c.declare_queue(1, "dropped").await;
    for (i, body) in [b"w1", b"w2", b"w3"].iter().enumerate() {
        assert!(publish_confirmed(&mut c, "work", *body, i as u64 + 1).await);
    }
    let policy = PolicyValues {
        max_length: Some(1),
        dead_letter_exchange: Some(bytes::Bytes::from_static(b"")),
        dead_letter_routing_key: Some(bytes::Bytes::from_static(b"dropped")),
        ..PolicyValues::default()
    };
    reconfigure(&server, "work", &policy).await;
    assert_eq!(c.drain(1, "work").await, [b"w3".to_vec()]);
    // The copies are try-sent from the queue task: give them a moment.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        c.drain(1, "dropped").await,
        [b"w1".to_vec(), b"w2".to_vec()]
    );
}

/// A queue past its in-memory high mark keeps its tail on disk only; a length limit that a
/// policy adds later must count (and drop) that tail too.
#[tokio::test]
async fn a_limit_added_to_a_paging_queue_counts_its_tail_on_disk() {
    const SENT: u64 = 5000;
    let server = start_server(|_| {}).await;
    let mut c = RawClient::open(server.addr, "reconfigure-paging", 0).await;
    c.open_channel(1).await;
    c.confirm_select(1).await;
    c.declare_queue(1, "deep").await;
    for i in 1..=SENT {
        c.publish(1, "", "deep", format!("m{i}").as_bytes()).await;
    }
    let mut acked = 0;
    while acked < SENT {
        match c.next_method().await.1 {
            Method::BasicAck(a) => {
                acked = if a.multiple {
                    a.delivery_tag
                } else {
                    acked + 1
                }
            }
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    assert_eq!(u64::from(ready(&mut c, "deep").await), SENT);
    let policy = PolicyValues {
        max_length: Some(3),
        ..PolicyValues::default()
    };
    reconfigure(&server, "deep", &policy).await;
    assert_eq!(ready(&mut c, "deep").await, 3);
    assert_eq!(
        c.drain(1, "deep").await,
        [b"m4998".to_vec(), b"m4999".to_vec(), b"m5000".to_vec()]
    );
}
