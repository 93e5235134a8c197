//! Channels: the per-channel state machine and the table of a connection's channels. No
//! socket I/O: the connection feeds frames in and sends what the channels put in `out`;
//! broker-wide effects go through the vhost registry and queue mailboxes.

mod assembler;
mod basic;
mod confirm;
mod exchange;
mod methods;
mod queue;
mod session;
mod state;
mod tx;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use basic::REPLY_TO;
pub use session::{Out, Session};
pub use state::Channel;

use crate::broker::persist::ConfirmGate;
use crate::broker::queue::{Command, Outgoing, OwnerId};
use crate::error::{AmqpError, Scope};
use crate::protocol::{
    BasicCancel, BasicDeliver, ChannelClose, ChannelCloseOk, ChannelFlowOk, ChannelOpenOk,
    ContentHeader, Method, ReplyCode, ShortStr, CLASS_CONNECTION,
};

/// RabbitMQ's text for a channel closed by the consumer (acknowledgement) timeout.
pub fn consumer_timeout_message(channel: u16, timeout_ms: u64) -> String {
    format!(
        "delivery acknowledgement on channel {channel} timed out. Timeout value used: \
         {timeout_ms} ms. This timeout value can be configured, see consumers doc guide to \
         learn more"
    )
}

/// A frame addressed to a channel other than 0, as the connection hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Method(Method),
    Header(Box<ContentHeader>),
    Body(Bytes),
}

/// The channels of one connection.
///
/// Invariant: at most `channel_max` entries, keyed by any channel number 1..=65535 (as in
/// RabbitMQ, channel_max bounds how many channels are open, not their numbers); a channel is
/// in the table, and counts, from its `channel.open` until the close handshake completes, so a
/// number is reusable only after close-ok went one way or the other. A channel that is
/// `closing` has released everything it held in the broker.
#[derive(Debug)]
pub struct ChannelTable {
    /// How many channels may be in the table at once (the negotiated channel_max, at least 1).
    channel_max: u16,
    channels: HashMap<u16, Channel>,
    session: Option<Session>,
    /// The syncs of sent publishes whose confirms wait in the connection's output.
    commits: ConfirmGate,
}

impl ChannelTable {
    pub fn new(channel_max: u16) -> ChannelTable {
        ChannelTable {
            channel_max,
            channels: HashMap::new(),
            session: None,
            commits: ConfirmGate::new(),
        }
    }

    /// Connects the table to its vhost once the connection is open.
    pub fn attach(&mut self, session: Session) {
        self.session = Some(session);
    }

    /// Number of channels open or closing.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Feeds one frame for `channel` (never 0); what to send goes to `out`. Channel errors are
    /// handled here (the channel releases what it held and its `channel.close` goes to `out`);
    /// an `Err` is always a connection error.
    pub async fn handle(
        &mut self,
        channel: u16,
        input: Input,
        out: &mut Vec<Out>,
    ) -> Result<(), AmqpError> {
        // Held publishes reach their queues before any other command this connection sends,
        // so a get, purge, declare or delete sees them.
        let publishing = matches!(
            input,
            Input::Header(_) | Input::Body(_) | Input::Method(Method::BasicPublish(_))
        );
        if !publishing {
            self.send_held().await;
        }
        let result = self.dispatch(channel, input, out).await;
        match result {
            Err(error) if error.scope == Scope::Channel => {
                self.fail(channel, error, out).await;
                Ok(())
            }
            other => other,
        }
    }

    /// How many routed publishes wait to be sent to their queues.
    pub fn held_count(&self) -> usize {
        self.session.as_ref().map_or(0, Session::held_count)
    }

    /// Sends the held publishes to their queues' mailboxes. The commit of the persistent ones
    /// is kept for [`ChannelTable::take_commits`]: whatever is written next waits for it.
    pub async fn send_held(&mut self) {
        if let Some(session) = self.session.as_mut() {
            if session.held_count() > 0 {
                if let Some(ticket) = session.send_held().await {
                    self.commits.push(ticket);
                }
            }
        }
    }

    /// The syncs the next write must wait for (it holds their confirms).
    pub fn take_commits(&mut self) -> ConfirmGate {
        self.commits.take()
    }

    /// Closes `channel` with a channel error.
    async fn fail(&mut self, channel: u16, error: AmqpError, out: &mut Vec<Out>) {
        let ch = self
            .channels
            .entry(channel)
            .or_insert_with(|| Channel::new(channel));
        if let Some(session) = &self.session {
            ch.release(session).await;
        }
        ch.closing = true;
        out.push(Out::Method(
            channel,
            Method::ChannelClose(ChannelClose {
                reply_code: error.code.code(),
                reply_text: error.reply_text(),
                class_id: error.class_id,
                method_id: error.method_id,
            }),
        ));
    }

    async fn dispatch(
        &mut self,
        channel: u16,
        input: Input,
        out: &mut Vec<Out>,
    ) -> Result<(), AmqpError> {
        if let Input::Method(method) = &input {
            if method.class_id() == CLASS_CONNECTION {
                return Err(AmqpError::command_invalid("unimplemented method").on_method(method));
            }
        }
        let state = self.channels.get(&channel).map(|c| c.closing);
        match (state, input) {
            (None, Input::Method(Method::ChannelOpen(_))) => {
                // Closing channels count until their close-ok, as in RabbitMQ; its close
                // names no method.
                if self.channels.len() >= usize::from(self.channel_max) {
                    return Err(AmqpError::not_allowed(format!(
                        "number of channels opened ({}) has reached the negotiated channel_max \
                         ({})",
                        self.channels.len(),
                        self.channel_max
                    )));
                }
                self.channels.insert(channel, Channel::new(channel));
                out.push(Out::Method(channel, Method::ChannelOpenOk(ChannelOpenOk)));
                Ok(())
            }
            // A close-ok crossing our forgetting of the channel: nothing left to do.
            (None, Input::Method(Method::ChannelCloseOk(_))) => Ok(()),
            (None, Input::Method(method)) => {
                Err(AmqpError::channel_error("expected 'channel.open'").on_method(&method))
            }
            (Some(true), Input::Method(Method::ChannelClose(_))) => {
                self.channels.remove(&channel);
                out.push(Out::Method(channel, Method::ChannelCloseOk(ChannelCloseOk)));
                Ok(())
            }
            (Some(true), Input::Method(Method::ChannelCloseOk(_))) => {
                self.channels.remove(&channel);
                Ok(())
            }
            (Some(true), _) => Ok(()),
            (Some(false), input) => self.open_channel(channel, input, out).await,
            (None, Input::Header(_) | Input::Body(_)) => Err(no_content_method()),
        }
    }

    async fn open_channel(
        &mut self,
        channel: u16,
        input: Input,
        out: &mut Vec<Out>,
    ) -> Result<(), AmqpError> {
        let method = match input {
            Input::Method(method) => method,
            content => return self.messaging(channel, content, out).await,
        };
        match method {
            Method::ChannelOpen(_) => {
                Err(AmqpError::channel_error("second 'channel.open' seen").on_method(&method))
            }
            Method::ChannelFlow(flow) if flow.active => {
                out.push(Out::Method(
                    channel,
                    Method::ChannelFlowOk(ChannelFlowOk { active: true }),
                ));
                Ok(())
            }
            // RabbitMQ dropped flow control by channel.flow long ago.
            Method::ChannelFlow(_) => {
                Err(AmqpError::not_implemented("active=false").on_method(&method))
            }
            Method::ChannelClose(_) => {
                if let Some(mut ch) = self.channels.remove(&channel) {
                    if let Some(session) = &self.session {
                        ch.release(session).await;
                    }
                }
                out.push(Out::Method(channel, Method::ChannelCloseOk(ChannelCloseOk)));
                Ok(())
            }
            Method::ChannelCloseOk(_) | Method::ChannelFlowOk(_) => {
                Err(AmqpError::command_invalid("unimplemented method").on_method(&method))
            }
            other => self.messaging(channel, Input::Method(other), out).await,
        }
    }

    async fn messaging(
        &mut self,
        channel: u16,
        input: Input,
        out: &mut Vec<Out>,
    ) -> Result<(), AmqpError> {
        let (Some(ch), Some(session)) = (self.channels.get_mut(&channel), self.session.as_mut())
        else {
            return Err(AmqpError::internal_error("channel without a vhost"));
        };
        methods::handle(ch, session, input, out).await
    }

    /// Deliveries from queues: each gets the next delivery tag of its channel and, when it
    /// must be acknowledged, a place in the unacked map. A delivery for a consumer that was
    /// cancelled meanwhile goes back to its queue; one for a channel that is gone is dropped
    /// (closing the channel told the queue to requeue it). A consumer being cancelled still
    /// gets what the queue sent it before the cancel.
    pub async fn deliver(&mut self, batch: Vec<Outgoing>, out: &mut Vec<Out>) {
        let backlog = self.session.as_ref().map(|s| Arc::clone(&s.backlog));
        // One clock read per batch: the consumer timeout counts from here.
        let now = Instant::now();
        for o in batch {
            if let (true, Some(backlog)) = (o.counted, &backlog) {
                backlog.release();
            }
            let Some(ch) = self.channels.get_mut(&o.channel) else {
                continue;
            };
            if ch.owner != o.owner || ch.closing {
                continue;
            }
            if !ch.consumers.contains_key(&o.tag) && !ch.draining.contains(&o.tag) {
                if let Some((q, position)) = o.ack {
                    let requeue = Command::Requeue {
                        owner: o.owner,
                        positions: vec![position],
                    };
                    let _ = q.tx.send(requeue).await;
                }
                continue;
            }
            let tag = ch.next_tag();
            if let Some((q, position)) = o.ack {
                ch.unacked.insert(tag, (q, position, now));
            }
            let deliver = BasicDeliver {
                consumer_tag: o.tag,
                delivery_tag: tag,
                redelivered: o.redelivered,
                exchange: o.message.exchange.clone(),
                routing_key: o.message.routing_key.clone(),
            };
            out.push(Out::Content {
                channel: o.channel,
                method: Method::BasicDeliver(deliver),
                message: o.message,
            });
        }
        if backlog.is_some_and(|b| b.take_starved()) {
            for ch in self.channels.values() {
                ch.wake_consumer_queues(|_| false).await;
            }
        }
    }

    /// Whether some open channel has deliveries awaiting acknowledgement.
    pub fn any_unacked(&self) -> bool {
        self.channels
            .values()
            .any(|ch| !ch.closing && !ch.unacked.is_empty())
    }

    /// The consumer (acknowledgement) timeout: closes each channel holding a delivery
    /// unacknowledged for longer than its timeout with RabbitMQ's 406 (what it held is
    /// requeued, as on any close), and returns the earliest deadline still ahead.
    pub async fn check_ack_timeouts(
        &mut self,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Option<Instant> {
        let default_ms = self.session.as_ref()?.consumer_timeout;
        let mut earliest: Option<Instant> = None;
        let mut expired: Vec<(u16, u64)> = Vec::new();
        for ch in self.channels.values().filter(|ch| !ch.closing) {
            match ch.ack_deadline(now, default_ms) {
                Err(ms) => expired.push((ch.number, ms)),
                Ok(Some(deadline)) => {
                    earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
                }
                Ok(None) => {}
            }
        }
        for (channel, ms) in expired {
            let error = AmqpError::new(
                ReplyCode::PRECONDITION_FAILED,
                consumer_timeout_message(channel, ms),
            );
            self.fail(channel, error, out).await;
        }
        earliest
    }

    /// The connection has taken the deliveries of just-cancelled consumers.
    pub fn end_draining(&mut self) {
        for ch in self.channels.values_mut() {
            ch.draining.clear();
        }
    }

    /// A queue went away under a consumer: forget it and, if the client has the
    /// `consumer_cancel_notify` capability, send it `basic.cancel`.
    pub fn consumer_cancelled(
        &mut self,
        channel: u16,
        owner: OwnerId,
        tag: ShortStr,
        out: &mut Vec<Out>,
    ) {
        let notify = self.session.as_ref().is_some_and(|s| s.cancel_notify);
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        if ch.owner != owner || ch.closing || ch.consumers.remove(&tag).is_none() {
            return;
        }
        if notify {
            out.push(Out::Method(
                channel,
                Method::BasicCancel(BasicCancel {
                    consumer_tag: tag,
                    no_wait: true,
                }),
            ));
        }
    }

    /// The connection is ending: every channel releases what it held (unacknowledged messages
    /// are requeued), then the connection's exclusive queues are deleted.
    pub async fn close_all(&mut self) {
        // The commits' confirms are never sent: this connection is closing.
        self.send_held().await;
        drop(self.commits.take());
        let Some(session) = self.session.as_mut() else {
            return;
        };
        for (_, mut ch) in self.channels.drain() {
            if !ch.closing {
                ch.release(session).await;
            }
        }
        session.delete_exclusive_queues().await;
    }
}

/// A content header or body with no content-carrying method before it (RabbitMQ's text).
fn no_content_method() -> AmqpError {
    AmqpError::unexpected_frame("expected method frame, got non method frame instead")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::broker::registry::Registry;
    use crate::protocol::{ChannelFlow, ChannelOpen, ReplyCode};

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn table(channel_max: u16) -> ChannelTable {
        let mut t = ChannelTable::new(channel_max);
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        t.attach(Session::new(Registry::new("/"), events, 1 << 20, true));
        t
    }

    /// Feeds one frame and returns the one method it answered, if any.
    fn h(t: &mut ChannelTable, channel: u16, input: Input) -> Result<Option<Method>, AmqpError> {
        let mut out = Vec::new();
        block(t.handle(channel, input, &mut out))?;
        assert!(out.len() <= 1, "{out:?}");
        Ok(out.pop().map(|o| match o {
            Out::Method(_, m) => m,
            other => panic!("unexpected {other:?}"),
        }))
    }

    fn open() -> Input {
        Input::Method(Method::ChannelOpen(ChannelOpen))
    }

    fn close() -> Input {
        Input::Method(Method::ChannelClose(ChannelClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        }))
    }

    fn err(table: &mut ChannelTable, channel: u16, input: Input) -> (u16, String, u16, u16) {
        let e = h(table, channel, input).unwrap_err();
        (
            e.code.code(),
            e.reply_text().as_str().to_owned(),
            e.class_id,
            e.method_id,
        )
    }

    #[test]
    fn open_close_and_reuse() {
        let mut t = table(10);
        assert_eq!(
            h(&mut t, 1, open()).unwrap(),
            Some(Method::ChannelOpenOk(ChannelOpenOk))
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            h(&mut t, 1, close()).unwrap(),
            Some(Method::ChannelCloseOk(ChannelCloseOk))
        );
        assert!(t.is_empty());
        assert!(h(&mut t, 1, open()).unwrap().is_some());
        assert!(h(&mut t, 10, open()).unwrap().is_some());
    }

    #[test]
    fn channel_max_bounds_how_many_are_open_not_their_numbers() {
        let mut t = table(3);
        for channel in [1, 65535, 2048] {
            assert_eq!(
                h(&mut t, channel, open()).unwrap(),
                Some(Method::ChannelOpenOk(ChannelOpenOk))
            );
        }
        let refused = (
            530,
            "NOT_ALLOWED - number of channels opened (3) has reached the negotiated channel_max (3)"
                .to_owned(),
            0,
            0,
        );
        assert_eq!(err(&mut t, 4, open()), refused);
        assert_eq!(t.len(), 3);
        // A channel closing (its close-ok not yet in) still counts, as in RabbitMQ.
        t.channels.get_mut(&65535).unwrap().closing = true;
        assert_eq!(err(&mut t, 4, open()), refused);
        h(
            &mut t,
            65535,
            Input::Method(Method::ChannelCloseOk(ChannelCloseOk)),
        )
        .unwrap();
        assert!(h(&mut t, 4, open()).unwrap().is_some());
        h(&mut t, 1, close()).unwrap();
        assert!(h(&mut t, 65535, open()).unwrap().is_some());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn rabbitmq_errors() {
        let mut t = table(10);
        assert_eq!(
            err(&mut t, 1, close()),
            (
                504,
                "CHANNEL_ERROR - expected 'channel.open'".into(),
                20,
                40
            )
        );
        h(&mut t, 1, open()).unwrap();
        assert_eq!(
            err(&mut t, 1, open()),
            (
                504,
                "CHANNEL_ERROR - second 'channel.open' seen".into(),
                20,
                10
            )
        );
        let flow = |active| Input::Method(Method::ChannelFlow(ChannelFlow { active }));
        assert_eq!(
            h(&mut t, 1, flow(true)).unwrap(),
            Some(Method::ChannelFlowOk(ChannelFlowOk { active: true }))
        );
        assert_eq!(
            err(&mut t, 1, flow(false)),
            (540, "NOT_IMPLEMENTED - active=false".into(), 20, 20)
        );
        assert_eq!(
            err(&mut t, 1, Input::Body(Bytes::from_static(b"x"))),
            (
                505,
                "UNEXPECTED_FRAME - expected method frame, got non method frame instead".into(),
                0,
                0
            )
        );
        assert_eq!(
            err(
                &mut t,
                1,
                Input::Method(Method::ChannelCloseOk(ChannelCloseOk))
            ),
            (503, "COMMAND_INVALID - unimplemented method".into(), 20, 41)
        );
    }

    #[test]
    fn a_closing_channel_ignores_all_but_close_and_close_ok() {
        let mut t = table(10);
        h(&mut t, 1, open()).unwrap();
        t.channels.get_mut(&1).unwrap().closing = true;
        assert_eq!(h(&mut t, 1, open()).unwrap(), None);
        assert_eq!(h(&mut t, 1, Input::Body(Bytes::new())).unwrap(), None);
        assert_eq!(
            h(
                &mut t,
                1,
                Input::Method(Method::ChannelCloseOk(ChannelCloseOk))
            )
            .unwrap(),
            None
        );
        assert!(t.is_empty());
        h(&mut t, 1, open()).unwrap();
        t.channels.get_mut(&1).unwrap().closing = true;
        assert_eq!(
            h(&mut t, 1, close()).unwrap(),
            Some(Method::ChannelCloseOk(ChannelCloseOk))
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_channel_error_closes_only_the_channel() {
        let mut t = table(10);
        h(&mut t, 1, open()).unwrap();
        h(&mut t, 2, open()).unwrap();
        let mut out = Vec::new();
        block(t.fail(1, AmqpError::access_refused("denied").on(50, 10), &mut out));
        let Some(Out::Method(1, reply)) = out.pop() else {
            panic!("no close")
        };
        assert_eq!(
            reply,
            (Method::ChannelClose(ChannelClose {
                reply_code: ReplyCode::ACCESS_REFUSED.code(),
                reply_text: "ACCESS_REFUSED - denied".into(),
                class_id: 50,
                method_id: 10,
            }))
        );
        assert!(t.channels[&1].closing);
        assert!(!t.channels[&2].closing);
    }
}
