//! The listener: binds the listening sockets, accepts TCP connections and gives each its own
//! task over its transport, and stops them all at shutdown.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::warn;

use super::connection;
use super::transport::Transport;
use super::Context;

/// Pending connections the kernel queues per listener (what tokio's `TcpListener::bind` uses).
const BACKLOG: i32 = 1024;

/// An address that could not be listened on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindError {
    pub addr: SocketAddr,
    pub message: String,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.message)
    }
}

impl std::error::Error for BindError {}

/// Binds every address in order, returning each listener with the address it got (the port
/// chosen for port 0). Any failure stops the start, except that an IPv6 wildcard or
/// loopback address on a host without IPv6 is skipped with a warning (RabbitMQ likewise listens
/// on IPv4 only there), as long as some other address was bound.
fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<(SocketAddr, TcpListener)>, BindError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    let mut skipped = None;
    for &addr in addrs {
        match bind(addr) {
            Ok(listener) => listeners.push(listener),
            Err(e) if ipv6_unavailable(addr, &e) => {
                warn!(%addr, error = %e, "IPv6 is not available on this host; not listening on {addr}");
                skipped.get_or_insert(BindError {
                    addr,
                    message: e.to_string(),
                });
            }
            Err(e) => {
                return Err(BindError {
                    addr,
                    message: e.to_string(),
                })
            }
        }
    }
    match skipped {
        Some(error) if listeners.is_empty() => Err(error),
        _ => Ok(listeners),
    }
}

/// One listening socket. An IPv6 socket is IPv6-only, so that `[::]:P` and `0.0.0.0:P` can
/// both be bound whatever the host's `bindv6only` default (on Linux a dual-stack `[::]` would
/// take the IPv4 port too).
fn bind(addr: SocketAddr) -> io::Result<(SocketAddr, TcpListener)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // As tokio's `bind`: a restarted broker can take its port while old connections linger in
    // TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let listener = TcpListener::from_std(socket.into())?;
    Ok((listener.local_addr()?, listener))
}

/// Whether `error` binding `addr` means the host has no IPv6 (no address family, or no `::1`
/// / `::` address to bind), rather than a mistake in the configuration.
fn ipv6_unavailable(addr: SocketAddr, error: &io::Error) -> bool {
    use rustix::io::Errno;
    if !addr.is_ipv6() {
        return false;
    }
    let no_family = [Errno::AFNOSUPPORT, Errno::PROTONOSUPPORT]
        .iter()
        .any(|errno| error.raw_os_error() == Some(errno.raw_os_error()));
    let ip = addr.ip();
    no_family
        || (error.kind() == io::ErrorKind::AddrNotAvailable
            && (ip.is_unspecified() || ip.is_loopback()))
}

/// The broker's listening sockets, bound (binding fails before anything runs) and not yet
/// accepting. [`Listener::start`] gives each its accept task.
#[derive(Debug)]
pub struct Listener {
    sockets: Vec<(SocketAddr, TcpListener)>,
}

impl Listener {
    /// Binds every address, as [`bind_all`] does.
    pub fn bind(addrs: &[SocketAddr]) -> Result<Listener, BindError> {
        Ok(Listener {
            sockets: bind_all(addrs)?,
        })
    }

    /// The bound addresses, in the order given (with the ports chosen for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(addr, _)| *addr).collect()
    }

    /// Accepts on every socket, serving each client on its own task with `ctx`, until
    /// [`Listening::shutdown`] (or its drop).
    pub fn start(self, ctx: Arc<Context>) -> Listening {
        let local_addrs = self.local_addrs();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (alive_tx, alive) = mpsc::channel(1);
        let connections = Connections {
            ctx,
            shutdown: shutdown_rx,
            alive: alive_tx,
        };
        let accepts = self
            .sockets
            .into_iter()
            .map(|(_, socket)| tokio::spawn(accept_tcp(socket, connections.clone())))
            .collect();
        Listening {
            local_addrs,
            shutdown,
            alive,
            accepts,
        }
    }
}

/// Listeners accepting, and the connections they started. Dropping it also closes every
/// connection with 320, but nobody waits for them.
#[derive(Debug)]
pub struct Listening {
    local_addrs: Vec<SocketAddr>,
    /// Set to `true` (or dropped) to stop the accept loops and close every connection.
    shutdown: watch::Sender<bool>,
    /// Sees the channel close once every accept loop and connection has finished (each holds
    /// a sender).
    alive: mpsc::Receiver<()>,
    accepts: Vec<JoinHandle<()>>,
}

impl Listening {
    /// Every listener's address, in the order they were bound.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops accepting, closes every connection with 320 CONNECTION_FORCED, and returns once
    /// each has finished its close handshake (or given up waiting for close-ok).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for accept in &mut self.accepts {
            let _ = accept.await;
        }
        let _ = self.alive.recv().await;
    }
}

/// What starts a connection's task, whatever its transport.
#[derive(Debug, Clone)]
struct Connections {
    ctx: Arc<Context>,
    shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
}

impl Connections {
    /// Serves `stream`, accepted from `peer`, on a task of its own. A TLS listener hands its
    /// stream here once the TLS handshake is done.
    fn spawn<T: Transport>(&self, stream: T, peer: SocketAddr) {
        let ctx = Arc::clone(&self.ctx);
        let shutdown = self.shutdown.clone();
        let alive = self.alive.clone();
        tokio::spawn(async move {
            connection::run(stream, peer, ctx, shutdown).await;
            drop(alive);
        });
    }
}

/// Accepts plain TCP connections until shutdown.
async fn accept_tcp(listener: TcpListener, connections: Connections) {
    let mut shutdown = connections.shutdown.clone();
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
                // Frames are batched by the writer already: Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                connections.spawn(stream, peer);
            }
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_missing_ipv6_is_forgiven() {
        use rustix::io::Errno;
        let no_family = io::Error::from_raw_os_error(Errno::AFNOSUPPORT.raw_os_error());
        let not_here = io::Error::from(io::ErrorKind::AddrNotAvailable);
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        assert!(ipv6_unavailable(addr("[::]:5672"), &no_family));
        assert!(ipv6_unavailable(addr("[2001:db8::1]:5672"), &no_family));
        assert!(ipv6_unavailable(addr("[::]:5672"), &not_here));
        assert!(ipv6_unavailable(addr("[::1]:5672"), &not_here));
        // A specific address the host does not have is a configuration mistake.
        assert!(!ipv6_unavailable(addr("[2001:db8::1]:5672"), &not_here));
        assert!(!ipv6_unavailable(addr("[::]:5672"), &in_use));
        assert!(!ipv6_unavailable(addr("0.0.0.0:5672"), &no_family));
    }

    #[tokio::test]
    async fn the_same_port_on_ipv4_and_ipv6_wildcards() {
        if bind(addr("[::1]:0")).is_err() {
            eprintln!("no IPv6 on this host: nothing to test");
            return;
        }
        // Without IPV6_V6ONLY the second bind fails on Linux (the dual-stack [::] holds it).
        let first = bind_all(&[addr("0.0.0.0:0")]).unwrap();
        let port = first[0].0.port();
        drop(first);
        let wildcards = [
            SocketAddr::from(([0, 0, 0, 0], port)),
            SocketAddr::from(([0u16; 8], port)),
        ];
        let both = bind_all(&wildcards).unwrap();
        let bound: Vec<SocketAddr> = both.iter().map(|(a, _)| *a).collect();
        assert_eq!(bound, wildcards);
    }

    #[tokio::test]
    async fn an_address_the_host_lacks_stops_the_start() {
        let err = bind_all(&[addr("127.0.0.1:0"), addr("[2001:db8::1]:0")]).unwrap_err();
        assert_eq!(err.addr, addr("[2001:db8::1]:0"));
        assert!(
            err.to_string()
                .starts_with("cannot listen on [2001:db8::1]:0: "),
            "{err}"
        );
    }
}
