//! The exchange class: declare, delete, bind and unbind, through the vhost registry.

use super::methods::{reply, unimplemented};
use super::session::{Out, Session};
use super::state::Channel;
use crate::broker::registry::{Dest, ExchangeSpec};
use crate::error::AmqpError;
use crate::protocol::*;

pub(super) fn run(
    ch: &Channel,
    s: &Session,
    method: Method,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    let n = ch.number;
    match method {
        Method::ExchangeDeclare(m) => declare(s, m, n, out),
        Method::ExchangeDelete(m) => {
            s.registry
                .delete_exchange(m.exchange.as_str(), m.if_unused)?;
            reply(
                out,
                n,
                m.no_wait,
                Method::ExchangeDeleteOk(ExchangeDeleteOk),
            );
            Ok(())
        }
        Method::ExchangeBind(m) => bind(s, m, n, out),
        Method::ExchangeUnbind(m) => unbind(s, m, n, out),
        other => Err(unimplemented(&other)),
    }
}

fn declare(s: &Session, m: ExchangeDeclare, n: u16, out: &mut Vec<Out>) -> Result<(), AmqpError> {
    let spec = ExchangeSpec {
        name: m.exchange.as_str().to_owned(),
        kind: m.kind.as_str().to_owned(),
        durable: m.durable,
        auto_delete: m.auto_delete,
        internal: m.internal,
        arguments: m.arguments,
    };
    s.registry.declare_exchange(&spec, m.passive)?;
    reply(
        out,
        n,
        m.no_wait,
        Method::ExchangeDeclareOk(ExchangeDeclareOk),
    );
    Ok(())
}

fn bind(s: &Session, m: ExchangeBind, n: u16, out: &mut Vec<Out>) -> Result<(), AmqpError> {
    let dest = Dest::Exchange(m.destination.as_str().into());
    s.registry.bind(
        m.source.as_str(),
        dest,
        m.routing_key.as_str(),
        &m.arguments,
    )?;
    reply(out, n, m.no_wait, Method::ExchangeBindOk(ExchangeBindOk));
    Ok(())
}

fn unbind(s: &Session, m: ExchangeUnbind, n: u16, out: &mut Vec<Out>) -> Result<(), AmqpError> {
    let dest = Dest::Exchange(m.destination.as_str().into());
    s.registry.unbind(
        m.source.as_str(),
        dest,
        m.routing_key.as_str(),
        &m.arguments,
        s.connection,
    )?;
    reply(
        out,
        n,
        m.no_wait,
        Method::ExchangeUnbindOk(ExchangeUnbindOk),
    );
    Ok(())
}
