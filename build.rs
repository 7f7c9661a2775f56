//! Stamps the git revision into the binary for `m4watch_build_info`.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=M4WATCH_REVISION={rev}");

    // Release binaries on Linux are position-dependent executables, as Go builds
    // node_exporter and Prometheus: a PIE carries 1.1 MB of relocations that the loader
    // reads, and writes 1.3 MB of `.data.rel.ro` at every start, private memory for the
    // life of the process (BENCHMARKS.md, issue 17). The trade-off is that the
    // executable's own code is not placed at a random address; libraries, stack and
    // heap still are. The code stays position-independent; only the link changes.
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|o| o == "linux");
    if release && linux {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
