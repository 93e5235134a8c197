//! The methods of an open channel: `handle` feeds a frame in, `run` hands each method to the
//! file of its class (`exchange`, `queue`, `basic`, `tx`, `confirm`), which applies
//! RabbitMQ's checks and texts. Broker-wide effects go through the vhost registry and queue
//! mailboxes; replies go to `out`.

use tokio::sync::oneshot;

use super::session::{Out, Session};
use super::state::Channel;
use super::{basic, confirm, exchange, queue, tx, Input};
use crate::broker::queue::{Command, QueueRef};
use crate::error::AmqpError;
use crate::protocol::*;

pub(super) fn precondition(text: impl Into<String>) -> AmqpError {
    AmqpError::new(ReplyCode::PRECONDITION_FAILED, text)
}

fn gone() -> AmqpError {
    AmqpError::internal_error("queue went away")
}

/// A method this broker does not take from a client (a reply, or one of a class it has no
/// handler for).
pub(super) fn unimplemented(method: &Method) -> AmqpError {
    AmqpError::command_invalid("unimplemented method").on_method(method)
}

/// Sends a method's reply unless the client asked for none (`no-wait`).
pub(super) fn reply(out: &mut Vec<Out>, channel: u16, no_wait: bool, method: Method) {
    if !no_wait {
        out.push(Out::Method(channel, method));
    }
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
                basic::publish(ch, s, p, out)
                    .await
                    .map_err(|e| on(e, 60, 40))?;
            }
            Ok(())
        }
        Input::Body(payload) => {
            if let Some(p) = ch.assembler.body(payload).map_err(content_error)? {
                basic::publish(ch, s, p, out)
                    .await
                    .map_err(|e| on(e, 60, 40))?;
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

/// Sends a command to a queue task and waits for its answer.
pub(super) async fn request<T>(
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
    match method.class_id() {
        CLASS_EXCHANGE | CLASS_QUEUE => {
            // Definitions are answered once what they wrote is on disk, as RabbitMQ answers
            // them: a declare-ok must not outlive a crash.
            let before = s.registry.definition_writes();
            if method.class_id() == CLASS_EXCHANGE {
                exchange::run(ch, s, method, out)?;
            } else {
                queue::run(ch, s, method, out).await?;
            }
            Ok(s.registry.definitions_synced_since(before).await?)
        }
        CLASS_BASIC => basic::run(ch, s, method, out).await,
        CLASS_TX => tx::run(ch, s, method, out).await,
        CLASS_CONFIRM => confirm::run(ch, method, out),
        _ => Err(unimplemented(&method)),
    }
}
