//! The confirm class: `confirm.select` turns publisher confirms on (not on a transactional
//! channel).

use super::methods::{precondition, reply, unimplemented};
use super::session::Out;
use super::state::Channel;
use crate::error::AmqpError;
use crate::protocol::*;

pub(super) fn run(ch: &mut Channel, method: Method, out: &mut Vec<Out>) -> Result<(), AmqpError> {
    let Method::ConfirmSelect(m) = method else {
        return Err(unimplemented(&method));
    };
    if ch.tx.is_some() {
        return Err(precondition("cannot switch from tx to confirm mode"));
    }
    if ch.confirm.is_none() {
        ch.confirm = Some(1);
    }
    reply(
        out,
        ch.number,
        m.nowait,
        Method::ConfirmSelectOk(ConfirmSelectOk),
    );
    Ok(())
}
