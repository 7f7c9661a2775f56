//! A real Docker Engine for black-box tests: the Engine scripts/test.sh starts, the
//! test image, and containers that are removed when the test ends.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::require_tool;

pub const IMAGE: &str = "m4watch-test-busybox";
pub const SHARED: &str = "unix:///var/run/docker.sock";
/// Runs until stopped and exits 0 at once on SIGTERM (a PID 1 without a handler would
/// ignore it and make every stop wait for the kill timeout).
pub const IDLE: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"];

pub fn try_docker(host: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .arg("-H")
        .arg(host)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn docker(host: &str, args: &[&str]) -> String {
    try_docker(host, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Builds the test image (`FROM scratch` + Debian's static busybox) when the Engine
/// lacks it: no registry is reachable, so nothing can be pulled.
pub fn ensure_image(host: &str) {
    if try_docker(host, &["image", "inspect", IMAGE]).is_ok() {
        return;
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: scripts/test.sh installs busybox-static"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(busybox, dir.path().join("busybox")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .unwrap();
    docker(
        host,
        &["build", "-q", "-t", IMAGE, dir.path().to_str().unwrap()],
    );
}

/// The Engine scripts/test.sh runs, with the test image present.
pub fn shared_engine() -> &'static str {
    require_tool("docker");
    if let Err(e) = try_docker(SHARED, &["info", "--format", "{{.ServerVersion}}"]) {
        panic!("no Docker Engine at {SHARED} ({e}): scripts/test.sh starts dockerd");
    }
    ensure_image(SHARED);
    SHARED
}

/// Containers of one test run: a unique name prefix and label; dropping it removes
/// every container carrying the label.
pub struct Run {
    pub host: String,
    pub prefix: String,
}

impl Run {
    pub fn new(host: &str, test: &str) -> Run {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Run {
            host: host.to_string(),
            prefix: format!("m4wt-{test}-{}-{nanos:x}-", std::process::id()),
        }
    }

    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// `docker run -d` with the run's name and label; returns the container name.
    pub fn start(&self, suffix: &str, options: &[&str], command: &[&str]) -> String {
        let name = self.name(suffix);
        let label = format!("m4watch.test={}", self.prefix);
        let mut args = vec!["run", "-d", "--name", &name, "--label", &label];
        args.extend_from_slice(options);
        args.push(IMAGE);
        args.extend_from_slice(command);
        docker(&self.host, &args);
        name
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let filter = format!("label=m4watch.test={}", self.prefix);
        if let Ok(ids) = try_docker(&self.host, &["ps", "-aq", "--filter", &filter]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = try_docker(&self.host, &args);
            }
        }
    }
}
