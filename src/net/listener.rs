//! Accepts TCP connections and gives each its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use super::connection;
use super::Context;

/// Accepts until shutdown. Every connection task holds a clone of `alive`; the receiver sees
/// the channel close once the listener and every connection have finished.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ctx = Arc::clone(&ctx);
                let shutdown = shutdown.clone();
                let alive = alive.clone();
                tokio::spawn(async move {
                    connection::run(stream, peer, ctx, shutdown).await;
                    drop(alive);
                });
            }
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
