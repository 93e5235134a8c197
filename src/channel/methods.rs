//! The exchange, queue, basic, tx and confirm methods of an open channel, with RabbitMQ's
//! checks and texts. Broker-wide effects go through the vhost registry and queue mailboxes;
//! replies go to `out`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::assembler::Published;
use super::session::{Out, Session};
use super::state::{Channel, ConsumerEntry, HeldPublish, Tx};
use super::Input;
use crate::broker::dead_letter::{parse_expiration, DeathReason};
use crate::broker::message::Message;
use crate::broker::queue::paging::enqueue_for;
use crate::broker::queue::{
    self, Command, ConnEvent, ConsumerSpec, Outgoing, QueueRef, Settle, Sink,
};
use crate::broker::queue_args::{self, Overflow, QueueArgs, QueueFlags, QueueName};
use crate::broker::registry::{queue_arg_error, Dest, ExchangeSpec, QueueSpec, ReplyConsumer};
use crate::broker::token;
use crate::error::AmqpError;
use crate::protocol::*;

/// The direct reply-to pseudo-queue.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

fn precondition(text: impl Into<String>) -> AmqpError {
    AmqpError::new(ReplyCode::PRECONDITION_FAILED, text)
}

fn gone() -> AmqpError {
    AmqpError::internal_error("queue went away")
}

/// Feeds one frame of an open channel.
pub async fn handle(
    ch: &mut Channel,
    s: &mut Session,
    input: Input,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    // RabbitMQ names basic.publish in every error about a content in progress.
    let assembling = !ch.assembler.is_idle();
    let content_error = |e: AmqpError| if assembling { on(e, 60, 40) } else { e };
    match input {
        Input::Header(header) => {
            if let Some(p) = ch
                .assembler
                .header(*header, s.max_message_size)
                .map_err(content_error)?
            {
                publish(ch, s, p, out).await.map_err(|e| on(e, 60, 40))?;
            }
            Ok(())
        }
        Input::Body(payload) => {
            if let Some(p) = ch.assembler.body(payload).map_err(content_error)? {
                publish(ch, s, p, out).await.map_err(|e| on(e, 60, 40))?;
            }
            Ok(())
        }
        Input::Method(method) => {
            ch.assembler.check_method().map_err(content_error)?;
            let (class_id, method_id) = (method.class_id(), method.method_id());
            run(ch, s, method, out)
                .await
                .map_err(|e| on(e, class_id, method_id))
        }
    }
}

/// Names the method an error is about unless a deeper layer did.
fn on(e: AmqpError, class_id: u16, method_id: u16) -> AmqpError {
    if e.class_id == 0 && e.method_id == 0 {
        e.on(class_id, method_id)
    } else {
        e
    }
}

/// RabbitMQ's shortcut: an empty queue name is the channel's last declared queue.
fn queue_name(ch: &Channel, name: &ShortStr) -> Result<String, AmqpError> {
    if !name.as_str().is_empty() {
        return Ok(name.as_str().to_owned());
    }
    ch.last_queue
        .clone()
        .ok_or_else(|| AmqpError::new(ReplyCode::NOT_FOUND, "no previously declared queue"))
}

async fn request<T>(
    q: &QueueRef,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, AmqpError> {
    let (reply, answer) = oneshot::channel();
    q.tx.send(make(reply)).await.map_err(|_| gone())?;
    answer.await.map_err(|_| gone())
}

async fn run(
    ch: &mut Channel,
    s: &mut Session,
    method: Method,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    let n = ch.number;
    let reply = |out: &mut Vec<Out>, no_wait: bool, m: Method| {
        if !no_wait {
            out.push(Out::Method(n, m));
        }
    };
    match method {
        Method::ExchangeDeclare(m) => {
            let spec = ExchangeSpec {
                name: m.exchange.as_str().to_owned(),
                kind: m.kind.as_str().to_owned(),
                durable: m.durable,
                auto_delete: m.auto_delete,
                internal: m.internal,
                arguments: m.arguments,
            };
            s.registry.declare_exchange(&spec, m.passive)?;
            reply(out, m.no_wait, Method::ExchangeDeclareOk(ExchangeDeclareOk));
        }
        Method::ExchangeDelete(m) => {
            s.registry
                .delete_exchange(m.exchange.as_str(), m.if_unused)?;
            reply(out, m.no_wait, Method::ExchangeDeleteOk(ExchangeDeleteOk));
        }
        Method::ExchangeBind(m) => {
            let dest = Dest::Exchange(m.destination.as_str().into());
            s.registry.bind(
                m.source.as_str(),
                dest,
                m.routing_key.as_str(),
                &m.arguments,
            )?;
            reply(out, m.no_wait, Method::ExchangeBindOk(ExchangeBindOk));
        }
        Method::ExchangeUnbind(m) => {
            let dest = Dest::Exchange(m.destination.as_str().into());
            s.registry.unbind(
                m.source.as_str(),
                dest,
                m.routing_key.as_str(),
                &m.arguments,
                s.connection,
            )?;
            reply(out, m.no_wait, Method::ExchangeUnbindOk(ExchangeUnbindOk));
        }
        Method::QueueDeclare(m) => queue_declare(ch, s, m, out).await?,
        Method::QueueBind(m) => {
            let (name, key) = bind_names(ch, &m.queue, &m.routing_key)?;
            check_exclusive(s, &name)?;
            s.registry.bind(
                m.exchange.as_str(),
                Dest::Queue(name.into()),
                &key,
                &m.arguments,
            )?;
            reply(out, m.no_wait, Method::QueueBindOk(QueueBindOk));
        }
        Method::QueueUnbind(m) => {
            let (name, key) = bind_names(ch, &m.queue, &m.routing_key)?;
            s.registry.unbind(
                m.exchange.as_str(),
                Dest::Queue(name.into()),
                &key,
                &m.arguments,
                s.connection,
            )?;
            reply(out, false, Method::QueueUnbindOk(QueueUnbindOk));
        }
        Method::QueuePurge(m) => {
            let name = queue_name(ch, &m.queue)?;
            let q = s.registry.queue_for(&name, s.connection)?;
            let purged = request(&q, Command::Purge).await?;
            let message_count = u32::try_from(purged).unwrap_or(u32::MAX);
            reply(
                out,
                m.no_wait,
                Method::QueuePurgeOk(QueuePurgeOk { message_count }),
            );
        }
        Method::QueueDelete(m) => {
            let name = queue_name(ch, &m.queue)?;
            let message_count = match s.registry.queue(&name) {
                None => 0,
                Some(_) => {
                    let q = s.registry.queue_for(&name, s.connection)?;
                    let (if_unused, if_empty) = (m.if_unused, m.if_empty);
                    let count = request(&q, |reply| Command::Delete {
                        if_unused,
                        if_empty,
                        reply,
                    })
                    .await??;
                    s.exclusive_queues.retain(|e| e.id != q.id);
                    count
                }
            };
            reply(
                out,
                m.no_wait,
                Method::QueueDeleteOk(QueueDeleteOk { message_count }),
            );
        }
        Method::BasicQos(m) => {
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
            out.push(Out::Method(n, Method::BasicQosOk(BasicQosOk)));
        }
        Method::BasicConsume(m) => consume(ch, s, m, out).await?,
        Method::BasicCancel(m) => {
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
            reply(out, m.no_wait, Method::BasicCancelOk(ok));
        }
        Method::BasicGet(m) => {
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
        }
        Method::BasicAck(m) => {
            let taken = ch.take(m.delivery_tag, m.multiple)?;
            settle(ch, taken, Settle::Ack).await;
        }
        Method::BasicReject(m) => {
            let taken = ch.take(m.delivery_tag, false)?;
            settle(ch, taken, rejected(m.requeue)).await;
        }
        Method::BasicNack(m) => {
            let taken = ch.take(m.delivery_tag, m.multiple)?;
            settle(ch, taken, rejected(m.requeue)).await;
        }
        Method::BasicRecover(m) => {
            recover(ch, m.requeue).await?;
            out.push(Out::Method(n, Method::BasicRecoverOk(BasicRecoverOk)));
        }
        Method::BasicRecoverAsync(m) => recover(ch, m.requeue).await?,
        Method::BasicPublish(m) => {
            if m.immediate {
                return Err(AmqpError::not_implemented("immediate=true"));
            }
            ch.assembler.start(m);
        }
        Method::TxSelect(_) => {
            if ch.confirm.is_some() {
                return Err(precondition("cannot switch from confirm to tx mode"));
            }
            if ch.tx.is_none() {
                ch.tx = Some(Tx::default());
            }
            out.push(Out::Method(n, Method::TxSelectOk(TxSelectOk)));
        }
        Method::TxCommit(_) => {
            let Some(tx) = ch.tx.replace(Tx::default()) else {
                return Err(precondition("channel is not transactional"));
            };
            for held in tx.publishes {
                route(ch, s, held.message, held.mandatory, &held.keys, out).await?;
            }
            for how in [Settle::Ack, Settle::Reject, Settle::Requeue] {
                let these: Vec<_> = tx
                    .settles
                    .iter()
                    .filter(|(_, _, _, h)| *h == how)
                    .map(|(t, q, p, _)| (*t, Arc::clone(q), *p))
                    .collect();
                ch.settle(these, how).await;
            }
            out.push(Out::Method(n, Method::TxCommitOk(TxCommitOk)));
        }
        Method::TxRollback(_) => {
            let Some(tx) = ch.tx.replace(Tx::default()) else {
                return Err(precondition("channel is not transactional"));
            };
            // The timeout clock restarts for what the rollback puts back.
            let now = Instant::now();
            for (tag, q, p, _) in tx.settles {
                ch.unacked.insert(tag, (q, p, now));
            }
            out.push(Out::Method(n, Method::TxRollbackOk(TxRollbackOk)));
        }
        Method::ConfirmSelect(m) => {
            if ch.tx.is_some() {
                return Err(precondition("cannot switch from tx to confirm mode"));
            }
            if ch.confirm.is_none() {
                ch.confirm = Some(1);
            }
            reply(out, m.nowait, Method::ConfirmSelectOk(ConfirmSelectOk));
        }
        other => {
            return Err(AmqpError::command_invalid("unimplemented method").on_method(&other));
        }
    }
    Ok(())
}

/// queue.bind/unbind names: the queue shortcut, and an empty key with it means the queue name.
fn bind_names(
    ch: &Channel,
    queue: &ShortStr,
    key: &ShortStr,
) -> Result<(String, String), AmqpError> {
    let name = queue_name(ch, queue)?;
    let key = if queue.as_str().is_empty() && key.as_str().is_empty() {
        name.clone()
    } else {
        key.as_str().to_owned()
    };
    Ok((name, key))
}

fn check_exclusive(s: &Session, name: &str) -> Result<(), AmqpError> {
    if s.registry.queue(name).is_some() {
        s.registry.queue_for(name, s.connection)?;
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

async fn queue_declare(
    ch: &mut Channel,
    s: &mut Session,
    m: QueueDeclare,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    if m.queue.as_str().starts_with(REPLY_TO) {
        return declare_reply_queue(ch, s, m, out);
    }
    let (q, created) = if m.passive {
        // No last-declared-queue shortcut here: RabbitMQ looks up '' itself (404).
        (s.registry.queue_for(m.queue.as_str(), s.connection)?, false)
    } else {
        let name = if m.queue.as_str().is_empty() {
            queue_args::check_server_named(&m.arguments)
                .map_err(|e| AmqpError::new(ReplyCode::PRECONDITION_FAILED, e.to_string()))?;
            token::queue_name()
        } else if m.queue.as_str().starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                m.queue.as_str()
            )));
        } else {
            m.queue.as_str().to_owned()
        };
        let spec = QueueSpec {
            name,
            durable: m.durable,
            exclusive: m.exclusive,
            auto_delete: m.auto_delete,
            arguments: m.arguments,
        };
        let owner = m.exclusive.then_some(s.connection);
        let registry = Arc::downgrade(&s.registry);
        let vhost = s.registry.vhost.clone();
        let (q, created) = s.registry.declare_queue(&spec, s.connection, || {
            // A new queue's arguments are validated; a redeclare's are only compared.
            let qname = QueueName::new(vhost, spec.name.as_str());
            let args = QueueArgs::parse(&qname, &spec.arguments)
                .and_then(|args| {
                    let flags = QueueFlags {
                        durable: spec.durable,
                        exclusive: spec.exclusive,
                        auto_delete: spec.auto_delete,
                    };
                    args.check_flags(&qname, flags).map(|()| args)
                })
                .map_err(|e| queue_arg_error(&e))?;
            Ok(queue::spawn(&spec, args, owner, registry))
        })?;
        if created && m.exclusive {
            s.exclusive_queues.push(Arc::clone(&q));
        }
        (q, created)
    };
    let (message_count, consumer_count) = if created {
        (0, 0)
    } else {
        request(&q, Command::Stats).await?
    };
    ch.last_queue = Some(q.name.clone());
    let ok = QueueDeclareOk {
        queue: q.name.as_str().into(),
        message_count,
        consumer_count,
    };
    if !m.no_wait {
        out.push(Out::Method(ch.number, Method::QueueDeclareOk(ok)));
    }
    Ok(())
}

/// `queue.declare` of a direct reply-to name, passive or not, as RabbitMQ answers it: the
/// pseudo-queue itself, or the name a requester's `reply_to` was rewritten to while that
/// requester still consumes, exists with one consumer and no messages (RPC servers check the
/// reply queue this way); any other such name is 404.
fn declare_reply_queue(
    ch: &mut Channel,
    s: &Session,
    m: QueueDeclare,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    let name = m.queue.as_str();
    let exists = name == REPLY_TO
        || name
            .strip_prefix(REPLY_TO)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|key| s.registry.reply_consumer(key).is_some());
    if !exists {
        return Err(s.registry.queue_not_found(name));
    }
    ch.last_queue = Some(name.to_owned());
    if !m.no_wait {
        let ok = QueueDeclareOk {
            queue: m.queue,
            message_count: 0,
            consumer_count: 1,
        };
        out.push(Out::Method(ch.number, Method::QueueDeclareOk(ok)));
    }
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

async fn publish(
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
            return Err(s.registry.exchange_not_found(message.exchange.as_str()));
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

/// Routes a message and holds it for its queues' mailboxes (the connection sends the held
/// publishes before anything else reaches a queue or the client); then the return and the
/// confirm, which go out only after the publishes are in the mailboxes.
async fn route(
    ch: &mut Channel,
    s: &mut Session,
    message: Arc<Message>,
    mandatory: bool,
    keys: &[String],
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    let exchange = message.exchange.as_str();
    let mut queues = Vec::new();
    let mut routed = false;
    let reply_key = (exchange.is_empty())
        .then(|| message.routing_key.as_str().strip_prefix(REPLY_TO))
        .flatten()
        .and_then(|rest| rest.strip_prefix('.'));
    if let Some(key) = reply_key {
        if let Some(c) = s.registry.reply_consumer(key) {
            let outgoing = Outgoing {
                channel: c.channel,
                owner: c.owner,
                tag: c.tag,
                ack: None,
                message: Arc::clone(&message),
                redelivered: false,
                counted: false,
            };
            routed = c.events.send(ConnEvent::Deliver(vec![outgoing])).is_ok();
        }
    } else {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        s.registry.route(
            exchange,
            &keys,
            message.properties.headers.as_ref(),
            &mut queues,
        )?;
    }
    routed |= !queues.is_empty();
    // A full queue with reject-publish(-dlx) refuses the message (the others still take it)
    // and the publisher gets a nack under confirms.
    let mut refused = false;
    let mut stored_id = None;
    for q in queues {
        if q.admit(message.body_size()) {
            let e = enqueue_for(
                s.persistence.as_deref(),
                &q,
                &message,
                &mut s.store_batch,
                &mut stored_id,
            );
            s.hold_publish(q, e);
            continue;
        }
        refused = true;
        if q.args.overflow == Overflow::RejectPublishDlx {
            queue::dead_letter_message(
                &s.registry,
                &q.name,
                &q.args,
                &message,
                DeathReason::Maxlen,
            );
        }
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
