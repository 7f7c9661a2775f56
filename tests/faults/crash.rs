//! A crash right after a 200: `kill -9` at many moments around `POST /api/v2/alerts`
//! (before the answer, and 0 to 150 ms after it), a restart each time, then a count
//! per incident of what each stand-in receiver got. Nothing acknowledged may be lost;
//! a second copy is allowed only for a send in flight at the kill (its first copy
//! logged by the stand-in before the kill). SIGTERM at the same moments is exact.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::sink::Sink;
use crate::common::{KillOnDrop, free_port, spawn_m4watch, wait_up};

const TOKEN: &str = "test-write-token";
/// The receiver's two integrations, each an outbox lane of its own.
const LANES: [&str; 2] = ["/hook", "/slack"];

fn alert(k: usize, resolved: bool) -> Value {
    let ends = if resolved {
        chrono::Utc::now() - chrono::Duration::seconds(1)
    } else {
        chrono::Utc::now() + chrono::Duration::minutes(30)
    };
    json!({
        "labels": {"alertname": name(k), "severity": "critical"},
        "annotations": {"summary": "crash test"},
        "endsAt": ends.to_rfc3339(),
    })
}

fn name(k: usize) -> String {
    format!("Crash{k:03}")
}

fn write_config(path: &Path, port: u16, data: &Path, sink: &Sink, group_wait: &str) {
    std::fs::write(
        path,
        format!(
            r#"listen: 127.0.0.1:{port}
data_dir: {data}
api: {{token: {TOKEN}}}
containers: {{enabled: false}}
rules: {{enabled: false}}
trading: {{statsd_listen: "127.0.0.1:0"}}
notifications:
  delivery: {{initial_backoff: 100ms, max_backoff: 200ms}}
  receivers:
    - name: ops
      webhook: {{url: "{hook}"}}
      slack: {{webhook_url: "{slack}"}}
  route: {{receiver: ops, group_by: [alertname], group_wait: {group_wait}, group_interval: 100ms, repeat_interval: 24h}}
"#,
            data = data.display(),
            hook = sink.url("/hook"),
            slack = sink.url("/slack"),
        ),
    )
    .unwrap();
}

/// `(incident, firing)` of a request the stand-in logged.
fn classify(path: &str, body: &Value) -> Option<(usize, bool)> {
    let text = body.to_string();
    let at = text.find("Crash")?;
    let k: usize = text.get(at + 5..at + 8)?.parse().ok()?;
    let firing = if path.starts_with("/slack") {
        !body["text"].as_str()?.contains("[RESOLVED]")
    } else {
        body["status"].as_str()? == "firing"
    };
    Some((k, firing))
}

/// When the stand-in logged each copy of (incident, firing) on `lane`.
fn copies(sink: &Sink, lane: &str, k: usize, firing: bool) -> Vec<Instant> {
    sink.received(lane)
        .into_iter()
        .filter(|r| classify(&r.path, &r.body) == Some((k, firing)))
        .map(|r| r.at)
        .collect()
}

async fn post(client: &reqwest::Client, base: &str, batch: &Value) -> bool {
    client
        .post(format!("{base}/api/v2/alerts"))
        .bearer_auth(TOKEN)
        .json(batch)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

async fn wait_copy(sink: &Sink, k: usize, firing: bool, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if LANES.iter().all(|l| !copies(sink, l, k, firing).is_empty()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Where the signal lands relative to the POST.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This long after the request was sent, whether or not it was answered.
    AfterSend(Duration),
    /// This long after the 200.
    After200(Duration),
}

struct Tally {
    incidents: usize,
    lost: usize,
    in_flight_duplicates: usize,
    other_duplicates: usize,
    reposted: usize,
    failures: Vec<String>,
}

/// One incident per moment: its FIRING is posted together with the previous
/// incident's resolve, and the signal lands at the moment; the daemon restarts and
/// the batch is posted again if it was not answered 200 (as Prometheus retries).
async fn run(signal: i32, moments: &[Moment], group_wait: &str) -> Tally {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("m4watch.yml");
    write_config(&cfg, port, &dir.path().join("data"), &sink, group_wait);
    let log = dir.path().join("m4watch.log");
    let base = format!("http://127.0.0.1:{port}");
    let client = m4watch::tls::client();
    // When each killed process was known dead and the stand-ins had read what it
    // sent: a copy logged before this was sent by a process that is now dead.
    let mut dead: Vec<Instant> = Vec::new();
    let mut kills: Vec<Instant> = Vec::new();
    let mut reposted = 0;
    let mut pending: Option<Value> = None;
    let n = moments.len();
    for (k, moment) in moments.iter().enumerate() {
        let mut child: KillOnDrop = spawn_m4watch(&cfg, &log, "info", &[]);
        wait_up(&client, &base).await;
        if let Some(batch) = pending.take() {
            reposted += 1;
            assert!(post(&client, &base, &batch).await, "re-post refused");
        }
        if k > 0 {
            // The previous incident's FIRING out before its resolve is posted (one
            // resolved inside group_wait is, rightly, never announced).
            wait_copy(&sink, k - 1, true, 10).await;
        }
        let mut batch = vec![alert(k, false)];
        if k > 0 {
            batch.push(alert(k - 1, true));
        }
        let batch = Value::Array(batch);
        let pid = child.0.id() as i32;
        let answered = match *moment {
            Moment::After200(d) => {
                let ok = post(&client, &base, &batch).await;
                assert!(ok, "POST refused");
                tokio::time::sleep(d).await;
                // SAFETY: signalling our own child by its pid.
                unsafe { libc::kill(pid, signal) };
                true
            }
            Moment::AfterSend(d) => {
                let req = {
                    let (client, base, batch) = (client.clone(), base.clone(), batch.clone());
                    tokio::spawn(async move { post(&client, &base, &batch).await })
                };
                tokio::time::sleep(d).await;
                // SAFETY: as above.
                unsafe { libc::kill(pid, signal) };
                req.await.unwrap()
            }
        };
        kills.push(Instant::now());
        child.0.wait().unwrap();
        // A request the dead process wrote may still sit in the stand-in's socket.
        tokio::time::sleep(Duration::from_millis(100)).await;
        dead.push(Instant::now());
        if !answered {
            pending = Some(batch);
        }
    }
    // The last restart: the last incident resolves, everything settles.
    let _last = spawn_m4watch(&cfg, &log, "info", &[]);
    wait_up(&client, &base).await;
    if let Some(batch) = pending.take() {
        reposted += 1;
        assert!(post(&client, &base, &batch).await, "re-post refused");
    }
    wait_copy(&sink, n - 1, true, 10).await;
    assert!(post(&client, &base, &Value::Array(vec![alert(n - 1, true)])).await);
    for k in 0..n {
        wait_copy(&sink, k, false, 10).await;
    }
    // Late copies (a retry, a re-announcement) would come within this.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut t = Tally {
        incidents: n,
        lost: 0,
        in_flight_duplicates: 0,
        other_duplicates: 0,
        reposted,
        failures: Vec::new(),
    };
    for k in 0..n {
        for lane in LANES {
            for firing in [true, false] {
                let got = copies(&sink, lane, k, firing);
                // A FIRING is posted at moment k, its resolve at moment k + 1.
                let posted = if firing { k } else { k + 1 };
                let when = |at: &Instant| match kills.iter().position(|x| at < x) {
                    Some(0) => "before kill 0".to_string(),
                    Some(i) => format!(
                        "{:?} after kill {}, before kill {i}",
                        at.duration_since(kills[i - 1]),
                        i - 1
                    ),
                    None => "after the last restart".to_string(),
                };
                let what = format!(
                    "{} {} on {lane} (posted at {:?}; copies {:?})",
                    name(k),
                    if firing { "FIRING" } else { "RESOLVED" },
                    moments.get(posted),
                    got.iter().map(when).collect::<Vec<_>>()
                );
                match got.as_slice() {
                    [] => {
                        t.lost += 1;
                        t.failures.push(format!("{what}: lost"));
                    }
                    [_] => {}
                    // The first copy sent by a process that was then killed, the second
                    // by a later one: the send was in flight at the kill.
                    [first, second]
                        if kills
                            .iter()
                            .zip(&dead)
                            .any(|(k, d)| first < d && k < second) =>
                    {
                        t.in_flight_duplicates += 1;
                    }
                    _ => {
                        t.other_duplicates += 1;
                        t.failures.push(format!(
                            "{what}: {} copies, not a send in flight",
                            got.len()
                        ));
                    }
                }
            }
        }
    }
    if !t.failures.is_empty() {
        eprintln!(
            "log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    t
}

fn report(what: &str, t: &Tally) {
    println!(
        "{what}: {} kill moments, {} incidents x {} lanes x FIRING+RESOLVED: lost {}, \
         duplicates in flight {}, other duplicates {}, batches re-posted after no answer {}",
        t.incidents,
        t.incidents,
        LANES.len(),
        t.lost,
        t.in_flight_duplicates,
        t.other_duplicates,
        t.reposted
    );
}

/// 110 moments: 10 while the request is on its way (0.2 to 2 ms after sending), 100
/// spread over the 150 ms after the 200, which covers the alert store's commit, the
/// dispatcher saving its group, group_wait (100 ms), the outbox write and the sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_around_a_post_loses_nothing_and_doubles_only_sends_in_flight() {
    let mut moments: Vec<Moment> = (0..10)
        .map(|i| Moment::AfterSend(Duration::from_micros(200 + 200 * i)))
        .collect();
    moments.extend((0..100).map(|i| Moment::After200(Duration::from_micros(1500 * i))));
    let t = run(libc::SIGKILL, &moments, "100ms").await;
    report("kill -9", &t);
    assert!(
        t.failures.is_empty(),
        "{} of {}:\n{}",
        t.failures.len(),
        t.incidents * 4,
        t.failures.join("\n")
    );
}

/// SIGTERM at 25 of the same moments: a clean stop, so every incident is announced
/// exactly once and resolved exactly once on each lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_around_a_post_is_exact() {
    let moments: Vec<Moment> = (0..25)
        .map(|i| Moment::After200(Duration::from_micros(6000 * i)))
        .collect();
    let t = run(libc::SIGTERM, &moments, "100ms").await;
    report("SIGTERM", &t);
    assert!(t.failures.is_empty(), "{}", t.failures.join("\n"));
    assert_eq!(
        t.in_flight_duplicates, 0,
        "a clean stop leaves nothing in flight"
    );
}

/// The shipped `group_wait` (0s: the notification is written while the alert is
/// handled, a few ms after the 200): 40 moments over the first 40 ms after the 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_the_shipped_group_wait_loses_nothing() {
    let moments: Vec<Moment> = (0..40)
        .map(|i| Moment::After200(Duration::from_millis(i)))
        .collect();
    let t = run(libc::SIGKILL, &moments, "0s").await;
    report("kill -9, group_wait 0s", &t);
    assert!(
        t.failures.is_empty(),
        "{} of {}:\n{}",
        t.failures.len(),
        t.incidents * 4,
        t.failures.join("\n")
    );
}
