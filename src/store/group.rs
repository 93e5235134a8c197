//! [`GroupCommitter`]: one writer thread that turns many small commits into few WAL syncs.
//!
//! Queues submit their per-wake-up batches; while one commit is syncing, new batches wait in the
//! channel; the next round takes all of them (up to a size cap), merges them into one [`Batch`],
//! commits it with one write and at most one sync, then answers every submitter. Under load the
//! number of fsyncs therefore follows the disk's speed, not the publish rate, which is what makes
//! publisher confirms cheap (the broker sends `basic.ack multiple=true` when its ticket resolves).
//!
//! A merged commit is all-or-nothing. If it fails, nothing of it was applied, so the committer
//! retries each batch on its own: one queue's bad batch (an unknown entry, say) fails only that
//! queue, and the others still commit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::{Batch, Durability, Store, StoreError};

struct Request {
    batch: Batch,
    durability: Durability,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Counters for tests, benches and metrics.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    commits: AtomicU64,
    syncs: AtomicU64,
}

/// A snapshot of a [`GroupCommitter`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    /// Batches submitted and answered.
    pub batches: u64,
    /// Store commits made (merged groups, plus retries after a failed group).
    pub commits: u64,
    /// Commits made with [`Durability::Sync`]: the fsyncs paid.
    pub syncs: u64,
}

/// The answer to one submitted batch. `.await` it in a task, or [`CommitTicket::wait`] on a
/// thread (not inside a tokio runtime: that would block a worker).
#[derive(Debug)]
pub struct CommitTicket(oneshot::Receiver<Result<(), StoreError>>);

impl CommitTicket {
    /// Blocks until the batch is committed (or failed).
    pub fn wait(self) -> Result<(), StoreError> {
        self.0
            .blocking_recv()
            .unwrap_or(Err(StoreError::CommitterStopped))
    }
}

impl Future for CommitTicket {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|reply| reply.unwrap_or(Err(StoreError::CommitterStopped)))
    }
}

/// The store's single writer thread. Dropping it finishes the batches already submitted, then
/// stops the thread.
#[derive(Debug)]
pub struct GroupCommitter {
    sender: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl GroupCommitter {
    /// Starts the writer thread. A group stops growing at `max_ops` operations, so one commit
    /// (and the memory it holds) stays bounded under a flood.
    pub fn spawn<S: Store + ?Sized + 'static>(
        store: Arc<S>,
        max_ops: usize,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Request>();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("warren-store-commit".to_owned())
            .spawn(move || run(&*store, &receiver, max_ops.max(1), &thread_counters))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            counters,
        })
    }

    /// Queues `batch` for the next group. Never blocks.
    pub fn submit(&self, batch: Batch, durability: Durability) -> CommitTicket {
        let (reply, receiver) = oneshot::channel();
        if let Some(sender) = &self.sender {
            // A send error means the thread is gone: dropping `reply` makes the ticket say so.
            let _ = sender.send(Request {
                batch,
                durability,
                reply,
            });
        }
        CommitTicket(receiver)
    }

    pub fn stats(&self) -> GroupStats {
        GroupStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
        }
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the queue is drained.
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run<S: Store + ?Sized>(
    store: &S,
    receiver: &mpsc::Receiver<Request>,
    max_ops: usize,
    counters: &Counters,
) {
    while let Ok(first) = receiver.recv() {
        let mut ops = first.batch.len();
        let mut group = vec![first];
        while ops < max_ops {
            match receiver.try_recv() {
                Ok(request) => {
                    ops += request.batch.len();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        commit_group(store, group, counters);
    }
}

fn durability_of(group: &[Request]) -> Durability {
    if group.iter().any(|r| r.durability == Durability::Sync) {
        Durability::Sync
    } else {
        Durability::NoSync
    }
}

fn commit_once<S: Store + ?Sized>(
    store: &S,
    batch: Batch,
    durability: Durability,
    counters: &Counters,
) -> Result<(), StoreError> {
    counters.commits.fetch_add(1, Ordering::Relaxed);
    if durability == Durability::Sync {
        counters.syncs.fetch_add(1, Ordering::Relaxed);
    }
    let result = store.commit(batch, durability);
    if let Err(e) = &result {
        // Most submitters (acks, pages) do not wait for their answer: say it here.
        tracing::error!(error = %e, "store commit failed");
    }
    result
}

fn commit_group<S: Store + ?Sized>(store: &S, group: Vec<Request>, counters: &Counters) {
    counters
        .batches
        .fetch_add(group.len() as u64, Ordering::Relaxed);
    if group.len() == 1 {
        for request in group {
            let result = commit_once(store, request.batch, request.durability, counters);
            let _ = request.reply.send(result);
        }
        return;
    }
    let durability = durability_of(&group);
    let mut merged = Batch::new();
    for request in &group {
        merged.append(request.batch.clone());
    }
    match commit_once(store, merged, durability, counters) {
        Ok(()) => {
            for request in group {
                // A submitter that stopped waiting is not an error for the others.
                let _ = request.reply.send(Ok(()));
            }
        }
        Err(_) => {
            // Nothing of the group was applied: retry each batch alone, in order.
            for request in group {
                let result = commit_once(store, request.batch, request.durability, counters);
                let _ = request.reply.send(result);
            }
        }
    }
}
