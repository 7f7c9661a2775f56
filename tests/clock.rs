//! The SNTP clock-offset probe through the daemon: a real SNTP responder on loopback
//! whose clock runs a known 40 ms ahead, and a server that never answers.

mod common;

use std::net::UdpSocket;

use common::{Daemon, config, series, sntp_responder};

fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn the_daemon_publishes_each_servers_offset_and_counts_a_silent_one() {
    let good = sntp_responder(40);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let d = Daemon::start(config(&format!(
        "host:\n  interval: 200ms\n  filesystems:\n    stat_timeout: 100ms\n  clock:\n    ntp_servers: [\"{good}\", \"{silent_addr}\"]\n    ntp_timeout: 200ms\n"
    )))
    .await;
    let offset = format!("m4watch_ntp_offset_seconds{{server=\"{good}\"}}");
    let failed = format!("m4watch_ntp_probe_failures_total{{server=\"{silent_addr}\"}}");
    let text = d
        .scrape_until(10, |t| {
            value(t, &offset).is_some() && value(t, &failed) == Some(1.0)
        })
        .await;
    let off = value(&text, &offset).unwrap();
    assert!((off - 0.040).abs() < 0.010, "{off}\n{text}");
    assert_eq!(
        value(&text, &format!("m4watch_ntp_stratum{{server=\"{good}\"}}")),
        Some(3.0)
    );
    assert!(
        value(
            &text,
            &format!("m4watch_ntp_round_trip_seconds{{server=\"{good}\"}}")
        )
        .is_some_and(|r| (0.0..0.010).contains(&r)),
        "{text}"
    );
    // The silent server: counted, and no offset, delay or stratum series.
    let silent_series: Vec<&str> = series(&text, "m4watch_ntp_offset_seconds")
        .into_iter()
        .filter(|l| l.contains(&silent_addr))
        .collect();
    assert!(silent_series.is_empty(), "{text}");
    assert_eq!(
        value(
            &text,
            &format!("m4watch_ntp_probe_failures_total{{server=\"{good}\"}}")
        ),
        Some(0.0)
    );
    d.stop().await;
    drop(silent);
}

#[test]
fn sntp_settings_are_bounded() {
    let parse = |yaml: &str| {
        m4watch::config::Config::parse(yaml, "<test>", std::path::Path::new("."), &|_| None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let err = parse("host:\n  clock:\n    ntp_servers: [a]\n    ntp_interval: 5s\n").unwrap_err();
    assert!(
        err.contains("host.clock.ntp_interval: must be between 15s and 1d"),
        "{err}"
    );
    let err = parse("host:\n  clock:\n    ntp_timeout: 10s\n").unwrap_err();
    assert!(
        err.contains("host.clock.ntp_timeout: 10s is above the limit of 5s"),
        "{err}"
    );
    let err = parse("host:\n  clock:\n    ntp_timeout: 1ms\n").unwrap_err();
    assert!(
        err.contains("host.clock.ntp_timeout: must be between 10ms"),
        "{err}"
    );
    let err = parse("host:\n  clock:\n    ntp_servers: [\"a b\"]\n").unwrap_err();
    assert!(err.contains("is not a host or host:port"), "{err}");
    let nine: Vec<String> = (0..9).map(|i| format!("s{i}")).collect();
    let err = parse(&format!(
        "host:\n  clock:\n    ntp_servers: [{}]\n",
        nine.join(", ")
    ))
    .unwrap_err();
    assert!(err.contains("at most 8 servers"), "{err}");
    assert!(parse("host:\n  clock:\n    ntp_servers: [time.apple.com, \"[::1]:123\"]\n").is_ok());
}
