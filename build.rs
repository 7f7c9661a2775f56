//! Stamps the git revision into the binary for `m4watch_build_info`.
//!
//! Nothing else: link flags for a deployment (the position-dependent link the Docker
//! image uses) belong to that deployment's recipe, not to every build.
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
}
