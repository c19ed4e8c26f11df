//! perf events and /proc for GPU processes → `process_samples`: CPU time,
//! context switches, cycles/instructions where the host has hardware
//! counters, and storage I/O. The windows use it to tell a host-bound gap
//! (threads busy on the CPU) from a blocked one, and checkpoint writes.
//!
//! perf counters observe one thread each, so every thread of a GPU process
//! gets its own (bounded by [`MAX_THREADS`]); threads that appear later are
//! picked up at the next period. Without perf events the CPU time comes from
//! `/proc/<pid>/stat` and the counters are null.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use perf_event::events::{Hardware, Software};
use perf_event::{Builder, Counter};
use strand_schemas::ProcessSample;

/// Threads per process that get counters (fd budget: 2–4 per thread).
pub const MAX_THREADS: usize = 256;

struct ThreadCounters {
    clock: Counter,
    switches: Counter,
    cycles: Option<Counter>,
    instructions: Option<Counter>,
}

#[derive(Default, Clone, Copy)]
struct Totals {
    cpu_ns: u64,
    switches: u64,
    cycles: u64,
    instructions: u64,
}

struct Proc {
    threads: HashMap<i32, (ThreadCounters, Totals)>,
    /// Counts of threads that exited (their last values stay in the totals).
    gone: Totals,
    last: Totals,
    last_proc_cpu_ns: u64,
    last_io: Option<(u64, u64)>,
    last_ts: i64,
    warned_threads: bool,
}

pub struct ProcSampler {
    proc_root: PathBuf,
    perf: bool,
    hardware: bool,
    procs: HashMap<i32, Proc>,
    ticks_per_s: u64,
}

fn read_u64_pair(io: &str, a: &str, b: &str) -> Option<(u64, u64)> {
    let get = |k: &str| io.lines().find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok());
    Some((get(a)?, get(b)?))
}

/// utime + stime of a whole process, in clock ticks (`/proc/<pid>/stat`).
fn proc_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

impl ProcSampler {
    /// Probes perf events once: software counters, and hardware ones.
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        let perf = Builder::new(Software::TASK_CLOCK).observe_self().any_cpu().build().is_ok();
        let hardware = perf && Builder::new(Hardware::INSTRUCTIONS).observe_self().any_cpu().build().is_ok();
        if !perf {
            tracing::info!("perf events unavailable: process CPU time comes from /proc, context switches are null");
        } else if !hardware {
            tracing::info!("no hardware perf counters on this host: cycles and instructions are null");
        }
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self { proc_root: proc_root.into(), perf, hardware, procs: HashMap::new(), ticks_per_s: ticks.max(1) as u64 }
    }

    fn open_thread(&self, tid: i32) -> Option<ThreadCounters> {
        let build = |b: &mut Builder| -> Option<Counter> {
            let mut c = b.observe_pid(tid).any_cpu().build().ok()?;
            c.enable().ok()?;
            Some(c)
        };
        Some(ThreadCounters {
            clock: build(&mut Builder::new(Software::TASK_CLOCK))?,
            switches: build(&mut Builder::new(Software::CONTEXT_SWITCHES))?,
            cycles: if self.hardware { build(&mut Builder::new(Hardware::CPU_CYCLES)) } else { None },
            instructions: if self.hardware { build(&mut Builder::new(Hardware::INSTRUCTIONS)) } else { None },
        })
    }

    /// Samples `pids` (the GPU processes); forgets processes no longer listed.
    /// The first period of a process only sets its baseline (no row).
    pub fn sample(
        &mut self,
        pids: &[i32],
        cluster: &Arc<str>,
        node: &Arc<str>,
        ts_ns: i64,
        job_of: impl Fn(i32) -> Option<String>,
    ) -> Vec<ProcessSample> {
        self.procs.retain(|pid, _| pids.contains(pid));
        let mut out = Vec::new();
        for &pid in pids {
            let dir = self.proc_root.join(pid.to_string());
            let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
                self.procs.remove(&pid);
                continue;
            };
            let comm = std::fs::read_to_string(dir.join("comm")).ok().map(|s| s.trim().to_string());
            let tids = list_tids(&dir);
            let io = std::fs::read_to_string(dir.join("io"))
                .ok()
                .and_then(|s| read_u64_pair(&s, "read_bytes:", "write_bytes:"));
            let proc_cpu_ns = proc_cpu_ticks(&stat).unwrap_or(0) * (1_000_000_000 / self.ticks_per_s);

            let is_new = !self.procs.contains_key(&pid);
            let mut p = self.procs.remove(&pid).unwrap_or(Proc {
                threads: HashMap::new(),
                gone: Totals::default(),
                last: Totals::default(),
                last_proc_cpu_ns: proc_cpu_ns,
                last_io: io,
                last_ts: ts_ns,
                warned_threads: false,
            });
            if self.perf {
                // Threads that ended: keep what they counted.
                let ended: Vec<i32> = p.threads.keys().copied().filter(|t| !tids.contains(t)).collect();
                for t in ended {
                    if let Some((_, last)) = p.threads.remove(&t) {
                        p.gone.cpu_ns += last.cpu_ns;
                        p.gone.switches += last.switches;
                        p.gone.cycles += last.cycles;
                        p.gone.instructions += last.instructions;
                    }
                }
                for &t in &tids {
                    if p.threads.len() >= MAX_THREADS {
                        if !p.warned_threads {
                            tracing::info!(pid, "more than {MAX_THREADS} threads: counting the first {MAX_THREADS}");
                            p.warned_threads = true;
                        }
                        break;
                    }
                    if let std::collections::hash_map::Entry::Vacant(v) = p.threads.entry(t)
                        && let Some(c) = self.open_thread(t)
                    {
                        v.insert((c, Totals::default()));
                    }
                }
                for (c, last) in p.threads.values_mut() {
                    last.cpu_ns = c.clock.read().unwrap_or(last.cpu_ns);
                    last.switches = c.switches.read().unwrap_or(last.switches);
                    if let Some(cy) = c.cycles.as_mut() {
                        last.cycles = cy.read().unwrap_or(last.cycles);
                    }
                    if let Some(i) = c.instructions.as_mut() {
                        last.instructions = i.read().unwrap_or(last.instructions);
                    }
                }
            }
            let mut now = p.gone;
            for (_, t) in p.threads.values() {
                now.cpu_ns += t.cpu_ns;
                now.switches += t.switches;
                now.cycles += t.cycles;
                now.instructions += t.instructions;
            }
            if !is_new {
                let d = |a: u64, b: u64| i64::try_from(a.saturating_sub(b)).unwrap_or(i64::MAX);
                let counted = self.perf && !p.threads.is_empty();
                out.push(ProcessSample {
                    cluster: cluster.clone(),
                    node: node.clone(),
                    ts_ns,
                    interval_ns: ts_ns - p.last_ts,
                    pid,
                    job_id: job_of(pid),
                    comm,
                    threads: tids.len() as i32,
                    cpu_ns: if counted { d(now.cpu_ns, p.last.cpu_ns) } else { d(proc_cpu_ns, p.last_proc_cpu_ns) },
                    context_switches: counted.then(|| d(now.switches, p.last.switches)),
                    cycles: (counted && self.hardware).then(|| d(now.cycles, p.last.cycles)),
                    instructions: (counted && self.hardware).then(|| d(now.instructions, p.last.instructions)),
                    read_bytes: io.zip(p.last_io).map(|((r, _), (lr, _))| d(r, lr)),
                    write_bytes: io.zip(p.last_io).map(|((_, w), (_, lw))| d(w, lw)),
                });
            }
            p.last = now;
            p.last_proc_cpu_ns = proc_cpu_ns;
            p.last_io = io;
            p.last_ts = ts_ns;
            self.procs.insert(pid, p);
        }
        out
    }
}

fn list_tids(proc_dir: &Path) -> Vec<i32> {
    let mut tids: Vec<i32> = std::fs::read_dir(proc_dir.join("task"))
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}

/// The perf source: per-process CPU time, context switches and hardware
/// counters of GPU processes. One part, `counters`.
pub struct PerfSource;

fn perf_report() -> crate::source::Report {
    use crate::source::{Report, State};
    match Builder::new(Software::TASK_CLOCK).observe_self().any_cpu().build() {
        Ok(_) => {
            let detail = match Builder::new(Hardware::INSTRUCTIONS).observe_self().any_cpu().build() {
                Ok(_) => "software and hardware counters".to_string(),
                Err(e) => format!("software counters only (hardware counters: {e})"),
            };
            Report::new("perf", "counters", State::Up, detail)
        }
        Err(e) => Report::new(
            "perf",
            "counters",
            State::Down,
            format!(
                "cannot open a software counter ({e}; check kernel.perf_event_paranoid or CAP_PERFMON): \
                 CPU time from /proc, counters null"
            ),
        ),
    }
}

impl crate::source::Source for PerfSource {
    fn name(&self) -> &'static str {
        "perf"
    }

    fn parts(&self) -> &'static [&'static str] {
        &["counters"]
    }

    fn enabled(&self, cfg: &crate::config::Config) -> (bool, &'static str) {
        (cfg.perf.enabled, "perf.enabled")
    }

    fn check(&self, _cfg: &crate::config::Config) -> Vec<crate::source::Report> {
        vec![perf_report()]
    }

    fn start(self: Box<Self>, cx: &mut crate::source::StartContext) -> anyhow::Result<Vec<crate::source::Running>> {
        cx.health.report(perf_report());
        let (sink, ctx, period, sd, m) = (
            cx.sinks.process_samples.clone(),
            cx.ctx.clone(),
            cx.cfg.nvml.period,
            cx.shutdown.clone(),
            cx.metrics.clone(),
        );
        let h = std::thread::Builder::new().name("strand-perf".into()).spawn(move || {
            let mut sampler = ProcSampler::new("/proc");
            while !sd.is_triggered() {
                let now = strand_schemas::clock::utc_now_ns();
                let rows = sampler.sample(&ctx.gpu_pids(), &ctx.cluster, &ctx.node, now, |p| ctx.job_of(p));
                m.samples
                    .get_or_create(&crate::metrics::SourceLabels { source: "perf".into() })
                    .inc_by(rows.len() as u64);
                sink.send(rows);
                sd.sleep(period);
            }
        })?;
        Ok(vec![crate::source::Running::Thread(h)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let stat = "4242 (py (train) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1500 250 0 0 20 0 12 0 100 1000 10 18446744073709551615";
        assert_eq!(proc_cpu_ticks(stat), Some(1750));
        assert_eq!(
            read_u64_pair("rchar: 5\nread_bytes: 4096\nwrite_bytes: 81920\n", "read_bytes:", "write_bytes:"),
            Some((4096, 81920))
        );
    }

    #[test]
    fn a_busy_thread_shows_cpu_time_and_the_first_period_is_a_baseline() {
        let pid = std::process::id() as i32;
        let mut s = ProcSampler::new("/proc");
        let (c, n) = (Arc::from("c"), Arc::from("n"));
        assert!(s.sample(&[pid], &c, &n, 0, |_| None).is_empty(), "first period is the baseline");
        // Spin until this thread has used 200 ms of CPU (wall time varies with load).
        let thread_cpu = || {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: valid out-pointer.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec * 1_000_000_000 + ts.tv_nsec
        };
        let start = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - start < 200_000_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let rows = s.sample(&[pid], &c, &n, 250_000_000, |_| Some("j".into()));
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.pid, pid);
        assert_eq!(r.interval_ns, 250_000_000);
        assert!(r.cpu_ns >= 150_000_000, "spun 200 ms on the CPU, counted {} ns", r.cpu_ns);
        assert!(r.threads >= 1);
        assert_eq!(r.job_id.as_deref(), Some("j"));
        if s.perf {
            assert!(r.context_switches.is_some());
        }
        assert!(s.sample(&[], &c, &n, 500_000_000, |_| None).is_empty());
        assert!(s.procs.is_empty(), "an unlisted process is forgotten");
    }
}
