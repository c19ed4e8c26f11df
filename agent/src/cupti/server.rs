//! The socket the injection clients connect to.
//!
//! `SOCK_SEQPACKET` (one frame per message) at `cupti.socket`, mode 0666 so
//! workloads of any user can reach it; the peer's uid, taken from
//! `SO_PEERCRED` when it connects, must be root, the agent's own, or in
//! `allowed_uids`, else the connection is closed and counted.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use strand_inject::sock::{self, PeerCred, Received};
use strand_inject::wire::MAX_FRAME;
use strand_schemas::tables::{CudaSyncCall, KernelEvent};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::CuptiConfig;
use super::metrics::{CuptiMetrics, Outcome, reason};
use super::session::Session;
use crate::context::SourceContext;
use crate::shutdown::Shutdown;
use crate::sink::RowSink;

/// A process's metric labels are dropped this long after its last connection closed.
const RETIRE_AFTER: Duration = Duration::from_secs(600);

/// What the server shares with its connection tasks.
struct Shared {
    ctx: Arc<SourceContext>,
    kernels: RowSink<KernelEvent>,
    syncs: RowSink<CudaSyncCall>,
    metrics: CuptiMetrics,
    /// Per client pid: the cumulative counts it last reported (they survive reconnects).
    procs: Mutex<HashMap<i32, Proc>>,
    proc_root: PathBuf,
}

#[derive(Debug)]
struct Proc {
    comm: String,
    seq: u64,
    dropped: u64,
    cupti_dropped: u64,
    connections: usize,
    idle_since: Option<Instant>,
}

/// Accepts injection clients on `socket` and writes their records to
/// `kernels` and `syncs` until `shutdown`: [`bind`], then [`serve_bound`].
#[cfg(test)]
pub async fn serve(
    cfg: &CuptiConfig,
    socket: PathBuf,
    ctx: Arc<SourceContext>,
    kernels: RowSink<KernelEvent>,
    syncs: RowSink<CudaSyncCall>,
    metrics: CuptiMetrics,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let listener = bind(&socket)?;
    serve_bound(cfg, listener, socket, ctx, kernels, syncs, metrics, shutdown, PathBuf::from("/proc")).await
}

/// Serves injection clients on a socket [`bind`] made, writing their records
/// to `kernels` and `syncs` until `shutdown`, then removes the socket file.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_bound(
    cfg: &CuptiConfig,
    listener: OwnedFd,
    socket: PathBuf,
    ctx: Arc<SourceContext>,
    kernels: RowSink<KernelEvent>,
    syncs: RowSink<CudaSyncCall>,
    metrics: CuptiMetrics,
    mut shutdown: Shutdown,
    proc_root: PathBuf,
) -> anyhow::Result<()> {
    let ino = std::fs::metadata(&socket).map(|m| m.ino()).ok();
    let listener = register(listener).context("registering the CUPTI socket with tokio")?;
    // SAFETY: trivial getter.
    let mut allowed: HashSet<u32> = [0, unsafe { libc::geteuid() }].into();
    allowed.extend(&cfg.allowed_uids);
    let shared = Arc::new(Shared { ctx, kernels, syncs, metrics, procs: Mutex::new(HashMap::new()), proc_root });
    tracing::info!(socket = %socket.display(), "CUPTI injection clients accepted");
    let mut tasks = tokio::task::JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = sweep.tick() => retire_idle(&shared),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            guard = listener.readable() => {
                let mut guard = guard.context("waiting on the CUPTI socket")?;
                loop {
                    match sock::accept(listener.get_ref().as_raw_fd()) {
                        Ok(fd) => admit(fd, &allowed, &shared, &shutdown, &mut tasks),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted || e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accepting a CUPTI client failed");
                            guard.clear_ready();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            break;
                        }
                    }
                }
            }
        }
    }
    drop(listener);
    // Remove the socket unless another agent has replaced it meanwhile.
    if ino.is_some() && std::fs::metadata(&socket).map(|m| m.ino()).ok() == ino {
        let _ = std::fs::remove_file(&socket);
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Creates the listening socket. A leftover socket file nobody listens on (an
/// agent killed earlier) is replaced; a live one is an error.
pub(crate) fn bind(path: &Path) -> anyhow::Result<OwnedFd> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("CUPTI socket {}: a file that is not a socket is in the way", path.display());
        }
        match sock::connect(path) {
            Ok(_) => anyhow::bail!("CUPTI socket {}: another agent is listening on it", path.display()),
            Err(_) => std::fs::remove_file(path)
                .with_context(|| format!("removing the stale CUPTI socket {}", path.display()))?,
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {} for the CUPTI socket", dir.display()))?;
    }
    let fd = sock::listen(path, 128).with_context(|| format!("listening on the CUPTI socket {}", path.display()))?;
    // Any user's workload may connect; SO_PEERCRED decides who is served.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("making the CUPTI socket {} connectable", path.display()))?;
    Ok(fd)
}

fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd stays open, and the same descriptor, until the AsyncFd drops it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

fn admit(
    fd: OwnedFd,
    allowed: &HashSet<u32>,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let cred = match sock::peer_cred(fd.as_raw_fd()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no SO_PEERCRED for a CUPTI client; closing it");
            return;
        }
    };
    if !allowed.contains(&cred.uid) {
        shared.metrics.connections.get_or_create(&Outcome { result: "rejected" }).inc();
        tracing::warn!(
            pid = cred.pid,
            uid = cred.uid,
            "CUPTI client rejected: uid not in cupti.allowed_uids (nor root or the agent's own)"
        );
        return;
    }
    shared.metrics.connections.get_or_create(&Outcome { result: "accepted" }).inc();
    let fd = match register(fd) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "registering a CUPTI client with tokio failed");
            return;
        }
    };
    tasks.spawn(connection(fd, cred, shared.clone(), shutdown.clone()));
}

async fn connection(fd: AsyncFd<OwnedFd>, cred: PeerCred, shared: Arc<Shared>, mut shutdown: Shutdown) {
    let pid = cred.pid;
    let comm = std::fs::read_to_string(shared.proc_root.join(pid.to_string()).join("comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default();
    {
        let mut procs = shared.procs.lock().unwrap_or_else(|p| p.into_inner());
        let p = procs.entry(pid).or_insert_with(|| Proc {
            comm: comm.clone(),
            seq: 0,
            dropped: 0,
            cupti_dropped: 0,
            connections: 0,
            idle_since: None,
        });
        if p.comm != comm {
            // The pid was reused by another program.
            shared.metrics.retire(pid, &p.comm);
            *p = Proc { comm: comm.clone(), seq: 0, dropped: 0, cupti_dropped: 0, connections: 0, idle_since: None };
        }
        p.connections += 1;
        p.idle_since = None;
    }
    shared.metrics.clients.inc();
    tracing::debug!(pid, uid = cred.uid, comm, "CUPTI client connected");
    let mut session = Session::new(shared.ctx.clone(), pid, shared.proc_root.clone());
    let mut buf = vec![0u8; MAX_FRAME];
    'conn: loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            guard = fd.readable() => {
                let Ok(mut guard) = guard else { break };
                loop {
                    match sock::recv(fd.get_ref().as_raw_fd(), &mut buf) {
                        Ok(Received::Message(n)) => {
                            if !handle(&mut session, &buf[..n], pid, &comm, &shared) {
                                break 'conn;
                            }
                        }
                        Ok(Received::Truncated(n)) => {
                            shared.metrics.decode_errors.inc();
                            tracing::warn!(pid, comm, bytes = n, limit = MAX_FRAME, "CUPTI client sent an oversized frame; closing its connection");
                            break 'conn;
                        }
                        Ok(Received::Closed) => break 'conn,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::debug!(pid, error = %e, "CUPTI client connection failed");
                            break 'conn;
                        }
                    }
                }
            }
        }
    }
    shared.metrics.add_dropped(pid, &comm, reason::SYNC_WITHOUT_THREAD, session.abandon());
    shared.metrics.clients.dec();
    let mut procs = shared.procs.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = procs.get_mut(&pid) {
        p.connections = p.connections.saturating_sub(1);
        if p.connections == 0 {
            p.idle_since = Some(Instant::now());
        }
    }
    tracing::debug!(pid, comm, "CUPTI client disconnected");
}

/// Decodes and forwards one frame; false when the connection must close.
fn handle(session: &mut Session, frame: &[u8], pid: i32, comm: &str, shared: &Shared) -> bool {
    let rows = match session.frame(frame) {
        Ok(r) => r,
        Err(e) => {
            shared.metrics.decode_errors.inc();
            tracing::warn!(pid, comm, error = %e, "malformed frame from a CUPTI client; closing its connection");
            return false;
        }
    };
    let m = &shared.metrics;
    for (kind, n) in rows.received {
        m.add_records(pid, comm, kind, n);
    }
    m.add_dropped(pid, comm, reason::NO_TIMESTAMP, rows.no_timestamp);
    m.add_dropped(pid, comm, reason::SYNC_WITHOUT_THREAD, rows.sync_without_thread);
    m.frames_lost.inc_by(rows.frames_lost);
    {
        let mut procs = shared.procs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = procs.get_mut(&pid) {
            let h = rows.header;
            if h.seq < p.seq {
                // Sequence restarted: a new process behind the same pid and name.
                p.dropped = 0;
                p.cupti_dropped = 0;
            }
            p.seq = h.seq;
            m.add_dropped(pid, comm, reason::CLIENT, h.dropped.saturating_sub(p.dropped));
            m.add_dropped(pid, comm, reason::CUPTI, h.cupti_dropped.saturating_sub(p.cupti_dropped));
            p.dropped = p.dropped.max(h.dropped);
            p.cupti_dropped = p.cupti_dropped.max(h.cupti_dropped);
        }
    }
    shared.kernels.send(rows.kernels);
    shared.syncs.send(rows.syncs);
    true
}

fn retire_idle(shared: &Shared) {
    let mut procs = shared.procs.lock().unwrap_or_else(|p| p.into_inner());
    procs.retain(|pid, p| {
        let gone = p.idle_since.is_some_and(|t| t.elapsed() > RETIRE_AFTER);
        if gone {
            shared.metrics.retire(*pid, &p.comm);
        }
        !gone
    });
}
