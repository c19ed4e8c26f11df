//! Gets converted records to the agent without ever making the workload wait.
//!
//! Producers (CUPTI's buffer callbacks) hand batches to a bounded queue and
//! return at once; when the queue is full the batch is dropped and counted.
//! One background thread sends frames over a non-blocking `SOCK_SEQPACKET`
//! socket: a frame the agent cannot take within a short wait is dropped and
//! counted; while the agent is absent the thread reconnects with backoff and
//! the queue holds what fits. Every frame carries the cumulative drop counts,
//! so the agent learns them from the first frame that gets through (a
//! header-only frame goes out when only the counts changed).
//!
//! Names are sent once per connection: after a reconnect, each name is sent
//! again before the first record that uses it.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sock;
use crate::wire::{Activity, FrameBuilder, Header, RECORD_OVERHEAD};

/// Records converted from one CUPTI buffer, with the names first used in it.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub activities: Vec<Activity>,
    pub names: Vec<(u32, Box<[u8]>)>,
}

#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The agent's socket.
    pub socket: PathBuf,
    pub pid: u32,
    pub cupti_version: u32,
    /// Most records waiting in the queue; beyond it batches are dropped.
    pub queue_records: usize,
    /// Period of the tick hook and of drop-count reports.
    pub tick: Duration,
    /// Reconnect backoff: first and longest wait.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a frame may wait for the agent to make room before it is dropped.
    pub send_wait: Duration,
}

impl SenderConfig {
    pub fn new(socket: PathBuf, pid: u32, cupti_version: u32) -> Self {
        Self {
            socket,
            pid,
            cupti_version,
            queue_records: 1 << 18,
            tick: Duration::from_secs(1),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            send_wait: Duration::from_millis(50),
        }
    }
}

/// Counters of one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub sent_records: u64,
    pub dropped_records: u64,
    pub cupti_dropped: u64,
    pub frames_sent: u64,
    pub connects: u64,
    pub connected: bool,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Batch>,
    records: usize,
    names: Vec<(u32, Box<[u8]>)>,
    stop: bool,
    flush_asked: u64,
    flush_done: u64,
}

type Hook = Box<dyn Fn() + Send + Sync>;

struct Shared {
    cfg: SenderConfig,
    queue: Mutex<Queue>,
    wake: Condvar,
    flushed: Condvar,
    dropped: AtomicU64,
    cupti_dropped: AtomicU64,
    sent_records: AtomicU64,
    frames_sent: AtomicU64,
    connects: AtomicU64,
    connected: AtomicBool,
    /// Raw fd of the current connection (-1: none), for the fork child handler.
    conn_fd: AtomicI32,
    tick: Option<Hook>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue inconsistent
        // in a way that matters more than losing records; keep going.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to the queue and its sending thread.
pub struct Sender {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sender {
    /// Starts the sending thread. `tick` runs on it every `cfg.tick` (the
    /// library asks CUPTI to flush its buffers there).
    pub fn start(cfg: SenderConfig, tick: Option<Hook>) -> std::io::Result<Sender> {
        let shared = Arc::new(Shared {
            cfg,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            flushed: Condvar::new(),
            dropped: AtomicU64::new(0),
            cupti_dropped: AtomicU64::new(0),
            sent_records: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            conn_fd: AtomicI32::new(-1),
            tick,
        });
        let s = shared.clone();
        let thread = with_signals_blocked(|| {
            std::thread::Builder::new().name("strand-inject".into()).spawn(move || Worker::new(s).run())
        })?;
        Ok(Sender { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues a batch; never blocks on the network. Returns false when the
    /// batch was dropped (and counted) because the queue is full.
    pub fn submit(&self, batch: Batch) -> bool {
        let n = batch.activities.len();
        let mut q = self.shared.lock();
        q.names.extend(batch.names);
        if n == 0 {
            return true;
        }
        if q.stop || q.records + n > self.shared.cfg.queue_records {
            self.shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return false;
        }
        q.records += n;
        q.batches.push_back(Batch { activities: batch.activities, names: Vec::new() });
        drop(q);
        self.shared.wake.notify_one();
        true
    }

    /// Counts records lost before they reached this library (CUPTI's own drops).
    pub fn add_cupti_dropped(&self, n: u64) {
        if n > 0 {
            self.shared.cupti_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts records lost in this library before [`Sender::submit`].
    pub fn add_dropped(&self, n: u64) {
        if n > 0 {
            self.shared.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sends (or, with no agent, drops and counts) everything queued now and
    /// the latest counts; waits at most `timeout`. True when done in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.lock();
        q.flush_asked += 1;
        let want = q.flush_asked;
        self.shared.wake.notify_one();
        while q.flush_done < want {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            q = match self.shared.flushed.wait_timeout(q, deadline - now) {
                Ok((q, _)) => q,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Flushes, then stops the thread (waiting at most `timeout` in all).
    pub fn shutdown(&self, timeout: Duration) {
        self.flush(timeout);
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            sent_records: s.sent_records.load(Ordering::Relaxed),
            dropped_records: s.dropped.load(Ordering::Relaxed),
            cupti_dropped: s.cupti_dropped.load(Ordering::Relaxed),
            frames_sent: s.frames_sent.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// For a `fork()` child: closes the child's copy of the connection so it
    /// can never write into the parent's stream. Async-signal-safe.
    pub fn close_inherited_connection(&self) {
        let fd = self.shared.conn_fd.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: close(2) of an fd this process inherited; the parent's copy is unaffected.
            unsafe { libc::close(fd) };
        }
    }
}

/// Runs `f` with every signal blocked, so the thread it spawns inherits a
/// full mask and never takes a signal meant for the workload.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data, initialised by sigfillset; the old mask
    // is restored before returning.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let blocked = libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old) == 0;
        let r = f();
        if blocked {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
        r
    }
}

/// State owned by the sending thread.
struct Worker {
    s: Arc<Shared>,
    conn: Option<OwnedFd>,
    /// All names, by id - 1.
    names: Vec<Option<Box<[u8]>>>,
    /// Names already sent on the current connection, by id.
    sent: Vec<bool>,
    seq: u64,
    next_connect: Instant,
    backoff: Duration,
    next_tick: Instant,
    /// Counts the agent has been told on this connection.
    reported: (u64, u64),
    frame: FrameBuilder,
    frame_names: Vec<u32>,
    frame_records: u64,
    /// The flush request a forced connect was last tried for.
    forced_for: u64,
}

impl Worker {
    fn new(s: Arc<Shared>) -> Self {
        let now = Instant::now();
        let (backoff, tick) = (s.cfg.backoff_min, s.cfg.tick);
        Worker {
            s,
            conn: None,
            names: Vec::new(),
            sent: Vec::new(),
            seq: 0,
            next_connect: now,
            backoff,
            next_tick: now + tick,
            reported: (u64::MAX, u64::MAX),
            frame: FrameBuilder::new(),
            frame_names: Vec::new(),
            frame_records: 0,
            forced_for: 0,
        }
    }

    fn run(mut self) {
        loop {
            let now = Instant::now();
            if now >= self.next_tick {
                self.next_tick = now + self.s.cfg.tick;
                if let Some(hook) = &self.s.tick {
                    // The hook may call back into `submit`; the lock is not held here.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook));
                }
            }
            let (flush_asked, stop) = {
                let q = self.s.lock();
                (q.flush_asked, q.stop)
            };
            let forced = (flush_asked > self.forced_for) || stop;
            if self.conn.is_none() && (Instant::now() >= self.next_connect || forced) {
                self.forced_for = flush_asked;
                self.connect();
            }

            let mut q = self.s.lock();
            for (id, name) in std::mem::take(&mut q.names) {
                let i = id as usize - 1;
                if self.names.len() <= i {
                    self.names.resize(i + 1, None);
                }
                self.names[i] = Some(name);
            }
            let batch = if self.conn.is_some() {
                q.batches.pop_front()
            } else if forced {
                // No agent and someone waits (exit, flush): count what is queued as dropped.
                let n = q.records as u64;
                q.batches.clear();
                q.records = 0;
                self.s.dropped.fetch_add(n, Ordering::Relaxed);
                None
            } else {
                None
            };
            if let Some(b) = &batch {
                q.records -= b.activities.len();
            }
            if batch.is_none() {
                let counts = self.counts();
                let report_due = self.conn.is_some() && counts != self.reported;
                if report_due {
                    drop(q);
                    self.send_frame();
                    continue;
                }
                if q.flush_done < q.flush_asked && q.batches.is_empty() {
                    q.flush_done = q.flush_asked;
                    self.s.flushed.notify_all();
                }
                if q.stop && q.batches.is_empty() {
                    break;
                }
                let mut until = self.next_tick;
                if self.conn.is_none() && !q.batches.is_empty() {
                    until = until.min(self.next_connect);
                }
                let wait = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                drop(match self.s.wake.wait_timeout(q, wait) {
                    Ok((q, _)) => q,
                    Err(p) => p.into_inner().0,
                });
                continue;
            }
            drop(q);
            if let Some(b) = batch {
                self.send_batch(b);
            }
        }
        self.disconnect();
    }

    fn counts(&self) -> (u64, u64) {
        (self.s.dropped.load(Ordering::Relaxed), self.s.cupti_dropped.load(Ordering::Relaxed))
    }

    fn connect(&mut self) {
        match sock::connect(&self.s.cfg.socket) {
            Ok(fd) => {
                sock::grow_send_buffer(fd.as_raw_fd(), 4 << 20);
                self.s.conn_fd.store(fd.as_raw_fd(), Ordering::SeqCst);
                self.conn = Some(fd);
                self.sent.clear();
                self.reported = (u64::MAX, u64::MAX);
                self.backoff = self.s.cfg.backoff_min;
                self.s.connects.fetch_add(1, Ordering::Relaxed);
                self.s.connected.store(true, Ordering::Relaxed);
            }
            Err(_) => {
                self.next_connect = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(self.s.cfg.backoff_max);
            }
        }
    }

    fn disconnect(&mut self) {
        self.s.conn_fd.store(-1, Ordering::SeqCst);
        self.s.connected.store(false, Ordering::Relaxed);
        self.conn = None;
        self.next_connect = Instant::now() + self.backoff;
    }

    fn send_batch(&mut self, batch: Batch) {
        for a in &batch.activities {
            for _attempt in 0..2 {
                if self.add(a) {
                    break;
                }
                self.send_frame();
            }
        }
        self.send_frame();
    }

    /// Adds `a`, preceded by its name when this connection has not had it.
    fn add(&mut self, a: &Activity) -> bool {
        let id = a.name_id();
        let name =
            if id != 0 && !self.sent.get(id as usize).copied().unwrap_or(false) && !self.frame_names.contains(&id) {
                self.names.get(id as usize - 1).and_then(|n| n.as_deref())
            } else {
                None
            };
        let name_len = name.map_or(0, |n| RECORD_OVERHEAD + 4 + n.len().min(crate::wire::MAX_NAME_LEN));
        if !self.frame.fits(name_len + a.encoded_len()) {
            return false;
        }
        if let Some(n) = name {
            self.frame.push_name(id, n);
            self.frame_names.push(id);
        }
        self.frame.push(a);
        self.frame_records += 1;
        true
    }

    /// Sends the frame being built (or a header-only frame with the counts).
    fn send_frame(&mut self) {
        let records = std::mem::take(&mut self.frame_records);
        let names = std::mem::take(&mut self.frame_names);
        let counts = self.counts();
        let header = Header {
            pid: self.s.cfg.pid,
            cupti_version: self.s.cfg.cupti_version,
            seq: self.seq,
            dropped: counts.0,
            cupti_dropped: counts.1,
            record_count: 0,
            flags: 0,
        };
        if self.frame.is_empty() && counts == self.reported {
            return;
        }
        self.seq += 1;
        let Some(fd) = self.conn.as_ref().map(|c| c.as_raw_fd()) else {
            self.frame.clear();
            self.s.dropped.fetch_add(records, Ordering::Relaxed);
            return;
        };
        let frame = self.frame.finish(header);
        let mut result = sock::send(fd, frame);
        if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            let wait = self.s.cfg.send_wait.as_millis().min(i32::MAX as u128) as i32;
            if sock::wait_writable(fd, wait).unwrap_or(false) {
                result = sock::send(fd, frame);
            }
        }
        self.frame.clear();
        match result {
            Ok(()) => {
                for id in names {
                    let i = id as usize;
                    if self.sent.len() <= i {
                        self.sent.resize(i + 1, false);
                    }
                    self.sent[i] = true;
                }
                self.reported = counts;
                self.s.sent_records.fetch_add(records, Ordering::Relaxed);
                self.s.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.s.dropped.fetch_add(records, Ordering::Relaxed);
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    self.disconnect();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, Connection};
    use std::os::fd::AsRawFd;

    fn kernel(corr: u32, name: u32) -> Activity {
        Activity::Kernel(wire::Kernel {
            start: corr as u64,
            end: corr as u64 + 10,
            correlation_id: corr,
            name,
            ..Default::default()
        })
    }

    fn cfg(dir: &std::path::Path) -> SenderConfig {
        SenderConfig {
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
            tick: Duration::from_millis(20),
            ..SenderConfig::new(dir.join("agent.sock"), 4242, 24)
        }
    }

    /// Reads frames from `listener` until `want` records arrived.
    fn receive(listener: &OwnedFd, want: usize) -> (Vec<Activity>, Connection, wire::Header) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let conn = loop {
            match sock::accept(listener.as_raw_fd()) {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => panic!("no client connected: {e}"),
            }
        };
        let mut c = Connection::new();
        let mut got = Vec::new();
        let mut buf = vec![0u8; wire::MAX_FRAME];
        let mut last = wire::Header::default();
        while got.len() < want {
            match sock::recv(conn.as_raw_fd(), &mut buf) {
                Ok(sock::Received::Message(n)) => {
                    let f = c.decode(&buf[..n]).unwrap();
                    last = f.header;
                    got.extend(f.activities);
                }
                Ok(other) => panic!("{other:?}"),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => panic!("only {} of {want} records arrived: {e}", got.len()),
            }
        }
        (got, c, last)
    }

    #[test]
    fn batches_arrive_in_order_with_their_names_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let listener = sock::listen(&c.socket, 16).unwrap();
        let s = Sender::start(c, None).unwrap();
        let mut sent = Vec::new();
        for b in 0..50u32 {
            let acts: Vec<Activity> = (0..400).map(|i| kernel(b * 400 + i, 1 + (i % 3))).collect();
            sent.extend(acts.iter().copied());
            let names = if b == 0 {
                vec![(1, b"k1"[..].into()), (2, b"k2"[..].into()), (3, vec![b'x'; 3000].into())]
            } else {
                vec![]
            };
            assert!(s.submit(Batch { activities: acts, names }));
        }
        let (got, conn, _) = receive(&listener, sent.len());
        assert_eq!(got, sent);
        assert_eq!(conn.name(2).map(|n| &**n), Some("k2"));
        assert_eq!(conn.name(3).map(|n| n.len()), Some(3000));
        assert!(s.flush(Duration::from_secs(5)));
        let st = s.stats();
        assert_eq!((st.sent_records, st.dropped_records, st.connects), (20_000, 0, 1));
        s.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn without_an_agent_records_are_dropped_counted_and_reported_later() {
        let dir = tempfile::tempdir().unwrap();
        let c = SenderConfig { queue_records: 1000, ..cfg(dir.path()) };
        let path = c.socket.clone();
        let s = Sender::start(c, None).unwrap();
        // Queue fills (1000 records), the rest is refused at once.
        let started = Instant::now();
        let mut accepted = 0;
        for i in 0..30 {
            if s.submit(Batch { activities: vec![kernel(i, 0); 100], names: vec![] }) {
                accepted += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_millis(100), "submit must not wait for an agent");
        assert_eq!(accepted, 10);
        assert_eq!(s.stats().dropped_records, 2000);
        s.add_cupti_dropped(7);
        // The agent appears: queued records go out, and the counts with them.
        let listener = sock::listen(&path, 16).unwrap();
        let (got, _, header) = receive(&listener, 1000);
        assert_eq!(got.len(), 1000);
        assert!(s.flush(Duration::from_secs(5)));
        let st = s.stats();
        assert_eq!((st.sent_records, st.dropped_records, st.cupti_dropped), (1000, 2000, 7));
        // The last frame seen may precede the cupti count; the flush guarantees a report.
        assert!(header.dropped == 2000, "{header:?}");
        s.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn flush_without_an_agent_returns_promptly_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sender::start(cfg(dir.path()), None).unwrap();
        assert!(s.submit(Batch { activities: vec![kernel(1, 0); 10], names: vec![] }));
        let t = Instant::now();
        assert!(s.flush(Duration::from_secs(5)));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(s.stats().dropped_records, 10);
        s.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn the_tick_hook_runs_on_the_sender_thread() {
        let dir = tempfile::tempdir().unwrap();
        let ticks = Arc::new(AtomicU64::new(0));
        let t = ticks.clone();
        let s = Sender::start(
            cfg(dir.path()),
            Some(Box::new(move || {
                t.fetch_add(1, Ordering::Relaxed);
                assert_eq!(std::thread::current().name(), Some("strand-inject"));
            })),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(ticks.load(Ordering::Relaxed) >= 3);
        s.shutdown(Duration::from_secs(1));
    }
}
