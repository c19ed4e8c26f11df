//! The crate split holds (docs/performance.md, "Crates by job"): the
//! offline tools link no DataFusion, async runtime or HTTP stack; the
//! collector service links no offline or fleet code; no product crate
//! depends on the simulator.

use std::process::Command;

/// The packages `package` links (normal dependencies, the whole graph).
fn tree(package: &str, invert: bool) -> Vec<String> {
    tree_with(package, invert, &[])
}

fn tree_with(package: &str, invert: bool, extra: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["tree", "--offline", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if invert {
        cmd.args(["--workspace", "-i", package]);
    } else {
        cmd.args(["-p", package]);
    }
    cmd.args(extra);
    let out = cmd.output().expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn each_crate_links_only_what_its_job_needs() {
    let offline = tree("strand-offline", false);
    for heavy in ["datafusion", "tokio", "axum", "hyper", "object_store", "strand-fleet", "strand-collector"] {
        assert!(!offline.iter().any(|p| p == heavy), "strand-offline links {heavy}");
    }
    // The `strand` binary alone (the CLI without its fleet and service halves).
    let cli = tree_with("strand-cli", false, &["--no-default-features"]);
    for heavy in ["datafusion", "tokio", "axum", "strand-fleet", "strand-collector"] {
        assert!(!cli.iter().any(|p| p == heavy), "`strand` links {heavy}");
    }
    let service = tree("strand-collector", false);
    for other in ["strand-offline", "strand-fleet", "strand-analysis", "datafusion"] {
        assert!(!service.iter().any(|p| p == other), "strand-collector links {other}");
    }
    // Who depends on the simulator (normal dependencies): nobody but itself.
    let users = tree("strand-sim", true);
    assert_eq!(users.iter().filter(|p| p.starts_with("strand")).collect::<Vec<_>>(), ["strand-sim"], "{users:?}");
}
