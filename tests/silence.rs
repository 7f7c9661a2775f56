//! Issue 29, item 1: silence is a signal. The real binary with the shipped rules,
//! the shipped 1 s evaluation and the shipped `for:` values; real UDP StatsD on
//! loopback; Slack is the local stand-in. Order-execution latencies of 25 ms arrive
//! at 10/s for 75 s, so `OrderExecutionLatencyHigh` fires; then the sender stops, as
//! a hung gateway would. The 1-minute window keeps the latency for a minute, then the
//! alert resolves for lack of data: that resolve must never read as a recovery.
//!
//! Each case takes about three minutes (the shipped timings); the two run side by side.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::sink::Sink;
use common::{KillOnDrop, free_port, spawn_m4watch, wait_up};
use serde_json::Value;

/// m4watch from its binary with the shipped rules and one Slack receiver at `slack`;
/// `extra` goes under `trading:` and `intervals` under `notifications:`.
fn start(dir: &Path, slack: &str, extra: &str, intervals: &str) -> (KillOnDrop, String) {
    let port = free_port();
    let cfg = dir.join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}
data_dir: {data}
containers: {{enabled: false}}
trading:
  statsd_listen: 127.0.0.1:0
{extra}
notifications:
  receivers:
    - name: chat
      slack: {{webhook_url: \"{slack}\"}}
  route: {{receiver: chat}}
{intervals}",
            data = dir.join("data").display(),
        ),
    )
    .unwrap();
    let child = spawn_m4watch(&cfg, &dir.join("m4watch.log"), "info", &[]);
    (child, format!("http://127.0.0.1:{port}"))
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Sends `order_execution:25|ms` to the daemon's StatsD listener 10 times a second
/// for `secs` seconds.
async fn send_slow_orders(client: &reqwest::Client, base: &str, secs: u64) {
    let v = get(client, &format!("{base}/api/v1/monitoring/trading/metrics")).await;
    let to: SocketAddr = v["statsd_listen"].as_str().unwrap().parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        sock.send_to(b"order_execution:25|ms", to).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The alert named `name` in the alert list, in `state`.
async fn alert(client: &reqwest::Client, base: &str, name: &str, state: &str) -> Option<Value> {
    let list = get(
        client,
        &format!("{base}/api/v1/monitoring/alerts?state={state}"),
    )
    .await;
    list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alertname"] == name)
        .cloned()
}

/// Waits up to `secs` for `name` to reach `state`.
async fn wait_alert(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    state: &str,
    secs: u64,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(a) = alert(client, base, name, state).await {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not {state} within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The Slack headlines that name `alertname`.
fn headlines(slack: &Sink, alertname: &str) -> Vec<String> {
    slack
        .texts("/slack")
        .into_iter()
        .filter(|t| t.contains(&format!("] {alertname}")))
        .collect()
}

/// Whether any Slack message about `alertname` announces a plain recovery.
fn recovered(slack: &Sink, alertname: &str) -> Vec<String> {
    headlines(slack, alertname)
        .into_iter()
        .filter(|t| t.contains("[RESOLVED]"))
        .collect()
}

/// During market hours (none configured: always open) the silent source pages as
/// `TradingSourceSilent`; the latency alert resolves for lack of data, saying so, and
/// that resolve is held back while `TradingSourceSilent` fires (inhibition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_goes_silent_in_market_hours_pages_and_never_recovers() {
    let started = Instant::now();
    let slack = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_child, base) = start(dir.path(), &slack.url("/slack/hook"), "", "");
    let client = m4watch::tls::client();
    wait_up(&client, &base).await;

    send_slow_orders(&client, &base, 75).await;
    let stopped = Instant::now();
    let firing = headlines(&slack, "OrderExecutionLatencyHigh");
    assert!(
        firing
            .iter()
            .any(|t| t.starts_with("[FIRING:1] OrderExecutionLatencyHigh")),
        "the latency alert fired while the orders were slow: {:?}",
        slack.texts("/slack")
    );

    // Silent for over trading.silence_after (30 s): TradingSourceSilent pages.
    let silent = wait_alert(&client, &base, "TradingSourceSilent", "firing", 60).await;
    assert_eq!(silent["labels"]["operation"], "order_execution");
    assert_eq!(silent["severity"], "critical");
    assert!(
        stopped.elapsed() >= Duration::from_secs(30),
        "{:?}",
        stopped.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while headlines(&slack, "TradingSourceSilent").is_empty() {
        assert!(Instant::now() < deadline, "{:?}", slack.texts("/slack"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        headlines(&slack, "TradingSourceSilent")[0].starts_with("[FIRING:1] TradingSourceSilent")
    );

    // The 1-minute window empties: the latency alert resolves, for lack of data.
    let resolved = wait_alert(&client, &base, "OrderExecutionLatencyHigh", "resolved", 60).await;
    let reason = resolved["annotations"]["resolved_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.starts_with("no data since 20"),
        "the resolve says why: {resolved:#}"
    );
    // Its group flushes within group_interval (30 s): nothing about it may read as a
    // recovery; held back, as TradingSourceSilent still fires.
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert!(
        alert(&client, &base, "TradingSourceSilent", "firing")
            .await
            .is_some()
    );
    assert_eq!(
        recovered(&slack, "OrderExecutionLatencyHigh"),
        Vec::<String>::new()
    );
    assert_eq!(
        headlines(&slack, "OrderExecutionLatencyHigh").len(),
        firing.len(),
        "the silent resolve was held back: {:?}",
        slack.texts("/slack")
    );
    eprintln!("took {:?}", started.elapsed());
}

/// Outside market hours the same silence is not an incident: no TradingSourceSilent,
/// and the latency alert's resolve says "no data since", never resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_goes_silent_outside_market_hours_neither_pages_nor_recovers() {
    let started = Instant::now();
    let slack = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_child, base) = start(
        dir.path(),
        &slack.url("/slack/hook"),
        "  market_hours: [closed]",
        "  time_intervals:\n    - name: closed\n      time_intervals: [{years: ['2000']}]\n",
    );
    let client = m4watch::tls::client();
    wait_up(&client, &base).await;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        common::series(&metrics, "m4watch_trading_market_open")
            .iter()
            .any(|l| l.ends_with(" 0")),
        "the market is closed: {:?}",
        common::series(&metrics, "m4watch_trading_market_open")
    );

    send_slow_orders(&client, &base, 75).await;
    assert!(
        headlines(&slack, "OrderExecutionLatencyHigh")
            .iter()
            .any(|t| t.starts_with("[FIRING:1] OrderExecutionLatencyHigh")),
        "{:?}",
        slack.texts("/slack")
    );
    let resolved = wait_alert(&client, &base, "OrderExecutionLatencyHigh", "resolved", 75).await;
    assert!(
        resolved["annotations"]["resolved_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("no data since 20")),
        "{resolved:#}"
    );
    // Not inhibited (nothing is silent outside hours): delivered, as no data.
    let deadline = Instant::now() + Duration::from_secs(40);
    let no_data = loop {
        let got: Vec<_> = slack
            .received("/slack")
            .into_iter()
            .filter(|r| {
                r.body["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("[NO DATA] OrderExecutionLatencyHigh"))
            })
            .collect();
        if let Some(r) = got.into_iter().next() {
            break r;
        }
        assert!(Instant::now() < deadline, "{:?}", slack.texts("/slack"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let body = no_data.body.to_string();
    assert!(body.contains("no data since 20"), "{body}");
    assert!(!body.contains("(resolved)"), "{body}");
    assert_eq!(
        recovered(&slack, "OrderExecutionLatencyHigh"),
        Vec::<String>::new()
    );
    assert!(headlines(&slack, "TradingSourceSilent").is_empty());
    assert!(
        alert(&client, &base, "TradingSourceSilent", "firing")
            .await
            .is_none()
    );
    eprintln!("took {:?}", started.elapsed());
}
