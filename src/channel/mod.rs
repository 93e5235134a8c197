//! Channels: the per-channel state machine and the table of a connection's channels. No I/O:
//! the connection feeds frames in and sends out what comes back.

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::{AmqpError, Scope};
use crate::protocol::{
    ChannelClose, ChannelCloseOk, ChannelFlowOk, ChannelOpenOk, ContentHeader, Method,
    CLASS_CONNECTION,
};

/// A frame addressed to a channel other than 0, as the connection hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Method(Method),
    Header(Box<ContentHeader>),
    Body(Bytes),
}

/// Where one channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We sent `channel.close`: everything but close/close-ok is dropped until close-ok.
    Closing,
}

/// The channels of one connection.
///
/// Invariant: every key is in `1..=channel_max`; a channel is in the table from its
/// `channel.open` until the close handshake completes, so a number is reusable only after
/// close-ok went one way or the other.
#[derive(Debug)]
pub struct ChannelTable {
    channel_max: u16,
    channels: HashMap<u16, State>,
}

impl ChannelTable {
    pub fn new(channel_max: u16) -> ChannelTable {
        ChannelTable {
            channel_max,
            channels: HashMap::new(),
        }
    }

    /// Number of channels open or closing.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Feeds one frame for `channel` (never 0). `Ok(Some(m))` is a method to send on that
    /// channel. Channel errors are handled here (the channel starts closing and the reply is
    /// the `channel.close`); an `Err` is always a connection error.
    pub fn handle(&mut self, channel: u16, input: Input) -> Result<Option<Method>, AmqpError> {
        let result = self.dispatch(channel, input);
        self.settle(channel, result)
    }

    /// Turns a channel error into the channel's `channel.close`; passes everything else on.
    fn settle(
        &mut self,
        channel: u16,
        result: Result<Option<Method>, AmqpError>,
    ) -> Result<Option<Method>, AmqpError> {
        match result {
            Err(error) if error.scope == Scope::Channel => {
                self.channels.insert(channel, State::Closing);
                Ok(Some(Method::ChannelClose(ChannelClose {
                    reply_code: error.code.code(),
                    reply_text: error.reply_text(),
                    class_id: error.class_id,
                    method_id: error.method_id,
                })))
            }
            other => other,
        }
    }

    fn dispatch(&mut self, channel: u16, input: Input) -> Result<Option<Method>, AmqpError> {
        if let Input::Method(method) = &input {
            if method.class_id() == CLASS_CONNECTION {
                return Err(AmqpError::command_invalid("unimplemented method").on_method(method));
            }
        }
        match (self.channels.get(&channel).copied(), input) {
            (None, Input::Method(Method::ChannelOpen(_))) => {
                if channel > self.channel_max {
                    return Err(AmqpError::not_allowed(format!(
                        "channel number {channel} is higher than the negotiated channel_max ({})",
                        self.channel_max
                    ))
                    .on(20, 10));
                }
                self.channels.insert(channel, State::Open);
                Ok(Some(Method::ChannelOpenOk(ChannelOpenOk)))
            }
            // A close-ok crossing our forgetting of the channel: nothing left to do.
            (None, Input::Method(Method::ChannelCloseOk(_))) => Ok(None),
            (None, Input::Method(method)) => {
                Err(AmqpError::channel_error("expected 'channel.open'").on_method(&method))
            }
            (Some(State::Closing), Input::Method(Method::ChannelClose(_))) => {
                self.channels.remove(&channel);
                Ok(Some(Method::ChannelCloseOk(ChannelCloseOk)))
            }
            (Some(State::Closing), Input::Method(Method::ChannelCloseOk(_))) => {
                self.channels.remove(&channel);
                Ok(None)
            }
            (Some(State::Closing), _) => Ok(None),
            (Some(State::Open), Input::Method(method)) => self.open_channel(channel, method),
            (_, Input::Header(_) | Input::Body(_)) => Err(no_content_method()),
        }
    }

    fn open_channel(&mut self, channel: u16, method: Method) -> Result<Option<Method>, AmqpError> {
        match method {
            Method::ChannelOpen(_) => {
                Err(AmqpError::channel_error("second 'channel.open' seen").on_method(&method))
            }
            Method::ChannelFlow(flow) if flow.active => {
                Ok(Some(Method::ChannelFlowOk(ChannelFlowOk { active: true })))
            }
            // RabbitMQ dropped flow control by channel.flow long ago.
            Method::ChannelFlow(_) => {
                Err(AmqpError::not_implemented("active=false").on_method(&method))
            }
            Method::ChannelClose(_) => {
                self.channels.remove(&channel);
                Ok(Some(Method::ChannelCloseOk(ChannelCloseOk)))
            }
            Method::ChannelCloseOk(_) | Method::ChannelFlowOk(_) => {
                Err(AmqpError::command_invalid("unimplemented method").on_method(&method))
            }
            other => Err(not_implemented_yet(&other)),
        }
    }
}

/// Every method of the exchange, queue, basic, tx and confirm classes until messaging lands.
/// This is the single place the next issue replaces with the real handlers.
fn not_implemented_yet(method: &Method) -> AmqpError {
    AmqpError::not_implemented(format!("{} not implemented", method.name())).on_method(method)
}

/// A content header or body with no content-carrying method before it (RabbitMQ's text).
fn no_content_method() -> AmqpError {
    AmqpError::unexpected_frame("expected method frame, got non method frame instead")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::protocol::{ChannelFlow, ChannelOpen, ReplyCode};

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
        let e = table.handle(channel, input).unwrap_err();
        (
            e.code.code(),
            e.reply_text().as_str().to_owned(),
            e.class_id,
            e.method_id,
        )
    }

    #[test]
    fn open_close_and_reuse() {
        let mut t = ChannelTable::new(10);
        assert_eq!(
            t.handle(1, open()).unwrap(),
            Some(Method::ChannelOpenOk(ChannelOpenOk))
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.handle(1, close()).unwrap(),
            Some(Method::ChannelCloseOk(ChannelCloseOk))
        );
        assert!(t.is_empty());
        assert!(t.handle(1, open()).unwrap().is_some());
        assert!(t.handle(10, open()).unwrap().is_some());
    }

    #[test]
    fn rabbitmq_errors() {
        let mut t = ChannelTable::new(10);
        assert_eq!(
            err(&mut t, 11, open()),
            (
                530,
                "NOT_ALLOWED - channel number 11 is higher than the negotiated channel_max (10)"
                    .into(),
                20,
                10
            )
        );
        assert_eq!(
            err(&mut t, 1, close()),
            (
                504,
                "CHANNEL_ERROR - expected 'channel.open'".into(),
                20,
                40
            )
        );
        t.handle(1, open()).unwrap();
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
            t.handle(1, flow(true)).unwrap(),
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
        let mut t = ChannelTable::new(10);
        t.handle(1, open()).unwrap();
        t.channels.insert(1, State::Closing);
        assert_eq!(t.handle(1, open()).unwrap(), None);
        assert_eq!(t.handle(1, Input::Body(Bytes::new())).unwrap(), None);
        assert_eq!(
            t.handle(1, Input::Method(Method::ChannelCloseOk(ChannelCloseOk)))
                .unwrap(),
            None
        );
        assert!(t.is_empty());
        t.handle(1, open()).unwrap();
        t.channels.insert(1, State::Closing);
        assert_eq!(
            t.handle(1, close()).unwrap(),
            Some(Method::ChannelCloseOk(ChannelCloseOk))
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_channel_error_closes_only_the_channel() {
        let mut t = ChannelTable::new(10);
        t.handle(1, open()).unwrap();
        t.handle(2, open()).unwrap();
        let reply = t
            .settle(1, Err(AmqpError::access_refused("denied").on(50, 10)))
            .unwrap();
        assert_eq!(
            reply,
            Some(Method::ChannelClose(ChannelClose {
                reply_code: ReplyCode::ACCESS_REFUSED.code(),
                reply_text: "ACCESS_REFUSED - denied".into(),
                class_id: 50,
                method_id: 10,
            }))
        );
        assert_eq!(t.channels.get(&1), Some(&State::Closing));
        assert_eq!(t.channels.get(&2), Some(&State::Open));
    }
}
