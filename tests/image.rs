//! The container image, in a real container on the Engine scripts/test.sh starts (issue
//! 28): built from this test build by scripts/image-from-binary.sh (FROM scratch, as
//! no registry is reachable), run the way docker-compose.yml runs it (the host's
//! network, /proc and /sys, the Docker socket through its group): m4watch runs as a
//! non-root user, its network families are the host's `/proc/net/dev` interfaces, its
//! containers collector reads the socket, and its HEALTHCHECK turns healthy. The
//! production Dockerfile, the prebuilt one and the compose service are checked to
//! agree.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::docker::{SHARED, docker, try_docker};

const TAG: &str = "m4watch-test-image";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The container, removed when the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = try_docker(SHARED, &["rm", "-f", &self.0]);
    }
}

/// Interfaces of a `/proc/net/dev` text.
fn net_dev_interfaces(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn the_image_runs_as_a_non_root_user_on_the_hosts_network() {
    common::require_tool("docker");
    let out = Command::new(root().join("scripts/image-from-binary.sh"))
        .arg(env!("CARGO_BIN_EXE_m4watch"))
        .arg(TAG)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "image-from-binary.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // As docker-compose.yml runs it, on a port of its own.
    let port = common::free_port();
    let socket_gid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/var/run/docker.sock")
            .expect("the Docker socket scripts/test.sh's dockerd listens on")
            .gid()
    };
    // The image's config, with StatsD on an ephemeral loopback port: 8125 on the
    // host's network may be taken by another test or agent.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "{}trading:\n  statsd_listen: 127.0.0.1:0\n",
            std::fs::read_to_string(root().join("config/docker.yml")).unwrap()
        ),
    )
    .unwrap();
    let mount = format!("{}:/etc/m4watch/m4watch.yml:ro", cfg.display());
    let name = format!("m4watch-image-test-{}", std::process::id());
    let health = format!("M4WATCH_HEALTHCHECK_URL=http://127.0.0.1:{port}/-/healthy");
    let id = docker(
        SHARED,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--pid",
            "host",
            "--group-add",
            &socket_gid.to_string(),
            "-e",
            "M4WATCH_API_TOKEN=image-test-token",
            "-v",
            &mount,
            "-v",
            "/proc:/host/proc:ro",
            "-v",
            "/sys:/host/sys:ro",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            // The image's own check asks 127.0.0.1:9977 unless told otherwise; this
            // instance listens on the test's port.
            "-e",
            &health,
            "--health-interval",
            "1s",
            "--health-start-period",
            "1s",
            TAG,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            "/var/lib/m4watch",
        ],
    );
    let _container = Container(id.clone());

    // Scrape it from the host: the host network means its loopback is ours.
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let got = Command::new(common::require_tool("curl"))
            .args(["-sf", "--max-time", "2", &metrics])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&got.stdout).to_string();
        if got.status.success()
            && text.contains("m4watch_network_receive_bytes_total{")
            && text.contains("m4watch_collector_success{collector=\"containers\"}")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the container never served its metrics: {}",
            try_docker(SHARED, &["logs", "--tail", "20", &id]).unwrap_or_else(|e| e)
        );
        std::thread::sleep(Duration::from_millis(250));
    };

    // Non-root: the process's real, effective, saved and filesystem ids, from the host.
    let pid = docker(SHARED, &["inspect", "-f", "{{.State.Pid}}", &id]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {status}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(ids("Uid:"), ["10001"; 4], "{status}");
    assert_eq!(ids("Gid:"), ["10001"; 4], "{status}");
    assert!(
        ids("Groups:").contains(&socket_gid.to_string()),
        "the socket's group {socket_gid} is missing: {status}"
    );
    // ...and with that group it reads the Docker socket.
    let containers_ok = common::series(&text, "m4watch_collector_success")
        .iter()
        .any(|l| l.contains("collector=\"containers\"") && l.ends_with(" 1"));
    assert!(
        containers_ok,
        "the containers collector failed as m4watch:\n{text}"
    );

    // The network family is the host's: every /proc/net/dev interface (less the
    // default ignore pattern, veth.+), docker0 among them, which a container with a
    // network namespace of its own never sees.
    let ignore = regex::Regex::new(&format!(
        "^(?:{})$",
        m4watch::config::DEFAULT_INTERFACES_IGNORE
    ))
    .unwrap();
    let host: Vec<String> = net_dev_interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap())
        .into_iter()
        .filter(|i| !ignore.is_match(i))
        .collect();
    assert!(host.iter().any(|i| i == "docker0"), "{host:?}");
    let mut exported: Vec<String> = common::series(&text, "m4watch_network_receive_bytes_total")
        .iter()
        .filter_map(|l| {
            let rest = l.split("device=\"").nth(1)?;
            Some(rest.split('"').next()?.to_string())
        })
        .collect();
    exported.sort();
    assert_eq!(exported, host);

    // The image's own health check turns healthy.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = docker(SHARED, &["inspect", "-f", "{{.State.Health.Status}}", &id]);
        if h == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "health: {h}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // The image's own HEALTHCHECK, user and entry point.
    assert_eq!(
        docker(
            SHARED,
            &[
                "image",
                "inspect",
                "-f",
                "{{json .Config.Healthcheck.Test}}",
                TAG
            ]
        ),
        r#"["CMD","/usr/local/bin/m4watch","healthcheck"]"#
    );
    assert_eq!(
        docker(SHARED, &["image", "inspect", "-f", "{{.Config.User}}", TAG]),
        "10001:10001"
    );
}

/// The production Dockerfile (which compiles m4watch; it needs a registry, so it does
/// not build here) ends with the same lines as the prebuilt one tested above, and the
/// compose service runs it on the host's network with the socket's group.
#[test]
fn the_production_image_and_compose_match_what_is_tested() {
    let tail = |path: &str| -> Vec<String> {
        let text = std::fs::read_to_string(root().join(path)).unwrap();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let from = lines
            .iter()
            .position(|l| l.starts_with("USER "))
            .unwrap_or_else(|| panic!("{path} has no USER line"));
        lines[from..].to_vec()
    };
    let production = tail("Dockerfile");
    assert_eq!(production, tail("packaging/docker/Dockerfile.prebuilt"));
    assert_eq!(production[0], "USER 10001:10001");
    assert!(production.iter().any(|l| l.starts_with("HEALTHCHECK ")));
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("useradd --system --uid 10001"),
        "{dockerfile}"
    );

    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");

    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("docker-compose.yml")).unwrap(),
    )
    .unwrap();
    let svc = &compose["services"]["m4watch"];
    assert_eq!(svc["network_mode"].as_str(), Some("host"));
    assert!(
        svc.get("ports").is_none(),
        "no port mapping with a host network"
    );
    assert_eq!(
        svc["group_add"][0].as_str(),
        Some("${DOCKER_GID:-999}"),
        "{svc:?}"
    );
    let docker_yml = std::fs::read_to_string(root().join("config/docker.yml")).unwrap();
    assert!(docker_yml.contains("data_dir: /var/lib/m4watch"));
}
