//! Queues. `state` is the serial state machine of one queue (FIFO with requeue in place,
//! consumers, prefetch credit, unacknowledged deliveries), plain single-threaded code with no
//! I/O; the task that owns a queue feeds it commands and ships its deliveries.

mod admission;
mod consumers;
mod dead_letters;
mod limit;
pub mod paging;
mod state;
mod task;

pub use admission::{Admission, Refused};
pub use consumers::{ConsumerId, ConsumerSpec};
pub use dead_letters::dead_letter_message;
pub use limit::{Backlog, ChannelLimit};
pub use state::{Delivery, Entry, OwnerId, Position, QueueState};
pub use task::{
    reserve_ids_through, spawn, spawn_recovered, Command, ConnEvent, Enqueued, Outgoing, QueueRef,
    QueueShared, Settle, Sink, MAILBOX,
};

#[cfg(test)]
mod handover_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod timer_tests;
