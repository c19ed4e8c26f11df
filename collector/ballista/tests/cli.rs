//! `strand-ballista` as an operator starts it: a bad address is refused with
//! a line naming it, and a scheduler whose port is taken says so and exits.
//! (Also what makes `cargo test --workspace` build the binary that
//! tests/tests/reports.rs and packaging.rs start.)

use std::process::Command;

fn strand_ballista() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strand-ballista"))
}

#[test]
fn a_scheduler_address_without_a_port_is_refused_naming_it() {
    let out = strand_ballista().args(["executor", "--scheduler", "sched.example"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"sched.example\" is not HOST:PORT"), "{err}");
    let out = strand_ballista().args(["executor", "--scheduler", "h:port"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("`port` is not a port"), "{out:?}");
}

#[test]
fn a_scheduler_whose_port_is_taken_fails_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = strand_ballista().args(["scheduler", "--bind", &addr.to_string()]).output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("strand-ballista: ballista scheduler on {addr}")), "{err}");
}
