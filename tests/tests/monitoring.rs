//! The Grafana dashboard and the Prometheus alert rules of
//! `systemd/monitoring/`, against the real tools:
//!
//! - every alert rule has a `promtool test rules` unit test that fires and
//!   resolves it, and promtool accepts the rule file;
//! - the dashboard type-checks against Grafana's published dashboard schema
//!   (`@grafana/schema` from npm, with TypeScript's compiler);
//! - a real Prometheus scrapes a real agent on simulated GPUs, fed kernel
//!   records (CUPTI wire format) and step markers, and loads the rules:
//!   every panel's query returns series, except the two fed only by eBPF's
//!   NCCL calls (no NCCL library runs here), which must still be valid
//!   PromQL; the families have the types the dashboard assumes.
//!
//! Tools: `prometheus` and `promtool` (Debian's `prometheus`), node and the
//! npm packages of tests/grafana (scripts/install-deps.sh --test).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use strand_inject::sender::{Batch, Sender, SenderConfig};
use strand_inject::wire::{Activity, Device, Kernel};
use strand_schemas::clock::{MonoToUtc, utc_now_ns};
use strand_tests::*;

const MS: i64 = 1_000_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn monitoring() -> PathBuf {
    repo().join("systemd/monitoring")
}

fn tool(name: &str) -> Command {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file())).unwrap_or(false);
    assert!(found, "{name} is not installed: run scripts/install-deps.sh --test (Debian's prometheus package)");
    Command::new(name)
}

#[test]
fn every_alert_rule_fires_and_resolves_in_promtools_unit_tests() {
    let dir = monitoring().join("prometheus");
    let out = tool("promtool").arg("check").arg("rules").arg(dir.join("strand-alerts.yml")).output().unwrap();
    assert!(out.status.success(), "promtool check rules: {}", String::from_utf8_lossy(&out.stderr));
    let out = tool("promtool").current_dir(&dir).args(["test", "rules", "strand-alerts.test.yml"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("SUCCESS"), "promtool test rules:\n{text}");

    // Every rule has a test that expects it firing and one that expects it resolved.
    let rules = std::fs::read_to_string(dir.join("strand-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("strand-alerts.test.yml")).unwrap();
    let names: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    let deployment = std::fs::read_to_string(repo().join("docs/deployment.md")).unwrap();
    for name in &names {
        assert!(deployment.contains(&format!("| `{name}` |")), "docs/deployment.md's alert table lacks {name}");
    }
    for name in names {
        let blocks: Vec<&str> =
            tests.split("      - eval_time:").filter(|b| b.contains(&format!("alertname: {name}\n"))).collect();
        assert!(blocks.iter().any(|b| b.contains("exp_labels")), "{name}: no test where it fires");
        assert!(blocks.iter().any(|b| b.contains("exp_alerts: []")), "{name}: no test where it is not firing");
    }
}

#[test]
fn the_dashboard_matches_grafanas_published_schema() {
    let grafana = repo().join("tests/grafana");
    let tsc = grafana.join("node_modules/.bin/tsc");
    assert!(tsc.exists(), "{} missing: run scripts/install-deps.sh --test (npm ci in tests/grafana)", tsc.display());
    let schema = grafana.join("node_modules/@grafana/schema");
    let dashboard = std::fs::read_to_string(monitoring().join("grafana/strand-dashboard.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // String enums of the schema accept their values (`${Enum}`), as they do in JSON;
    // object literals get TypeScript's excess-property check: unknown keys fail.
    let check = |dashboard: &str| {
        let src = format!(
            "import type {{ Dashboard }} from {schema:?};\n\
             type Lit<T> = T extends string ? `${{T}}` : T extends number | boolean | null | undefined ? T\n\
               : T extends Array<infer U> ? Array<Lit<U>> : T extends object ? {{ [K in keyof T]: Lit<T[K]> }} : T;\n\
             export const dashboard: Lit<Dashboard> = {dashboard};\n",
            schema = schema.display().to_string(),
        );
        let file = dir.path().join("dashboard.ts");
        std::fs::write(&file, src).unwrap();
        let out = Command::new(&tsc)
            .args(["--strict", "--noEmit", "--skipLibCheck", "--target", "es2020", "--moduleResolution", "node"])
            .arg(&file)
            .output()
            .expect("node runs tsc");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, errors) = check(&dashboard);
    assert!(ok, "the dashboard does not match @grafana/schema:\n{errors}");
    // The check can fail: a misspelt key and a wrong type are caught.
    let (ok, errors) = check(&dashboard.replacen("\"gridPos\": {", "\"gridPos\": {\"wdith\": 3, ", 1));
    assert!(!ok && errors.contains("wdith"), "{errors}");
    let (ok, _) = check(&dashboard.replacen("\"schemaVersion\": 39", "\"schemaVersion\": \"39\"", 1));
    assert!(!ok);
}

/// GET over plain HTTP/1.0; the status code and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes());
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query; the result vector, or the error Prometheus gave.
fn query(port: u16, expr: &str) -> Result<Vec<Value>, String> {
    let (status, body) = get(port, &format!("/api/v1/query?query={}", urlencode(expr)));
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{expr}: {body}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The dashboard's variables as a user who selects "All" has them.
fn substitute(expr: &str) -> String {
    expr.replace("$node", ".*")
        .replace("$gpu", ".*")
        .replace("$job_id", ".*")
        .replace("$__rate_interval", "15s")
        .replace("$__range", "2m")
}

/// Panels fed only by eBPF's NCCL calls joined with CUPTI kernels: nothing
/// here runs NCCL, so they are checked as valid PromQL only.
const NCCL_PANELS: [&str; 2] = ["Sync stall by rank", "NCCL bus bandwidth"];

#[test]
fn every_panel_returns_series_from_a_real_prometheus_scraping_a_real_agent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let agent_port = free_port();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    // A collector that is not there: uploads are retried (the uploads panel).
    let dead = free_port();
    let cfg = agent_config(
        dir.path(),
        &data,
        &format!(
            "[ebpf]\nenabled = false\n[output]\nrotate_interval = \"1s\"\n\
             [collector]\nurl = \"http://127.0.0.1:{dead}\"\ntoken_file = \"{}\"\n",
            token.display()
        ),
    );
    let mut agent = Proc::spawn(
        Command::new(bin("strand-agent"))
            .arg("--config")
            .arg(&cfg)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{agent_port}"))
            .arg("--simulate-gpus")
            .arg("2")
            .env("STRAND_LOG", "warn"),
        "strand-agent",
    );
    let (cupti, markers) = (data.join("cupti.sock"), data.join("markers.sock"));
    assert!(eventually(Duration::from_secs(20), || cupti.exists() && markers.exists()), "the agent's sockets appear");

    // GPU 0: a GEMM and an all-reduce kernel in each of three 2 s windows
    // (compute, communication, idle); GPU 1 has NVML only (busy and hollow busy).
    let period = 2_000 * MS;
    let t0 = (utc_now_ns() / period + 1) * period;
    let clock = MonoToUtc::measure();
    let mut acts = vec![Activity::Device(Device {
        id: 0,
        uuid: [0x51, 0x73, 0xa1, 0xd0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0],
        name: 3,
    })];
    for w in 0..3 {
        let base = t0 + w * period;
        for (corr, name, s, e) in [(1, 1, 100, 900), (2, 2, 800, 1300)] {
            acts.push(Activity::Kernel(Kernel {
                start: clock.to_monotonic(base + s * MS) as u64,
                end: clock.to_monotonic(base + e * MS) as u64,
                correlation_id: (w as u32) * 10 + corr,
                device_id: 0,
                context_id: 1,
                stream_id: 7,
                name,
                grid: [132, 1, 1],
                block: [256, 1, 1],
            }));
        }
    }
    let names = vec![
        (1u32, b"_Z19sm90_xmma_gemm_bf16PKvS0_Pv".to_vec().into_boxed_slice()),
        (2u32, b"ncclDevKernel_AllReduce_Sum_bf16_RING_LL".to_vec().into_boxed_slice()),
        (3u32, b"NVIDIA H100 80GB HBM3 (simulated)".to_vec().into_boxed_slice()),
    ];
    let sender = Sender::start(SenderConfig::new(cupti, std::process::id(), 130002), None).unwrap();
    assert!(sender.submit(Batch { activities: acts, names }));
    assert!(sender.flush(Duration::from_secs(10)), "the agent took the kernel records");
    sender.shutdown(Duration::from_secs(2));

    // Step markers with model FLOPs on GPU 0 (MFU), in the background.
    let script = format!(
        "import time\nfrom strand_markers import Markers\n\
         m = Markers(socket_path={:?}, gpu_index=0, rank=0)\n\
         while time.time_ns() < {}:\n    time.sleep(0.001)\n\
         for s in range(10):\n    with m.step(s, flops=3e14, dtype='bf16'):\n        time.sleep(0.5)\n",
        markers.display().to_string(),
        t0,
    );
    let mut steps = Proc::spawn(
        Command::new("python3").arg("-c").arg(&script).env("PYTHONPATH", repo().join("python")),
        "markers client",
    );

    // A real Prometheus, scraping every second, with the alert rules loaded.
    let prom_port = free_port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {:?}\n\
             scrape_configs:\n  - job_name: strand-agent\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n",
            monitoring().join("prometheus/strand-alerts.yml").display().to_string()
        ),
    )
    .unwrap();
    let _prometheus = Proc::spawn(
        tool("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
        "prometheus",
    );

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(monitoring().join("grafana/strand-dashboard.json")).unwrap())
            .unwrap();
    let mut targets: Vec<(String, String)> = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            targets.push((p["title"].as_str().unwrap().to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    assert!(targets.len() >= 20, "{targets:?}");

    // Wait until every window with kernels and markers closed and was scraped (t0 + 6 s + lateness 3 s).
    let empty = |targets: &[(String, String)]| -> BTreeMap<String, String> {
        targets
            .iter()
            .filter(|(title, _)| !NCCL_PANELS.contains(&title.as_str()))
            .filter(|(_, e)| query(prom_port, &substitute(e)).map(|r| r.is_empty()).unwrap_or(true))
            .map(|(t, e)| (e.clone(), t.clone()))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut missing = empty(&targets);
    while !missing.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        missing = empty(&targets);
    }
    assert!(
        missing.is_empty(),
        "panel queries without series: {missing:#?}\nagent:\n{}",
        get(agent_port, "/metrics").1
    );

    for (title, expr) in &targets {
        let r = query(prom_port, &substitute(expr));
        assert!(r.is_ok(), "panel {title:?}: Prometheus refuses the query: {r:?}");
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(q) = var["query"]["query"].as_str() else { continue };
        // label_values(<selector>, <label>) → the label's values among the selector's series.
        let inner = q.strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')).unwrap();
        let (selector, label) = inner.rsplit_once(", ").unwrap();
        let (_, body) =
            get(prom_port, &format!("/api/v1/label/{label}/values?match[]={}", urlencode(&substitute(selector))));
        let v: Value = serde_json::from_str(&body).unwrap();
        let values = v["data"].as_array().cloned().unwrap_or_default();
        if label != "job_id" {
            assert!(!values.is_empty(), "variable {label}: no values for {q}: {body}");
        }
    }
    // The figures behind the panels, as Prometheus sees them.
    let value = |expr: &str| -> f64 {
        let r = query(prom_port, expr).unwrap();
        r.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
    };
    assert_eq!(value("count(strand_gpu_up == 1)"), 2.0);
    assert!(value("max(strand_gpu_mfu_ratio)") > 0.0);
    let categories = value(r#"count(count by (category) (strand_gpu_time_seconds_total{gpu="0"}))"#);
    assert!(categories >= 3.0, "GPU 0 has compute, communication and idle: {categories} categories");
    assert!(value(r#"sum(strand_gpu_time_seconds_total{gpu="1",category="hollow_busy"})"#) > 0.0);
    assert!(value(r#"sum(strand_agent_uploads_total{outcome="retry"})"#) > 0.0);
    // docs/metrics.md (the DCGM mapping and the agent's own families) names every family the agent serves.
    let doc = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let (_, served) = get(agent_port, "/metrics");
    let mut undocumented: Vec<&str> = served
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|name| !doc.contains(&format!("`{name}`")) && !doc.contains(&format!("`{name}{{")))
        .collect();
    undocumented.dedup();
    assert!(undocumented.is_empty(), "families missing from docs/metrics.md: {undocumented:?}");
    let (_, meta) = get(prom_port, "/api/v1/metadata");
    let meta: Value = serde_json::from_str(&meta).unwrap();
    let kind = |m: &str| meta["data"][m][0]["type"].as_str().unwrap_or("?").to_string();
    assert_eq!(kind("strand_gpu_energy_joules"), "counter", "energy is a counter");
    assert_eq!(kind("strand_gpu_time_seconds"), "counter");
    assert_eq!(kind("strand_gpu_power_watts"), "gauge");
    assert_eq!(kind("strand_gpu"), "info");
    // Prometheus loaded every alert rule.
    let (_, rules) = get(prom_port, "/api/v1/rules");
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let loaded: Vec<&Value> =
        rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(loaded.len(), 10, "{rules}");
    assert!(loaded.iter().all(|r| r["health"] == "ok"), "{rules}");

    let _ = steps.wait(Duration::from_secs(30));
    agent.signal(SIGTERM);
    assert!(agent.wait(Duration::from_secs(30)).success());
}
