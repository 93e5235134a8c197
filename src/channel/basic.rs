//! The basic class: qos, consumers (direct reply-to included), basic.get, acks, nacks,
//! rejects and recover, and publishing: a publish's routing keys, its routing to queues, the
//! mandatory return and the publisher confirm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::assembler::Published;
use super::methods::{precondition, reply, request, unimplemented};
use super::queue::queue_name;
use super::session::{Out, Session};
use super::state::{Channel, ConsumerEntry, HeldPublish};
use crate::broker::dead_letter::parse_expiration;
use crate::broker::message::Message;
use crate::broker::publish::{self, Origin};
use crate::broker::queue::{self, Command, ConsumerSpec, QueueRef, Settle, Sink};
use crate::broker::registry::ReplyConsumer;
use crate::broker::token;
use crate::error::AmqpError;
use crate::protocol::*;

pub use crate::broker::publish::REPLY_TO;

pub(super) async fn run(
    ch: &mut Channel,
    s: &mut Session,
    method: Method,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    match method {
        Method::BasicQos(m) => qos(ch, m, out).await,
        Method::BasicConsume(m) => consume(ch, s, m, out).await,
        Method::BasicCancel(m) => cancel(ch, s, m, out).await,
        Method::BasicGet(m) => get(ch, s, m, out).await,
        Method::BasicAck(m) => {
            let taken = ch.take(m.delivery_tag, m.multiple)?;
            settle(ch, taken, Settle::Ack).await;
            Ok(())
        }
        Method::BasicReject(m) => {
            let taken = ch.take(m.delivery_tag, false)?;
            settle(ch, taken, rejected(m.requeue)).await;
            Ok(())
        }
        Method::BasicNack(m) => {
            let taken = ch.take(m.delivery_tag, m.multiple)?;
            settle(ch, taken, rejected(m.requeue)).await;
            Ok(())
        }
        Method::BasicRecover(m) => {
            recover(ch, m.requeue).await?;
            out.push(Out::Method(
                ch.number,
                Method::BasicRecoverOk(BasicRecoverOk),
            ));
            Ok(())
        }
        Method::BasicRecoverAsync(m) => recover(ch, m.requeue).await,
        Method::BasicPublish(m) => {
            if m.immediate {
                return Err(AmqpError::not_implemented("immediate=true"));
            }
            ch.assembler.start(m);
            Ok(())
        }
        other => Err(unimplemented(&other)),
    }
}

async fn qos(ch: &mut Channel, m: BasicQos, out: &mut Vec<Out>) -> Result<(), AmqpError> {
    if m.prefetch_size != 0 {
        return Err(AmqpError::not_implemented(format!(
            "prefetch_size!=0 ({})",
            m.prefetch_size
        )));
    }
    if m.global {
        ch.global_prefetch = m.prefetch_count.into();
        ch.limit.set_limit(m.prefetch_count.into());
        ch.wake_consumer_queues(|_| false).await;
    } else {
        ch.prefetch = m.prefetch_count.into();
    }
    out.push(Out::Method(ch.number, Method::BasicQosOk(BasicQosOk)));
    Ok(())
}

async fn cancel(
    ch: &mut Channel,
    s: &Session,
    m: BasicCancel,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    if let Some(entry) = ch.consumers.remove(&m.consumer_tag) {
        match entry.queue {
            Some(q) => {
                let id = entry.id;
                let _ = request(&q, |reply| Command::Cancel { id, reply }).await;
                ch.draining.push(m.consumer_tag.clone());
            }
            None => {
                if let Some(key) = ch.reply_key.take() {
                    s.registry.remove_reply_consumer(&key);
                }
            }
        }
    }
    let ok = BasicCancelOk {
        consumer_tag: m.consumer_tag,
    };
    reply(out, ch.number, m.no_wait, Method::BasicCancelOk(ok));
    Ok(())
}

async fn get(
    ch: &mut Channel,
    s: &Session,
    m: BasicGet,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    let n = ch.number;
    let name = queue_name(ch, &m.queue)?;
    let q = s.registry.queue_for(&name, s.connection)?;
    ch.touch(&q);
    let (owner, no_ack) = (ch.owner, m.no_ack);
    let got = request(&q, |reply| Command::Get {
        owner,
        no_ack,
        reply,
    })
    .await?;
    match got {
        None => out.push(Out::Method(n, Method::BasicGetEmpty(BasicGetEmpty))),
        Some((d, remaining)) => {
            let tag = ch.next_tag();
            if !d.settled {
                ch.unacked
                    .insert(tag, (Arc::clone(&q), d.position, Instant::now()));
            }
            let ok = BasicGetOk {
                delivery_tag: tag,
                redelivered: d.redelivered,
                exchange: d.message.exchange.clone(),
                routing_key: d.message.routing_key.clone(),
                message_count: u32::try_from(remaining).unwrap_or(u32::MAX),
            };
            out.push(Out::Content {
                channel: n,
                method: Method::BasicGetOk(ok),
                message: d.message,
            });
        }
    }
    Ok(())
}

/// Acks, nacks and rejects: held by a transaction, or settled now.
async fn settle(ch: &mut Channel, taken: Vec<(u64, QueueRef, queue::Position)>, how: Settle) {
    match &mut ch.tx {
        Some(tx) => tx
            .settles
            .extend(taken.into_iter().map(|(t, q, p)| (t, q, p, how))),
        None => ch.settle(taken, how).await,
    }
}

/// nack/reject: requeued, or rejected (dead-lettered).
fn rejected(requeue: bool) -> Settle {
    if requeue {
        Settle::Requeue
    } else {
        Settle::Reject
    }
}

async fn recover(ch: &mut Channel, requeue: bool) -> Result<(), AmqpError> {
    if !requeue {
        return Err(AmqpError::not_implemented("requeue=false"));
    }
    let all = ch.take(0, true)?;
    ch.settle(all, Settle::Requeue).await;
    Ok(())
}

/// The `x-priority` consumer argument: any of RabbitMQ's integer types (`l` or `L` included;
/// clamped to `i32`),
/// anything else RabbitMQ's 406 for the queue being consumed.
fn priority(args: &FieldTable, queue: &str, vhost: &str) -> Result<i32, AmqpError> {
    let Some(value) = args.get("x-priority") else {
        return Ok(0);
    };
    let Some(n) = value.integer() else {
        return Err(precondition(format!(
            "invalid arg 'x-priority' for queue '{queue}' in vhost '{vhost}': \"expected integer, got {}\"",
            value.type_name()
        )));
    };
    Ok(n.clamp(i32::MIN.into(), i32::MAX.into()) as i32)
}

async fn consume(
    ch: &mut Channel,
    s: &mut Session,
    m: BasicConsume,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    static CONSUMER_IDS: AtomicU64 = AtomicU64::new(1);
    let tag: ShortStr = if m.consumer_tag.as_str().is_empty() {
        token::consumer_tag().into()
    } else {
        m.consumer_tag.clone()
    };
    if ch.consumers.contains_key(&tag) {
        return Err(AmqpError::not_allowed(format!(
            "attempt to reuse consumer tag '{}'",
            tag.as_str()
        )));
    }
    let id = CONSUMER_IDS.fetch_add(1, Ordering::Relaxed);
    if m.queue.as_str() == REPLY_TO {
        if !m.no_ack {
            return Err(precondition("reply consumer cannot acknowledge"));
        }
        if ch.reply_key.is_some() {
            return Err(precondition("reply consumer already set"));
        }
        let key = token::random_token(24);
        s.registry.add_reply_consumer(
            key.clone(),
            ReplyConsumer {
                events: s.events.clone(),
                channel: ch.number,
                owner: ch.owner,
                tag: tag.clone(),
            },
        );
        ch.reply_key = Some(key);
        ch.consumers
            .insert(tag.clone(), ConsumerEntry { queue: None, id });
    } else {
        let name = queue_name(ch, &m.queue)?;
        let q = s.registry.queue_for(&name, s.connection)?;
        let priority = priority(&m.arguments, &name, &s.registry.vhost)?;
        let spec = ConsumerSpec {
            id,
            owner: ch.owner,
            no_ack: m.no_ack,
            prefetch: ch.prefetch,
            priority,
            channel_limit: Some(Arc::clone(&ch.limit)),
            backlog: Some(Arc::clone(&s.backlog)),
        };
        let sink = Sink {
            events: s.events.clone(),
            channel: ch.number,
            owner: ch.owner,
            tag: tag.clone(),
        };
        let exclusive = m.exclusive;
        request(&q, |reply| Command::Consume {
            spec,
            sink,
            exclusive,
            reply,
        })
        .await??;
        ch.touch(&q);
        ch.consumers
            .insert(tag.clone(), ConsumerEntry { queue: Some(q), id });
    }
    if !m.no_wait {
        let ok = BasicConsumeOk { consumer_tag: tag };
        out.push(Out::Method(ch.number, Method::BasicConsumeOk(ok)));
    }
    Ok(())
}

/// The routing keys of a publish: the routing key, then the CC and BCC headers (arrays of
/// longstr, RabbitMQ's sender-selected distribution). BCC is removed from the message. A CC or
/// BCC that is not an array is RabbitMQ's 406; elements that are not strings are skipped, as
/// RabbitMQ skips them.
fn routing_keys(
    routing_key: &str,
    properties: &mut BasicProperties,
) -> Result<Vec<String>, AmqpError> {
    let mut keys = vec![routing_key.to_owned()];
    let Some(headers) = properties.headers.as_mut() else {
        return Ok(keys);
    };
    for name in ["CC", "BCC"] {
        let invalid = |kind: &str| {
            precondition(format!(
                "invalid message: {{unacceptable_type_in_header,\"{name}\",{kind}}}"
            ))
        };
        match headers.get(name) {
            None => {}
            Some(FieldValue::Array(values)) => {
                for v in values {
                    if let FieldValue::LongStr(s) = v {
                        keys.push(String::from_utf8_lossy(s).into_owned());
                    }
                }
            }
            Some(other) => return Err(invalid(other.type_name())),
        }
    }
    headers.remove("BCC");
    Ok(keys)
}

pub(super) async fn publish(
    ch: &mut Channel,
    s: &mut Session,
    p: Published,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    let Published {
        method,
        mut properties,
        body,
    } = p;
    // An invalid expiration is RabbitMQ's 406 on the publishing channel.
    let ttl = match &properties.expiration {
        Some(e) => Some(parse_expiration(e.as_str()).map_err(|e| precondition(e.to_string()))?),
        None => None,
    };
    if properties.reply_to.as_ref().map(ShortStr::as_str) == Some(REPLY_TO) {
        let Some(key) = &ch.reply_key else {
            return Err(precondition("fast reply consumer does not exist"));
        };
        properties.reply_to = Some(format!("{REPLY_TO}.{key}").into());
    }
    let keys = routing_keys(method.routing_key.as_str(), &mut properties)?;
    let message = Arc::new(Message {
        exchange: method.exchange,
        routing_key: method.routing_key,
        properties,
        body,
        ttl,
        deaths: None,
    });
    if let Some(tx) = &mut ch.tx {
        if !s.registry.exchange_exists(message.exchange.as_str()) {
            return Err(s
                .registry
                .exchange_not_found(message.exchange.as_str())
                .into());
        }
        tx.publishes.push(HeldPublish {
            message,
            mandatory: method.mandatory,
            keys,
        });
        return Ok(());
    }
    route(ch, s, message, method.mandatory, &keys, out).await
}

/// Publishes a message into the vhost and holds the entries for its queues' mailboxes (the
/// connection sends the held publishes before anything else reaches a queue or the client);
/// then the return and the confirm, which go out only after the publishes are in the
/// mailboxes. A full queue with reject-publish(-dlx) refuses the message (the others still
/// take it) and the publisher gets a nack under confirms.
pub(super) async fn route(
    ch: &mut Channel,
    s: &mut Session,
    message: Arc<Message>,
    mandatory: bool,
    keys: &[String],
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    let outcome = publish::publish(
        &s.registry,
        &message,
        keys,
        Origin::Client,
        &mut s.store_batch,
    )?;
    let routed = outcome.routed();
    let refused = !outcome.refused.is_empty();
    for (q, e) in outcome.accepted {
        s.hold_publish(q, e);
    }
    if !routed && mandatory {
        let ret = BasicReturn {
            reply_code: ReplyCode::NO_ROUTE.code(),
            reply_text: "NO_ROUTE".into(),
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
        };
        out.push(Out::Content {
            channel: ch.number,
            method: Method::BasicReturn(ret),
            message,
        });
    }
    if let Some(seq) = &mut ch.confirm {
        let confirm = if refused {
            Method::BasicNack(BasicNack {
                delivery_tag: *seq,
                multiple: false,
                requeue: false,
            })
        } else {
            Method::BasicAck(BasicAck {
                delivery_tag: *seq,
                multiple: false,
            })
        };
        *seq += 1;
        out.push(Out::Method(ch.number, confirm));
    }
    Ok(())
}
