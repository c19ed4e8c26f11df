//! `strand-agent check`: which parts of which sources run on this host, and
//! why not, found by starting them for real and undoing it (each source's
//! [`Source::check`]: the eBPF programs are loaded and attached, then
//! detached). Exits non-zero when a part of a source the configuration
//! enables cannot run.

use std::io::Write;
use std::process::ExitCode;

use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::source::{self, Report, State};

/// Every part of every source, then the agent's other needs (reductions,
/// where batches go), as the same kind of report.
pub fn probe(cfg: &Config) -> Vec<Report> {
    let mut registry = Registry::default();
    let mut out = Vec::new();
    for s in source::all(&mut registry) {
        let (enabled, key) = s.enabled(cfg);
        if enabled {
            out.extend(s.check(cfg));
        } else {
            out.extend(source::off(s.as_ref(), key));
        }
    }

    let backend = cfg.kernels.backend.parse().unwrap_or_default();
    out.push(match strand_kernels::Reducer::new(backend) {
        Ok(r) if r.uses_gpu(usize::MAX) => {
            Report::new("kernels", "reductions", State::Up, "on the GPU (NVRTC and a GPU are usable)")
        }
        Ok(_) => Report::new(
            "kernels",
            "reductions",
            State::Up,
            "CPU backend (no usable GPU or NVRTC); results are identical",
        ),
        Err(e) => Report::new(
            "kernels",
            "reductions",
            State::Down,
            format!("kernels.backend = {:?}: {e}", cfg.kernels.backend),
        ),
    });

    out.push(match (&cfg.collector.url, &cfg.collector.token_file) {
        (Some(url), Some(token)) => match std::fs::read_to_string(token) {
            Ok(t) if !t.trim().is_empty() => {
                Report::new("collector", "shipping", State::Up, format!("batches shipped to {url}"))
            }
            Ok(_) => Report::new(
                "collector",
                "shipping",
                State::Down,
                format!("collector.token_file {} is empty", token.display()),
            ),
            Err(e) => Report::new(
                "collector",
                "shipping",
                State::Down,
                format!("cannot read collector.token_file {}: {e}", token.display()),
            ),
        },
        _ => Report::new(
            "collector",
            "shipping",
            State::Up,
            format!("standalone: batches stay in {}", cfg.data_dir.display()),
        ),
    });
    out
}

/// Prints the table (each line ends with a newline, flushed before any log
/// line can follow) and, on stderr, which parts cannot run. Fails when one
/// of them belongs to an enabled source.
pub fn report(reports: &[Report]) -> ExitCode {
    let w_source = reports.iter().map(|r| r.source.len()).max().unwrap_or(0).max("SOURCE".len());
    let w_part = reports.iter().map(|r| r.part.len()).max().unwrap_or(0).max("PART".len());
    let mut text = format!("{:w_source$}  {:w_part$}  {:6}  DETAIL\n", "SOURCE", "PART", "STATUS");
    for r in reports {
        text.push_str(&format!("{:w_source$}  {:w_part$}  {:6}  {}\n", r.source, r.part, r.state.word(), r.detail));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    let down: Vec<String> =
        reports.iter().filter(|r| r.state == State::Down).map(|r| format!("{} {}", r.source, r.part)).collect();
    if down.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("strand-agent check: {} part(s) of enabled sources cannot run: {}", down.len(), down.join(", "));
    ExitCode::FAILURE
}
