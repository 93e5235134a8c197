//! The tx class: a transactional channel holds its publishes and settlements until
//! `tx.commit` (which routes and settles them in order) or `tx.rollback` (which drops the
//! publishes and puts the settled deliveries back to unacked).

use std::sync::Arc;
use std::time::Instant;

use super::basic::route;
use super::methods::{precondition, unimplemented};
use super::session::{Out, Session};
use super::state::{Channel, Tx};
use crate::broker::queue::Settle;
use crate::error::AmqpError;
use crate::protocol::*;

pub(super) async fn run(
    ch: &mut Channel,
    s: &mut Session,
    method: Method,
    out: &mut Vec<Out>,
) -> Result<(), AmqpError> {
    match method {
        Method::TxSelect(_) => select(ch, out),
        Method::TxCommit(_) => commit(ch, s, out).await,
        Method::TxRollback(_) => rollback(ch, out),
        other => Err(unimplemented(&other)),
    }
}

fn select(ch: &mut Channel, out: &mut Vec<Out>) -> Result<(), AmqpError> {
    if ch.confirm.is_some() {
        return Err(precondition("cannot switch from confirm to tx mode"));
    }
    if ch.tx.is_none() {
        ch.tx = Some(Tx::default());
    }
    out.push(Out::Method(ch.number, Method::TxSelectOk(TxSelectOk)));
    Ok(())
}

async fn commit(ch: &mut Channel, s: &mut Session, out: &mut Vec<Out>) -> Result<(), AmqpError> {
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
    out.push(Out::Method(ch.number, Method::TxCommitOk(TxCommitOk)));
    Ok(())
}

fn rollback(ch: &mut Channel, out: &mut Vec<Out>) -> Result<(), AmqpError> {
    let Some(tx) = ch.tx.replace(Tx::default()) else {
        return Err(precondition("channel is not transactional"));
    };
    // The timeout clock restarts for what the rollback puts back.
    let now = Instant::now();
    for (tag, q, p, _) in tx.settles {
        ch.unacked.insert(tag, (q, p, now));
    }
    out.push(Out::Method(ch.number, Method::TxRollbackOk(TxRollbackOk)));
    Ok(())
}
