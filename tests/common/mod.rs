//! Shared harness for black-box tests: start the real server on 127.0.0.1:0 and talk to
//! it over the wire.
#![allow(dead_code)]

pub mod docker;
pub mod sink;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use m4watch::config::Config;
use m4watch::shutdown::Trigger;

/// A running m4watch inside the test process.
pub struct Daemon {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    trigger: Trigger,
    task: tokio::task::JoinHandle<Result<(), m4watch::Error>>,
}

/// Parses `yaml` (in addition to `listen`/`data_dir`, which the harness sets) with no
/// environment, as a config file would be. The container collector stays off unless
/// `yaml` has a `containers:` section, so tests that are not about Docker do not
/// depend on a running Engine.
pub fn config(yaml: &str) -> Config {
    let text = format!("listen: 127.0.0.1:0\ndata_dir: ./data\n{yaml}");
    let mut c =
        Config::parse(&text, "<test>", Path::new("."), &|_| None).expect("test config is valid");
    // Each daemon gets its own data dir (SQLite alert state), so tests never share it.
    c.data_dir = tempfile::tempdir().expect("temp dir").keep();
    ephemeral_statsd(&mut c);
    if !yaml.lines().any(|l| l.starts_with("containers:")) {
        c.containers.enabled = false;
    }
    c
}

/// Tests run side by side: the default StatsD port would collide, so a test that
/// leaves it at the default gets an ephemeral loopback port instead.
pub fn ephemeral_statsd(c: &mut Config) {
    if c.trading.statsd_listen == Some(SocketAddr::from(([0, 0, 0, 0], 8125))) {
        c.trading.statsd_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    }
}

/// The root of a fixture machine under `testdata/linux/`.
pub fn fixture(name: &str) -> String {
    format!("{}/testdata/linux/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Config pointing the hardware collector at a fixture tree.
pub fn fixture_config(name: &str, extra: &str) -> Config {
    let root = fixture(name);
    config(&format!(
        "hardware:\n  interval: 100ms\n  timeout: 100ms\n  procfs: {root}/proc\n  sysfs: {root}/sys\n{extra}"
    ))
}

impl Daemon {
    /// Starts m4watch on an ephemeral port and waits until `/-/ready` says every
    /// collector has run once.
    pub async fn start(config: Config) -> Daemon {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = m4watch::shutdown::channel();
        let task = tokio::spawn(m4watch::serve(config, listener, shutdown));
        let d = Daemon {
            addr,
            client: m4watch::tls::client(),
            trigger,
            task,
        };
        d.wait_ready().await;
        d
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.client.get(self.url("/-/ready")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("m4watch at {} never became ready", self.addr);
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn scrape(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Scrapes until `pred` holds on the exposition (collectors run on their own
    /// clock), for at most `secs` seconds.
    pub async fn scrape_until(&self, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let text = self.scrape().await;
            if pred(&text) {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("condition never held; last scrape:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fires shutdown and waits for every task to stop.
    pub async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("m4watch stops within 10 s of shutdown")
            .unwrap()
            .unwrap();
    }
}

/// Series lines (`name{labels} value`) of one family in an exposition.
pub fn series<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            !l.starts_with('#')
                && l.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// Fails loudly when a tool a test needs is not installed: scripts/test.sh installs it.
pub fn require_tool(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: run scripts/test.sh, which installs it")
        })
}

/// What `promtool check metrics` says about an exposition; empty when it finds
/// nothing wrong (it exits non-zero then too, which this turns into a report line).
pub fn promtool_check_metrics(text: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(require_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() && report.trim().is_empty() {
        report = format!("promtool exited with {}", out.status);
    }
    report.trim().to_string()
}

/// A free TCP port on loopback (bound, then released for the caller).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real m4watch binary on `cfg`, its log (level `rust_log`) appended to `log`,
/// with `env` set.
pub fn spawn_m4watch(cfg: &Path, log: &Path, rust_log: &str, env: &[(&str, &str)]) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_m4watch"));
    c.arg("--config")
        .arg(cfg)
        .env("RUST_LOG", rust_log)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in env {
        c.env(k, v);
    }
    KillOnDrop(c.spawn().unwrap())
}

/// Waits up to 30 s for `url` to answer 2xx; `what` names the service in the panic.
pub async fn wait_http(client: &reqwest::Client, url: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never answered {url}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the m4watch at `base` answers `/-/healthy`.
pub async fn wait_up(client: &reqwest::Client, base: &str) {
    wait_http(client, &format!("{base}/-/healthy"), "m4watch").await;
}

/// A child process killed (and reaped) when the test lets go of it.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// NTP timestamp (seconds since 1900 << 32 | fraction) of now shifted by `ahead_ms`.
fn ntp_now(ahead_ms: u64) -> [u8; 8] {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + Duration::from_millis(ahead_ms);
    let secs = d.as_secs() + 2_208_988_800;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    ((secs << 32) | frac).to_be_bytes()
}

/// A real SNTP server on loopback (a thread answering until the test process ends) whose
/// clock runs `ahead_ms` ahead of this machine, as stratum 3; its `host:port`.
pub fn sntp_responder(ahead_ms: u64) -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut req = [0u8; 48];
        while let Ok((n, peer)) = sock.recv_from(&mut req) {
            if n != 48 {
                continue;
            }
            let mut reply = [0u8; 48];
            reply[0] = (4 << 3) | 4;
            reply[1] = 3;
            reply[24..32].copy_from_slice(&req[40..48]);
            reply[32..40].copy_from_slice(&ntp_now(ahead_ms));
            reply[40..48].copy_from_slice(&ntp_now(ahead_ms));
            sock.send_to(&reply, peer).ok();
        }
    });
    addr
}
