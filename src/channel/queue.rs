//! The queue class: declare (the direct reply-to pseudo-queue included), bind, unbind, purge
//! and delete, through the vhost registry and the queue's mailbox.

use std::sync::Arc;

use super::basic::REPLY_TO;
use super::methods::{reply, request, unimplemented};
use super::session::{Out, Session};
use super::state::Channel;
use crate::broker::queue::{self, Command};
use crate::broker::queue_args::{self, QueueArgs, QueueFlags, QueueName};
use crate::broker::registry::{queue_arg_error, Dest, QueueSpec};
use crate::broker::token;
use crate::error::AmqpError;
use crate::protocol::*;

pub(super) async fn run(
    ch: &mut Channel,
    s: &mut Session,
    method: Method,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    match method {
        Method::QueueDeclare(m) => declare(ch, s, m, out).await,
        Method::QueueBind(m) => bind(ch, s, m, out),
        Method::QueueUnbind(m) => unbind(ch, s, m, out),
        Method::QueuePurge(m) => purge(ch, s, m, out).await,
        Method::QueueDelete(m) => delete(ch, s, m, out).await,
        other => Err(unimplemented(&other)),
    }
}

/// RabbitMQ's shortcut: an empty queue name is the channel's last declared queue.
pub(super) fn queue_name(ch: &Channel, name: &ShortStr) -> Result<String, AmqpError> {
    if !name.as_str().is_empty() {
        return Ok(name.as_str().to_owned());
    }
    ch.last_queue
        .clone()
        .ok_or_else(|| AmqpError::new(ReplyCode::NOT_FOUND, "no previously declared queue"))
}

fn bind(ch: &Channel, s: &Session, m: QueueBind, out: &mut Vec<Out>) -> Result<(), AmqpError> {
    let (name, key) = bind_names(ch, &m.queue, &m.routing_key)?;
    check_exclusive(s, &name)?;
    s.registry.bind(
        m.exchange.as_str(),
        Dest::Queue(name.into()),
        &key,
        &m.arguments,
    )?;
    reply(out, ch.number, m.no_wait, Method::QueueBindOk(QueueBindOk));
    Ok(())
}

fn unbind(ch: &Channel, s: &Session, m: QueueUnbind, out: &mut Vec<Out>) -> Result<(), AmqpError> {
    let (name, key) = bind_names(ch, &m.queue, &m.routing_key)?;
    s.registry.unbind(
        m.exchange.as_str(),
        Dest::Queue(name.into()),
        &key,
        &m.arguments,
        s.connection,
    )?;
    out.push(Out::Method(ch.number, Method::QueueUnbindOk(QueueUnbindOk)));
    Ok(())
}

async fn purge(
    ch: &Channel,
    s: &Session,
    m: QueuePurge,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    let name = queue_name(ch, &m.queue)?;
    let q = s.registry.queue_for(&name, s.connection)?;
    let purged = request(&q, Command::Purge).await?;
    let message_count = u32::try_from(purged).unwrap_or(u32::MAX);
    let ok = QueuePurgeOk { message_count };
    reply(out, ch.number, m.no_wait, Method::QueuePurgeOk(ok));
    Ok(())
}

async fn delete(
    ch: &Channel,
    s: &mut Session,
    m: QueueDelete,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
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
    let ok = QueueDeleteOk { message_count };
    reply(out, ch.number, m.no_wait, Method::QueueDeleteOk(ok));
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

async fn declare(
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
        return Err(s.registry.queue_not_found(name).into());
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
