//! `--web.config.file`: TLS, basic authentication and response headers for `/metrics`
//! and the whole API, in the format of Prometheus's exporter-toolkit (the file
//! Prometheus's own `scrape_configs` `tls_config` and `basic_auth` are written against):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # or `cert:` inline PEM
//!   key_file: server.key             # or `key:` inline PEM
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt   # or `client_ca:` inline PEM
//!   min_version: TLS12
//! http_server_config:
//!   headers: {Strict-Transport-Security: max-age=31536000}
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt
//! ```
//!
//! Relative paths are relative to the web config file. The file and the certificates
//! it names are read at start-up and again on every reload (SIGHUP, `POST /-/reload`);
//! a bad file at reload is refused with the reason and the running settings stay.
//!
//! What m4watch does not take is refused by name rather than ignored: the client
//! authentication types that accept unverified certificates (`RequestClientCert`,
//! `RequireAnyClientCert`, which the toolkit's own docs call insecure),
//! `client_allowed_sans`, `cipher_suites` and `curve_preferences` (rustls chooses its
//! own safe sets), TLS 1.0/1.1 (rustls has neither) and `rate_limit`.
//! `http_server_config.http2` is accepted and has no effect: m4watch speaks HTTP/1.1.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::AppState;
use super::auth::BasicLogin;
use super::error::ApiError;

/// Why a web config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file (or a certificate or key it names) could not be read.
    #[error("web config {file}: cannot read {what}: {reason}")]
    Read {
        file: String,
        what: String,
        reason: String,
    },
    /// The file is readable but wrong.
    #[error("web config {file}: {reason}")]
    Invalid { file: String, reason: String },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    tls_server_config: Option<TlsFormat>,
    #[serde(default)]
    http_server_config: Option<HttpFormat>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFormat {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFormat {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// The headers the toolkit lets a web config set, with the values it accepts (none:
/// any value).
const HEADERS: &[(&str, &[&str])] = &[
    ("Content-Security-Policy", &[]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-XSS-Protection", &[]),
    ("Strict-Transport-Security", &[]),
];

/// Most `basic_auth_users`; the toolkit's docs point larger setups at client
/// certificates or a proxy.
const MAX_USERS: usize = 64;

/// Settings read from one web config file.
pub(crate) struct Settings {
    /// `None`: plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// Client certificates are verified against a CA (required or when given).
    pub client_certs: bool,
    /// User name to bcrypt hash; empty: no basic auth.
    users: BTreeMap<String, String>,
    /// Added to every response.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A hash of a random password at the users' cost, made on first need: an
    /// unknown user is checked against it, so response time does not tell which
    /// names exist.
    dummy: Arc<std::sync::OnceLock<String>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("tls", &self.tls.is_some())
            .field("client_certs", &self.client_certs)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .finish()
    }
}

impl Settings {
    /// No web config: plain HTTP, no basic auth, no extra headers.
    pub(crate) fn none() -> Settings {
        Settings {
            tls: None,
            client_certs: false,
            users: BTreeMap::new(),
            headers: Vec::new(),
            dummy: Arc::default(),
        }
    }

    /// Whether basic auth is required.
    pub(crate) fn basic_auth(&self) -> bool {
        !self.users.is_empty()
    }
}

/// Reads and checks the web config at `path`, with the certificates and keys it names.
pub(crate) fn load(path: &Path) -> Result<Settings, WebConfigError> {
    let file = path.display().to_string();
    let invalid = |reason: String| WebConfigError::Invalid {
        file: file.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| WebConfigError::Read {
        file: file.clone(),
        what: "the file".into(),
        reason: e.to_string(),
    })?;
    let parsed: FileFormat = if text.trim().is_empty() {
        FileFormat::default()
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?
    };
    if parsed.rate_limit.is_some() {
        return Err(invalid(
            "rate_limit is not supported: api.max_connections bounds the server".into(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let (tls, client_certs) = match parsed.tls_server_config {
        Some(t) => {
            let (acceptor, client_certs) = tls(&t, base, &file)?;
            (Some(acceptor), client_certs)
        }
        None => (None, false),
    };
    let mut headers = Vec::new();
    if let Some(h) = parsed.http_server_config {
        // `http2` changes nothing: m4watch serves HTTP/1.1 (with TLS, over ALPN).
        let _ = h.http2;
        for (name, value) in h.headers.unwrap_or_default() {
            let Some((canonical, allowed)) =
                HEADERS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name))
            else {
                return Err(invalid(format!(
                    "http_server_config.headers: {name:?} is not a header a web config may set (one of {})",
                    HEADERS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if value.is_empty() {
                continue;
            }
            if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value)) {
                return Err(invalid(format!(
                    "http_server_config.headers.{canonical}: {value:?} is not one of {}",
                    allowed.join(", ")
                )));
            }
            let v = HeaderValue::from_str(&value).map_err(|_| {
                invalid(format!(
                    "http_server_config.headers.{canonical}: {value:?} is not a valid header value"
                ))
            })?;
            let name = HeaderName::from_bytes(canonical.as_bytes())
                .expect("the toolkit's headers are valid names");
            headers.push((name, v));
        }
    }
    let users = parsed.basic_auth_users.unwrap_or_default();
    if users.len() > MAX_USERS {
        return Err(invalid(format!(
            "basic_auth_users: {} users, at most {MAX_USERS}",
            users.len()
        )));
    }
    for (user, hash) in &users {
        if user.is_empty() || user.contains(':') {
            return Err(invalid(format!(
                "basic_auth_users: {user:?} is not a user name (empty, or contains ':')"
            )));
        }
        // Parsing the hash checks its form and cost without knowing the password.
        if bcrypt::verify("", hash).is_err() {
            return Err(invalid(format!(
                "basic_auth_users.{user}: not a bcrypt hash (htpasswd -nBC 10 \"\" | tr -d ':\\n' makes one)"
            )));
        }
    }
    Ok(Settings {
        tls,
        client_certs,
        users,
        headers,
        dummy: Arc::default(),
    })
}

/// The TLS acceptor for `t`, and whether it verifies client certificates.
fn tls(t: &TlsFormat, base: &Path, file: &str) -> Result<(TlsAcceptor, bool), WebConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |reason: String| WebConfigError::Invalid {
        file: file.to_string(),
        reason,
    };
    let read = |what: &str, p: &Path| -> Result<Vec<u8>, WebConfigError> {
        let p = base.join(p);
        std::fs::read(&p).map_err(|e| WebConfigError::Read {
            file: file.to_string(),
            what: format!("{what} {}", p.display()),
            reason: e.to_string(),
        })
    };
    let pem = |inline: &Option<String>,
               path: &Option<PathBuf>,
               key: &str|
     -> Result<Option<Vec<u8>>, WebConfigError> {
        match (inline, path) {
            (Some(_), Some(_)) => Err(invalid(format!(
                "tls_server_config: give {key} or {key}_file, not both"
            ))),
            (Some(s), None) => Ok(Some(s.as_bytes().to_vec())),
            (None, Some(p)) => read(&format!("tls_server_config.{key}_file"), p).map(Some),
            (None, None) => Ok(None),
        }
    };
    let refuse = |what: &str, why: &str| Err(invalid(format!("tls_server_config.{what}: {why}")));
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        return refuse(
            "client_allowed_sans",
            "not supported: verify clients with client_ca_file and a CA that signs only them",
        );
    }
    if t.cipher_suites.as_ref().is_some_and(|v| !v.is_empty()) {
        return refuse(
            "cipher_suites",
            "not supported: rustls offers only its own modern suites",
        );
    }
    if t.curve_preferences.as_ref().is_some_and(|v| !v.is_empty()) {
        return refuse(
            "curve_preferences",
            "not supported: rustls offers only its own safe groups",
        );
    }
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    match auth {
        "NoClientCert" | "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {}
        "RequestClientCert" | "RequireAnyClientCert" => {
            return refuse(
                "client_auth_type",
                &format!(
                    "{auth} accepts certificates nobody verified and is not supported: use RequireAndVerifyClientCert with client_ca_file"
                ),
            );
        }
        other => {
            return refuse(
                "client_auth_type",
                &format!(
                    "{other:?} is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                ),
            );
        }
    }
    let cert = pem(&t.cert, &t.cert_file, "cert")?
        .ok_or_else(|| invalid("tls_server_config: cert_file (or cert) is required".into()))?;
    let key = pem(&t.key, &t.key_file, "key")?
        .ok_or_else(|| invalid("tls_server_config: key_file (or key) is required".into()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("tls_server_config.cert_file: {e}")))?;
    if certs.is_empty() {
        return refuse("cert_file", "no PEM certificate in it");
    }
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        invalid(format!(
            "tls_server_config.key_file: no PEM private key: {e}"
        ))
    })?;
    let version = |v: &Option<String>, what: &str, default: &str| -> Result<u8, WebConfigError> {
        match v.as_deref().unwrap_or(default) {
            "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            "TLS10" | "TLS11" => Err(invalid(format!(
                "tls_server_config.{what}: TLS 1.0 and 1.1 are not supported (use TLS12 or TLS13)"
            ))),
            other => Err(invalid(format!(
                "tls_server_config.{what}: {other:?} is not one of TLS12, TLS13"
            ))),
        }
    };
    let min = version(&t.min_version, "min_version", "TLS12")?;
    let max = version(&t.max_version, "max_version", "TLS13")?;
    if min > max {
        return Err(invalid(
            "tls_server_config: min_version is above max_version".into(),
        ));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| invalid(format!("tls_server_config: {e}")))?;
    let client_ca = pem(&t.client_ca, &t.client_ca_file, "client_ca")?;
    let (builder, client_certs) = match auth {
        "NoClientCert" => {
            if client_ca.is_some() {
                return refuse(
                    "client_ca_file",
                    "set, but client_auth_type is NoClientCert: say RequireAndVerifyClientCert (or VerifyClientCertIfGiven)",
                );
            }
            (builder.with_no_client_auth(), false)
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let ca = client_ca.ok_or_else(|| {
                invalid(format!(
                    "tls_server_config.client_ca_file: required with client_auth_type {auth}"
                ))
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca) {
                let c = c.map_err(|e| invalid(format!("tls_server_config.client_ca_file: {e}")))?;
                roots
                    .add(c)
                    .map_err(|e| invalid(format!("tls_server_config.client_ca_file: {e}")))?;
            }
            if roots.is_empty() {
                return refuse("client_ca_file", "no PEM certificate in it");
            }
            let mut v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(&provider),
            );
            if auth == "VerifyClientCertIfGiven" {
                v = v.allow_unauthenticated();
            }
            let v = v
                .build()
                .map_err(|e| invalid(format!("tls_server_config.client_ca_file: {e}")))?;
            (builder.with_client_cert_verifier(v), true)
        }
        _ => unreachable!("client_auth_type checked above"),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(format!(
            "tls_server_config: the certificate and key do not go together: {e}"
        ))
    })?;
    // The toolkit's default: the server's order of suites wins.
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), client_certs))
}

/// bcrypt checks run at once.
const BCRYPT_SLOTS: usize = 2;

/// How many verified logins are remembered, so a scraper does not pay for bcrypt on
/// every request (the toolkit caches the same way).
const CACHE: usize = 64;

/// The web settings in force, swapped whole by a reload, and the logins verified
/// under them.
#[derive(Debug)]
pub(crate) struct Web {
    /// `--web.config.file`; `None`: none given.
    pub path: Option<PathBuf>,
    current: RwLock<Arc<Settings>>,
    /// SHA-256 of (user, password, hash) of logins bcrypt accepted, oldest first.
    verified: Mutex<VecDeque<[u8; 32]>>,
    /// bcrypt runs at once: a client guessing passwords cannot take every blocking
    /// thread (SQLite and file reads use them too).
    bcrypt_slots: tokio::sync::Semaphore,
}

impl Web {
    /// Reads the web config at `path` (none: plain HTTP).
    pub(crate) fn load(path: Option<PathBuf>) -> Result<Web, WebConfigError> {
        let settings = match &path {
            Some(p) => load(p)?,
            None => Settings::none(),
        };
        Ok(Web {
            path,
            current: RwLock::new(Arc::new(settings)),
            verified: Mutex::new(VecDeque::new()),
            bcrypt_slots: tokio::sync::Semaphore::new(BCRYPT_SLOTS),
        })
    }

    /// The settings now.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads the file and its certificates; on error the running settings stay.
    /// False when there is no file.
    pub(crate) fn reload(&self) -> Result<bool, WebConfigError> {
        let Some(p) = &self.path else {
            return Ok(false);
        };
        let next = load(p)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(true)
    }

    /// Whether `user`:`password` is a login of `settings`. Unknown users cost a bcrypt
    /// run too, so response time does not tell which names exist.
    async fn verify(&self, settings: &Settings, user: &str, password: &str) -> bool {
        let hash = settings.users.get(user);
        let key = {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            for part in [user, password, hash.map_or("", String::as_str)] {
                ctx.update(&(part.len() as u64).to_le_bytes());
                ctx.update(part.as_bytes());
            }
            let mut k = [0u8; 32];
            k.copy_from_slice(ctx.finish().as_ref());
            k
        };
        if hash.is_some()
            && self
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key)
        {
            return true;
        }
        let (password, hash) = (password.to_string(), hash.cloned());
        let known = hash.is_some();
        let dummy = Arc::clone(&settings.dummy);
        // The cost of the file's hashes (`$2y$10$...`), for the stand-in.
        let cost = settings
            .users
            .values()
            .next()
            .and_then(|h| h.get(4..6)?.parse::<u32>().ok())
            .unwrap_or(bcrypt::DEFAULT_COST);
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(|| {
                dummy
                    .get_or_init(|| {
                        let random = format!("{:x}{:x}", fastrand::u128(..), fastrand::u128(..));
                        bcrypt::hash(random, cost).unwrap_or_default()
                    })
                    .clone()
            });
            bcrypt::verify(password, &hash)
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false)
            && known;
        if ok {
            let mut v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() >= CACHE {
                v.pop_front();
            }
            v.push_back(key);
        }
        ok
    }
}

/// The `user:password` of a `Basic` authorization header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Paths open without a login even when `basic_auth_users` is set: the liveness and
/// readiness probes (an orchestrator's health check, the image's `HEALTHCHECK`); they
/// say nothing but "up".
const OPEN: &[&str] = &["/-/healthy", "/-/ready"];

/// Middleware in front of every route: with `basic_auth_users` set, a request needs a
/// login of the file, or a bearer token in force (`api.token`, `api.read_token`: what
/// the API's clients already send); then the web config's headers go on the answer.
pub(crate) async fn gate(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let settings = s.web.settings();
    if settings.basic_auth() && !OPEN.contains(&req.uri().path()) {
        let login = match basic(req.headers()) {
            Some((u, p)) => s.web.verify(&settings, &u, &p).await,
            None => false,
        };
        if login {
            req.extensions_mut().insert(BasicLogin);
        } else if !s.access.any_bearer(req.headers()) {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this m4watch needs a basic auth login (basic_auth_users) or a bearer token",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"m4watch\""),
            );
            add_headers(&settings, &mut resp);
            return resp;
        }
    }
    let mut resp = next.run(req).await;
    add_headers(&settings, &mut resp);
    resp
}

fn add_headers(settings: &Settings, resp: &mut Response) {
    for (k, v) in &settings.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
}

/// What start-up and `check-config` warn about: an HTTP listener on every interface
/// with neither TLS nor a login, and a StatsD listener on every interface that takes
/// datagrams from anywhere.
pub(crate) fn exposure_warnings(config: &crate::config::Config, web: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if config.listen.ip().is_unspecified() && (web.tls.is_none() || !web.basic_auth()) {
        let missing = match (web.tls.is_some(), web.basic_auth()) {
            (false, false) => "neither TLS nor basic auth",
            (false, true) => "no TLS (basic auth passwords travel in the clear)",
            _ => "no basic auth (anyone who reaches it can read it)",
        };
        out.push(format!(
            "listen {} serves /metrics and the API on every interface with {missing}: bind 127.0.0.1, or give --web.config.file with tls_server_config and basic_auth_users",
            config.listen
        ));
    }
    if let Some(addr) = config.trading.statsd_listen
        && addr.ip().is_unspecified()
        && config
            .trading
            .statsd_allow
            .iter()
            .any(|n| n.prefix_len() == 0)
    {
        out.push(format!(
            "trading.statsd_listen {addr} takes StatsD datagrams from any address (trading.statsd_allow has a /0): anyone on the network can move the score"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "web.yml", text);
        load(&p)
            .unwrap_err()
            .to_string()
            .replace(&format!("{}/", dir.path().display()), "")
    }

    #[test]
    fn an_empty_file_is_plain_http() {
        let dir = tempfile::tempdir().unwrap();
        let s = load(&write(dir.path(), "web.yml", "")).unwrap();
        assert!(s.tls.is_none() && !s.basic_auth() && s.headers.is_empty());
    }

    #[test]
    fn bad_files_are_refused_with_the_key_and_the_reason() {
        assert!(error("nonsense: 1\n").starts_with("web config web.yml: unknown field `nonsense`"));
        assert_eq!(
            error("basic_auth_users: {alice: plain}\n"),
            "web config web.yml: basic_auth_users.alice: not a bcrypt hash (htpasswd -nBC 10 \"\" | tr -d ':\\n' makes one)"
        );
        assert_eq!(
            error("http_server_config: {headers: {Server: x}}\n"),
            "web config web.yml: http_server_config.headers: \"Server\" is not a header a web config may set (one of Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, Strict-Transport-Security)"
        );
        assert_eq!(
            error("http_server_config: {headers: {X-Frame-Options: allow}}\n"),
            "web config web.yml: http_server_config.headers.X-Frame-Options: \"allow\" is not one of deny, sameorigin"
        );
        assert_eq!(
            error("tls_server_config: {key_file: k.pem}\n"),
            "web config web.yml: tls_server_config: cert_file (or cert) is required"
        );
        assert_eq!(
            error("tls_server_config: {cert_file: missing.pem, key_file: k.pem}\n"),
            "web config web.yml: cannot read tls_server_config.cert_file missing.pem: No such file or directory (os error 2)"
        );
        assert!(
            error("tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert}\n")
                .contains("RequireAnyClientCert accepts certificates nobody verified")
        );
        assert!(
            error("rate_limit: {interval: 1s, burst: 2}\n").contains("rate_limit is not supported")
        );
    }

    #[tokio::test]
    async fn logins_check_the_bcrypt_hash() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  prom: '{hash}'\n"),
        );
        let web = Web::load(Some(p)).unwrap();
        let s = web.settings();
        assert!(web.verify(&s, "prom", "s3cret").await);
        // Cached, still right.
        assert!(web.verify(&s, "prom", "s3cret").await);
        assert!(!web.verify(&s, "prom", "wrong").await);
        assert!(!web.verify(&s, "nobody", "s3cret").await);
        assert!(!web.verify(&s, "nobody", "").await);
    }
}
