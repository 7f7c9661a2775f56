//! Storage faults (issue 25, items 1, 3 and 9): a write is acknowledged only once it
//! is committed; a full disk, unwritable files or a vanished directory answer 503,
//! set `m4watch_storage_healthy 0`, make the health critical and page through
//! m4watch's own notifier (which sends from memory when the outbox cannot store);
//! no SIGBUS; a damaged database stops start-up; a failed configure changes nothing;
//! `check-config` refuses an unusable data directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::sink::Sink;
use crate::common::{KillOnDrop, free_port, spawn_m4watch, wait_up};

const TOKEN: &str = "fault-token";

/// One m4watch on `data`, notifying every alert to the stand-in's `/hook`.
struct Instance {
    child: KillOnDrop,
    base: String,
    log: PathBuf,
    client: reqwest::Client,
}

/// The config of an instance on `data` notifying `sink`.
fn config(dir: &Path, data: &Path, sink: &Sink, port: u16) -> PathBuf {
    let cfg = dir.join(format!("m4watch-{port}.yml"));
    std::fs::write(
        &cfg,
        format!(
            r#"listen: 127.0.0.1:{port}
data_dir: {data}
api: {{token: {TOKEN}}}
containers: {{enabled: false}}
trading: {{statsd_listen: "127.0.0.1:0"}}
notifications:
  delivery: {{initial_backoff: 100ms, max_backoff: 300ms}}
  receivers:
    - name: ops
      webhook: {{url: "{hook}"}}
    - name: pending
      webhook: {{url: "{pending}"}}
  route:
    receiver: ops
    group_by: [alertname]
    group_wait: 0s
    group_interval: 300ms
    routes:
      - {{matchers: ['alertname="Pending1"'], receiver: pending}}
"#,
            data = data.display(),
            hook = sink.url("/hook"),
            pending = sink.url("/pending"),
        ),
    )
    .unwrap();
    cfg
}

impl Instance {
    async fn start(dir: &Path, data: &Path, sink: &Sink) -> Instance {
        let port = free_port();
        let cfg = config(dir, data, sink, port);
        let log = dir.join(format!("m4watch-{port}.log"));
        let child = spawn_m4watch(&cfg, &log, "info", &[]);
        let base = format!("http://127.0.0.1:{port}");
        let client = m4watch::tls::client();
        wait_up(&client, &base).await;
        Instance {
            child,
            base,
            log,
            client,
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `POST /api/v2/alerts` with one firing alert named `name`.
    async fn alert(&self, name: &str) -> (u16, String) {
        self.post(
            "/api/v2/alerts",
            json!([{"labels": {"alertname": name, "severity": "warning"}}]),
        )
        .await
    }

    async fn silence(&self) -> (u16, String) {
        self.post(
            "/api/v1/monitoring/silences",
            json!({"matchers": [{"name": "alertname", "value": "Quiet", "is_regex": false}],
                   "duration": "1h", "created_by": "faults"}),
        )
        .await
    }

    async fn get(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of `m4watch_storage_healthy`, absent when not exported.
    async fn healthy(&self) -> Option<f64> {
        let text = self.get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix("m4watch_storage_healthy "))
            .map(|v| v.trim().parse().unwrap())
    }

    async fn health(&self) -> Value {
        serde_json::from_str(&self.get("/api/v1/monitoring/system/health").await).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running (not killed by a signal, not exited).
    fn alive(&mut self) -> bool {
        self.child.0.try_wait().unwrap().is_none()
    }
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
async fn within<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What every storage fault must show: write requests refused with 503 naming the
/// reason, the metric at 0, the health critical, and `M4watchStorageFailing` at the
/// stand-in receiver, sent by m4watch's own notifier.
async fn assert_fault_is_loud(m: &Instance, sink: &Sink, reason: &str) {
    let (code, body) = within(10, "an alert refused with 503", move || async move {
        let (code, body) = m.alert("AfterTheFault").await;
        (code == 503).then_some((code, body))
    })
    .await;
    assert_eq!(code, 503);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "storage_unavailable", "{body}");
    assert!(v["detail"].as_str().unwrap().contains(reason), "{body}");
    let (code, body) = m.silence().await;
    assert_eq!(code, 503, "a silence is refused too: {body}");
    within(5, "m4watch_storage_healthy 0", move || async move {
        (m.healthy().await == Some(0.0)).then_some(())
    })
    .await;
    let h = m.health().await;
    assert_eq!(h["status"], "critical", "{h}");
    assert_eq!(h["reasons"][0]["kind"], "storage_failing", "{h}");
    within(
        30,
        "M4watchStorageFailing at the receiver",
        move || async move {
            sink.received("/hook")
                .iter()
                .any(|r| r.body.to_string().contains("M4watchStorageFailing"))
                .then_some(())
        },
    )
    .await;
    assert!(
        m.log_text().contains("storage fault"),
        "an ERROR line says so:\n{}",
        m.log_text()
    );
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("`mount` could not be run");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (this test needs root, as scripts/test.sh runs it): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `dir` with one file, until it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Whatever is left in partial blocks too.
    while f.write_all(&[0u8; 512]).is_ok() {}
    path
}

fn libc_enospc() -> i32 {
    28 // ENOSPC on Linux
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_with_503_pages_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let mnt = Tmpfs::mount(&tmp.path().join("small"), "8m");
    let data = mnt.0.join("data");
    let mut m = Instance::start(tmp.path(), &data, &sink).await;
    assert_eq!(m.alert("BeforeTheFault").await.0, 200);
    assert_eq!(m.healthy().await, Some(1.0));
    // A notification waiting in the outbox for its receiver (a lane of its own) to
    // come back.
    sink.script("/pending", &[(500, None); 1000]);
    assert_eq!(m.alert("Pending1").await.0, 200);
    let pending = |after: Instant| {
        sink.received("/pending")
            .iter()
            .filter(|r| r.at > after && r.body.to_string().contains("Pending1"))
            .count()
    };
    let t0 = Instant::now() - Duration::from_secs(60);
    within(10, "Pending1 tried and refused", || async {
        (pending(t0) > 0).then_some(())
    })
    .await;

    let filler = fill(&mnt.0);
    assert_fault_is_loud(&m, &sink, "no_space").await;
    // The receiver takes it now, and the disk cannot record that: it is sent once,
    // not again at every pass of the worker.
    let back = Instant::now();
    sink.clear_script();
    within(10, "Pending1 delivered", || async {
        (pending(back) > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pending(back),
        1,
        "delivered once while its result cannot be recorded"
    );
    // Once the fault is known, a refused alert is not taken in at all.
    assert_eq!(m.alert("RefusedOutright").await.0, 503);
    let listed = m.get("/api/v1/monitoring/alerts").await;
    assert!(!listed.contains("RefusedOutright"), "{listed}");
    assert!(m.alive());
    let metrics = m.get("/metrics").await;
    assert!(
        metrics.contains(r#"m4watch_storage_fault_info{writer="#)
            && metrics.contains(r#"reason="no_space"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("m4watch_notifications_unqueued_total{") && !l.ends_with(" 0")),
        "the page went out from memory, counted"
    );

    // Space comes back: writes commit again by themselves, and the alert posted now
    // survives a restart.
    std::fs::remove_file(filler).unwrap();
    let mr = &m;
    within(15, "an alert accepted again", move || async move {
        (mr.alert("AfterRecovery").await.0 == 200).then_some(())
    })
    .await;
    within(5, "m4watch_storage_healthy 1", move || async move {
        (mr.healthy().await == Some(1.0)).then_some(())
    })
    .await;
    drop(m);
    let m = Instance::start(tmp.path(), &data, &sink).await;
    let alerts = m.get("/api/v1/monitoring/alerts").await;
    assert!(alerts.contains("AfterRecovery"), "{alerts}");
    assert!(alerts.contains("BeforeTheFault"), "{alerts}");
}

/// The data directory goes away under a running m4watch (`how` does it); a second
/// instance on the same path must be refused meanwhile.
async fn a_vanished_directory(how: fn(&Path, &Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let data = tmp.path().join("data");
    let mut m = Instance::start(tmp.path(), &data, &sink).await;
    assert_eq!(m.alert("BeforeTheFault").await.0, 200);
    how(&data, &tmp.path().join("moved"));
    assert_fault_is_loud(&m, &sink, "directory").await;
    assert!(m.alive());

    // A second instance on the same path: refused, loudly, while the first runs.
    let port = free_port();
    let cfg = config(tmp.path(), &data, &sink, port);
    let log = tmp.path().join("second.log");
    let mut second = spawn_m4watch(&cfg, &log, "info", &[]);
    let status = within(20, "the second instance exits", || {
        let s = second.0.try_wait().unwrap();
        async move { s }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "refused: {text}");
    assert!(text.contains("another m4watch"), "{text}");
    assert!(m.alive());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_renamed_while_running_stops_writes_and_a_second_owner() {
    a_vanished_directory(|data, to| std::fs::rename(data, to).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_deleted_while_running_stops_writes_and_a_second_owner() {
    a_vanished_directory(|data, _| std::fs::remove_dir_all(data).unwrap()).await;
}

/// Runs `chattr` on `files`; fails loudly where it cannot (not root, a filesystem
/// without attributes).
fn chattr(flag: &str, files: &[PathBuf]) {
    let out = Command::new("chattr")
        .arg(flag)
        .args(files)
        .output()
        .expect("`chattr` (e2fsprogs) is not installed");
    assert!(
        out.status.success(),
        "chattr {flag} failed (this test needs root and a filesystem with attributes, as scripts/test.sh runs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Clears the immutable flag even when the test fails, so the temp dir can go.
struct Mutable(Vec<PathBuf>);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_immutable_database_is_an_error_not_a_sigbus() {
    // The normal disk: tmpfs has no file attributes.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sink = Sink::start().await;
    let data = tmp.path().join("data");
    let mut m = Instance::start(tmp.path(), &data, &sink).await;
    assert_eq!(m.alert("BeforeTheFault").await.0, 200);
    let files: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".db"))
        .collect();
    let _undo = Mutable(files.clone());
    chattr("+i", &files);
    assert_fault_is_loud(&m, &sink, "permission_denied").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        m.alive(),
        "m4watch died (SIGBUS?): {:?}\n{}",
        m.child.0.try_wait(),
        m.log_text()
    );
    // Writable again: accepted again.
    chattr("-i", &files);
    let mr = &m;
    within(15, "an alert accepted again", move || async move {
        (mr.alert("AfterRecovery").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_damaged_mid_file_stops_start_up_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let data = tmp.path().join("data");
    let m = Instance::start(tmp.path(), &data, &sink).await;
    for i in 0..20 {
        assert_eq!(m.alert(&format!("Stored{i}")).await.0, 200);
    }
    drop(m);
    // A page start-up itself never reads: the root of the transitions table.
    let db = data.join("m4watch.db");
    let (root, page_size): (i64, i64) = {
        let c = rusqlite::Connection::open(&db).unwrap();
        (
            c.query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'alert_transitions'",
                [],
                |r| r.get(0),
            )
            .unwrap(),
            c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap(),
        )
    };
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.seek(SeekFrom::Start(((root - 1) * page_size) as u64))
            .unwrap();
        f.write_all(&vec![0xA5; page_size as usize]).unwrap();
        f.sync_all().unwrap();
    }
    let port = free_port();
    let cfg = config(tmp.path(), &data, &sink, port);
    let log = tmp.path().join("corrupt.log");
    let mut child = spawn_m4watch(&cfg, &log, "info", &[]);
    let status = within(20, "m4watch refuses to start", || {
        let s = child.0.try_wait().unwrap();
        async move { s }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(text.contains(&db.display().to_string()), "{text}");
    assert!(text.contains("integrity check failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configure_call_that_cannot_be_stored_changes_nothing() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sink = Sink::start().await;
    let data = tmp.path().join("data");
    let m = Instance::start(tmp.path(), &data, &sink).await;
    // The directory takes no new file: the secrets file cannot be written.
    let _undo = Mutable(vec![data.clone()]);
    chattr("+i", std::slice::from_ref(&data));
    let (code, body) = m
        .post(
            "/api/v1/monitoring/notifications/configure",
            json!({"receiver": "ops", "slack_webhook": "https://hooks.slack.example/T0/B0/X"}),
        )
        .await;
    assert!(code >= 500, "{code} {body}");
    let running = m.get("/api/v2/status").await;
    let v: Value = serde_json::from_str(&running).unwrap();
    let original = v["config"]["original"].as_str().unwrap();
    assert!(
        !original.contains("slack"),
        "the refused settings are not in use:\n{original}"
    );
}

#[test]
fn check_config_refuses_an_unusable_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // A regular file where the data directory's parent should be.
    let file = tmp.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let cfg = tmp.path().join("m4watch.yml");
    std::fs::write(&cfg, format!("data_dir: {}\n", file.join("data").display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("data_dir"), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");

    // A usable one is created, as start-up would.
    let good = tmp.path().join("fresh").join("data");
    std::fs::write(&cfg, format!("data_dir: {}\n", good.display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(good.is_dir());
}
