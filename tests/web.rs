//! `--web.config.file` (Prometheus exporter-toolkit format) against the real binary
//! and the real `curl`: TLS with a private CA made here by the `openssl` CLI, client
//! certificates required and refused, bcrypt basic auth, the response headers, bearer
//! tokens alongside, certificate rotation on SIGHUP, and bad files refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `openssl` with `args` in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(common::require_tool("openssl"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA `name.crt`/`name.key` in `dir`.
fn ca(dir: &Path, name: &str) {
    let (crt, key, subj) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("/CN={name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subj,
            "-keyout",
            &key,
            "-out",
            &crt,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf `name.crt`/`name.key` signed by CA `by`, for a server (`localhost`,
/// 127.0.0.1) or a client.
fn leaf(dir: &Path, name: &str, by: &str, server: bool) {
    let (crt, key, csr, subj) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("/CN={name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &subj,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        if server {
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        } else {
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"
        },
    )
    .unwrap();
    let (ca_crt, ca_key) = (format!("{by}.crt"), format!("{by}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            ext.to_str().unwrap(),
        ],
    );
}

/// What one `curl` run saw: its exit code, the status (0 when no HTTP answer came),
/// the response headers and body.
struct Curl {
    code: i32,
    status: u16,
    head: String,
    body: String,
}

fn curl(dir: &Path, args: &[&str]) -> Curl {
    let head = dir.join("curl-head.txt");
    let _ = std::fs::remove_file(&head);
    let out = Command::new(common::require_tool("curl"))
        .args(["-sS", "--max-time", "10", "-D"])
        .arg(&head)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Curl {
        code: out.status.code().unwrap_or(-1),
        status: status.trim().parse().unwrap_or(0),
        head: std::fs::read_to_string(&head).unwrap_or_default(),
        body: body.to_string(),
    }
}

fn sighup(child: &common::KillOnDrop) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) }, 0);
}

/// Spawns m4watch on `port` with `web` as its web config; waits for the port.
fn spawn(dir: &Path, port: u16, web: &Path) -> common::KillOnDrop {
    let cfg = dir.join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\napi: {{token: write-tok}}\ncontainers: {{enabled: false}}\ntrading: {{statsd_listen: null}}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("m4watch.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .arg("--config")
        .arg(&cfg)
        .arg("--web.config.file")
        .arg(web)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "m4watch never listened: {}",
            std::fs::read_to_string(dir.join("m4watch.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    common::KillOnDrop(child)
}

/// Retries `f` for up to 10 s until it holds (a reload is asynchronous to SIGHUP).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what} never held");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tls_client_certificates_basic_auth_and_headers_against_curl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ca(dir, "ca");
    ca(dir, "rogue");
    leaf(dir, "server", "ca", true);
    leaf(dir, "client", "ca", false);
    leaf(dir, "intruder", "rogue", false);
    // bcrypt as htpasswd -B writes it (cost 10: the toolkit's example cost).
    let hash = bcrypt::hash("scrape-pass", 10).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    X-Content-Type-Options: nosniff\n    X-Frame-Options: deny\nbasic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    let port = common::free_port();
    let child = spawn(dir, port, &web);
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let mtls = [
        "--cacert",
        "ca.crt",
        "--cert",
        "client.crt",
        "--key",
        "client.key",
    ];

    // A client certificate from the CA and the right password: the exposition, with
    // the headers.
    let metrics = url("/metrics");
    let ok = curl(
        dir,
        &[&mtls[..], &["-u", "prometheus:scrape-pass", &metrics]].concat(),
    );
    assert_eq!(ok.status, 200, "curl exit {}: {}", ok.code, ok.body);
    assert!(ok.body.contains("m4watch_build_info"), "{}", ok.body);
    let head = ok.head.to_ascii_lowercase();
    for h in [
        "strict-transport-security: max-age=31536000",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
    ] {
        assert!(head.contains(h), "{h} missing in:\n{}", ok.head);
    }

    // The wrong password: 401 asking for basic auth, headers still on.
    let wrong = curl(
        dir,
        &[&mtls[..], &["-u", "prometheus:guess", &metrics]].concat(),
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let head = wrong.head.to_ascii_lowercase();
    assert!(head.contains("www-authenticate: basic"), "{}", wrong.head);
    assert!(head.contains("x-frame-options: deny"), "{}", wrong.head);
    // No credentials at all, and an unknown user: 401 as well.
    assert_eq!(curl(dir, &[&mtls[..], &[&metrics]].concat()).status, 401);
    assert_eq!(
        curl(
            dir,
            &[&mtls[..], &["-u", "nobody:scrape-pass", &metrics]].concat()
        )
        .status,
        401
    );
    // The JSON API is behind the same login.
    let status = url("/api/v1/monitoring/status");
    assert_eq!(curl(dir, &[&mtls[..], &[&status]].concat()).status, 401);
    assert_eq!(
        curl(
            dir,
            &[&mtls[..], &["-u", "prometheus:scrape-pass", &status]].concat()
        )
        .status,
        200
    );
    // The probes stay open to the image's health check (still over mutual TLS).
    assert_eq!(
        curl(dir, &[&mtls[..], &[&url("/-/healthy")]].concat()).status,
        200
    );

    // Bearer tokens keep working: the write token reads and writes, basic auth alone
    // does not write.
    let reload = url("/-/reload");
    let bearer = curl(
        dir,
        &[
            &mtls[..],
            &[
                "-X",
                "POST",
                "-H",
                "Authorization: Bearer write-tok",
                &reload,
            ],
        ]
        .concat(),
    );
    assert_eq!(bearer.status, 200, "{}", bearer.body);
    assert!(bearer.body.contains("web_config"), "{}", bearer.body);
    let basic_write = curl(
        dir,
        &[
            &mtls[..],
            &["-X", "POST", "-u", "prometheus:scrape-pass", &reload],
        ]
        .concat(),
    );
    assert_eq!(basic_write.status, 401, "{}", basic_write.body);

    // No client certificate, or one from another CA: the handshake fails, no HTTP.
    let bare = curl(
        dir,
        &[
            "--cacert",
            "ca.crt",
            "-u",
            "prometheus:scrape-pass",
            &metrics,
        ],
    );
    assert_eq!(bare.status, 0, "served without a client certificate");
    assert_ne!(bare.code, 0);
    let intruder = curl(
        dir,
        &[
            "--cacert",
            "ca.crt",
            "--cert",
            "intruder.crt",
            "--key",
            "intruder.key",
            "-u",
            "prometheus:scrape-pass",
            &metrics,
        ],
    );
    assert_eq!(intruder.status, 0, "served a certificate from another CA");
    // Plain HTTP on the TLS port gets no answer either.
    let plain = curl(dir, &[&format!("http://127.0.0.1:{port}/metrics")]);
    assert_ne!(plain.status, 200);

    // Rotation: a new server certificate from a new CA, picked up on SIGHUP.
    ca(dir, "ca2");
    leaf(dir, "server2", "ca2", true);
    std::fs::copy(dir.join("server2.crt"), dir.join("server.crt")).unwrap();
    std::fs::copy(dir.join("server2.key"), dir.join("server.key")).unwrap();
    let mtls2 = [
        "--cacert",
        "ca2.crt",
        "--cert",
        "client.crt",
        "--key",
        "client.key",
    ];
    // Before the reload the old certificate is still served.
    assert_eq!(
        curl(
            dir,
            &[&mtls2[..], &["-u", "prometheus:scrape-pass", &metrics]].concat()
        )
        .status,
        0
    );
    sighup(&child);
    eventually("the rotated certificate is served", || {
        curl(
            dir,
            &[&mtls2[..], &["-u", "prometheus:scrape-pass", &metrics]].concat(),
        )
        .status
            == 200
    });
    assert_eq!(
        curl(
            dir,
            &[&mtls[..], &["-u", "prometheus:scrape-pass", &metrics]].concat()
        )
        .status,
        0,
        "the old CA still verifies after rotation"
    );

    // A broken web config at reload: refused with the reason, the running one stays.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: gone.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let refused = curl(
        dir,
        &[
            &mtls2[..],
            &[
                "-X",
                "POST",
                "-H",
                "Authorization: Bearer write-tok",
                &reload,
            ],
        ]
        .concat(),
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("gone.crt"), "{}", refused.body);
    assert_eq!(
        curl(
            dir,
            &[&mtls2[..], &["-u", "prometheus:scrape-pass", &metrics]].concat()
        )
        .status,
        200
    );
}

#[test]
fn verify_if_given_lets_clients_without_a_certificate_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ca(dir, "ca");
    ca(dir, "rogue");
    leaf(dir, "server", "ca", true);
    leaf(dir, "client", "ca", false);
    leaf(dir, "intruder", "rogue", false);
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  min_version: TLS13\n",
    )
    .unwrap();
    let port = common::free_port();
    let _child = spawn(dir, port, &web);
    let metrics = format!("https://localhost:{port}/metrics");
    // No basic_auth_users: no login needed, and no client certificate either.
    assert_eq!(curl(dir, &["--cacert", "ca.crt", &metrics]).status, 200);
    assert_eq!(
        curl(
            dir,
            &[
                "--cacert",
                "ca.crt",
                "--cert",
                "client.crt",
                "--key",
                "client.key",
                &metrics
            ]
        )
        .status,
        200
    );
    // A certificate that does not verify is still refused.
    assert_eq!(
        curl(
            dir,
            &[
                "--cacert",
                "ca.crt",
                "--cert",
                "intruder.crt",
                "--key",
                "intruder.key",
                &metrics
            ]
        )
        .status,
        0
    );
    // min_version TLS13: a TLS 1.2-only client gets no answer.
    assert_eq!(
        curl(dir, &["--cacert", "ca.crt", "--tls-max", "1.2", &metrics]).status,
        0
    );
}

/// A bad web config stops start-up and `check-config` with the file and the reason;
/// an exposed listener without TLS or auth is warned about.
#[test]
fn bad_web_configs_are_refused_and_open_listeners_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = dir.join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 0.0.0.0:{}\ncontainers: {{enabled: false}}\n",
            common::free_port()
        ),
    )
    .unwrap();
    let check = |web: Option<&PathBuf>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_m4watch"));
        if let Some(w) = web {
            c.arg("--web.config.file").arg(w);
        }
        let out = c.arg("check-config").arg(&cfg).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = check(None);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(
            "serves /metrics and the API on every interface with neither TLS nor basic auth"
        ),
        "{err}"
    );
    let web = dir.join("web.yml");
    std::fs::write(&web, "tls_server_config:\n  cert_file: server.crt\n").unwrap();
    let (code, err) = check(Some(&web));
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "web config {}: cannot read tls_server_config.cert_file {}: No such file or directory (os error 2)",
            web.display(),
            dir.join("server.crt").display()
        )
    );
    std::fs::write(&web, "basic_auth_users: {prometheus: hunter2}\n").unwrap();
    let (code, err) = check(Some(&web));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("basic_auth_users.prometheus: not a bcrypt hash"),
        "{err}"
    );
    // The daemon refuses to start on it, with the same reason.
    let out = Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--web.config.file")
        .arg(&web)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("not a bcrypt hash"), "{log}");
}
