//! The library is loaded into arbitrary programs: it must export the entry
//! point the CUDA driver looks up and nothing else that could collide with a
//! symbol of the host program (Rust std, libc wrappers, cudarc, …).

use std::path::PathBuf;
use std::process::Command;

fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    [dir.join("libstrand_inject.so"), dir.join("../libstrand_inject.so")]
        .into_iter()
        .find(|p| p.exists())
        .expect("libstrand_inject.so next to the test binary (cargo builds it with the tests)")
}

/// `nm -D --defined-only`: (type, name) of each exported symbol.
fn exported() -> Vec<(String, String)> {
    let lib = library();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("running nm (binutils, installed with the linker)");
    assert!(out.status.success(), "nm failed on {}: {}", lib.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().rev();
            let name = f.next()?.to_string();
            let kind = f.next()?.to_string();
            Some((kind, name))
        })
        .collect()
}

#[test]
fn only_initialize_injection_is_exported() {
    let syms = exported();
    assert!(
        syms.iter().any(|(k, n)| k == "T" && n == "InitializeInjection"),
        "InitializeInjection is not exported: {syms:?}"
    );
    let others: Vec<_> = syms.iter().filter(|(_, n)| n != "InitializeInjection" && !n.starts_with("strand_")).collect();
    assert!(others.is_empty(), "symbols that could clash with the host program: {others:?}");
}

#[test]
fn it_needs_no_cuda_library_at_load_time() {
    // CUPTI and the driver are opened at run time (dlopen), so a process
    // without them still loads the library and runs unprofiled.
    let lib = library();
    let out = Command::new("readelf").args(["-d"]).arg(&lib).output().expect("running readelf (binutils)");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(!needed.is_empty(), "{dynamic}");
    for n in &needed {
        assert!(!n.contains("cupti") && !n.contains("libcuda") && !n.contains("libcudart"), "{n}");
    }
}
