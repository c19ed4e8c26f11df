//! Connection limits: at most `max_connections` open at once and
//! `max_connections_per_peer` from one IP address (more are closed at
//! accept, counted), and each connection closed after `idle_timeout` without
//! a byte from the client. With hyper's header-read timeout (set in `lib.rs`)
//! a client can hold a connection only by sending a request, and an upload
//! only by sending its body before `body_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum_server::accept::Accept;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::metrics::ReasonLabel;

/// Shared connection counts.
pub struct Limits {
    pub max_total: usize,
    pub max_per_peer: usize,
    pub idle_timeout: Duration,
    state: Mutex<Counts>,
    pub open: Gauge,
    pub refused: Family<ReasonLabel, Counter>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

impl Limits {
    pub fn new(
        max_total: usize,
        max_per_peer: usize,
        idle_timeout: Duration,
        open: Gauge,
        refused: Family<ReasonLabel, Counter>,
    ) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_peer, idle_timeout, state: Mutex::default(), open, refused })
    }

    /// Takes a connection slot for `peer`, or says which limit is reached.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, &'static str> {
        let mut s = self.state.lock().map_err(|_| "internal")?;
        if s.total >= self.max_total {
            return Err("max_connections");
        }
        let n = s.per_peer.entry(peer).or_default();
        if *n >= self.max_per_peer {
            return Err("max_connections_per_peer");
        }
        *n += 1;
        s.total += 1;
        self.open.set(s.total as i64);
        Ok(Slot { limits: self.clone(), peer })
    }
}

/// A held connection slot, given back when the connection closes.
pub struct Slot {
    limits: Arc<Limits>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.limits.state.lock() {
            s.total = s.total.saturating_sub(1);
            if let Some(n) = s.per_peer.get_mut(&self.peer) {
                *n -= 1;
                if *n == 0 {
                    s.per_peer.remove(&self.peer);
                }
            }
            self.limits.open.set(s.total as i64);
        }
    }
}

/// The acceptor: admits a connection within the limits, or closes it.
#[derive(Clone)]
pub struct Limited {
    pub limits: Arc<Limits>,
}

impl<S: Send + 'static> Accept<TcpStream, S> for Limited {
    type Stream = Guarded;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Guarded, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = match stream.peer_addr() {
            Ok(a) => a.ip(),
            Err(e) => return std::future::ready(Err(e)),
        };
        let result = match self.limits.admit(peer) {
            Ok(slot) => {
                let _ = stream.set_nodelay(true);
                let idle = self.limits.idle_timeout;
                Ok((
                    Guarded { inner: stream, _slot: slot, idle, deadline: Box::pin(tokio::time::sleep(idle)) },
                    service,
                ))
            }
            Err(reason) => {
                self.limits.refused.get_or_create(&ReasonLabel { reason }).inc();
                tracing::debug!(%peer, "connection closed at accept: {reason} reached");
                // Dropping the stream closes it.
                Err(io::Error::other(reason))
            }
        };
        std::future::ready(result)
    }
}

/// A connection holding its slot, closed when the client stays silent for
/// `idle` (a read that waits longer fails with `TimedOut`).
pub struct Guarded {
    inner: TcpStream,
    _slot: Slot,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let next = Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(r)
            }
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle")))
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises the open-file soft limit to the hard limit; returns the soft limit
/// now in force.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return None;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
    }
    // rlim_t is u64 on Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    Some(r.rlim_cur as u64)
}
