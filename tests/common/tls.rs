//! A TLS server on loopback for the probe tests: a private CA and a server certificate
//! for 127.0.0.1 made by the `openssl` CLI, with a known notAfter. It answers an HTTP
//! GET with `200 ok` and any other line with `PONG`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::require_tool;

pub struct TlsServer {
    pub addr: SocketAddr,
    /// The CA's certificate (PEM), for `tls_ca_file`.
    pub ca: PathBuf,
    /// The server certificate's notAfter, Unix seconds, as openssl reads it.
    pub not_after: i64,
    _dir: tempfile::TempDir,
}

/// Runs `openssl args` in `dir`; fails the test when it fails.
pub fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(require_tool("openssl"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// openssl's arguments for a new P-256 key without a passphrase.
pub const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Makes in `d` a private CA (`ca.pem`, `ca-key.pem`) and a server certificate it
/// issued for 127.0.0.1 (`cert.pem`, `key.pem`), valid for `days` days: a desk's own
/// relay or gateway. Returns the certificate's notAfter in Unix seconds.
pub fn ca_and_server_cert(d: &std::path::Path, days: u32) -> i64 {
    let ec = EC_KEY;
    let days = days.to_string();
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "30", "-subj", "/CN=m4watch probe test CA"],
            &["-keyout", "ca-key.pem", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        d,
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "req.pem",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "req.pem",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            &days,
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    );
    let end = openssl(
        d,
        &[
            "x509", "-in", "cert.pem", "-noout", "-enddate", "-dateopt", "iso_8601",
        ],
    );
    let end = end.strip_prefix("notAfter=").unwrap();
    chrono::NaiveDateTime::parse_from_str(end, "%Y-%m-%d %H:%M:%SZ")
        .unwrap_or_else(|e| panic!("notAfter {end:?}: {e}"))
        .and_utc()
        .timestamp()
}

/// A server whose certificate is valid for `days` days from now.
pub async fn tls_server(days: u32) -> TlsServer {
    m4watch::tls::init();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let not_after = ca_and_server_cert(d, days);

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(d.join("cert.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(d.join("key.pem")).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A failed handshake (a client that does not trust the CA) ends here.
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.ends_with(b"\n")
                    || (got.starts_with(b"GET ") && !got.ends_with(b"\r\n\r\n"))
                {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let answer: &[u8] = if got.starts_with(b"GET ") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                } else {
                    b"PONG\n"
                };
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    TlsServer {
        addr,
        ca: d.join("ca.pem"),
        not_after,
        _dir: dir,
    }
}
