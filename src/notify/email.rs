//! Email over SMTP (lettre): STARTTLS, implicit TLS or plain, optional auth, a
//! multipart message with plain text and HTML. Each SMTP step is classified on its
//! own: connection, STARTTLS and auth failures are retryable; an address or message
//! the server refuses for good is not.

use std::time::Duration;

use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Mailboxes, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::{AlertState, Ctx, Notification, Reason, SendError};
use crate::config::notify::{EmailConfig, SmtpTls, smarthost};

/// Sends to one SMTP server.
pub struct Email {
    cfg: EmailConfig,
    hello: String,
    timeout: Duration,
}

impl Email {
    pub fn new(cfg: &EmailConfig, ctx: &Ctx) -> Email {
        Email {
            cfg: cfg.clone(),
            hello: cfg.hello.clone().unwrap_or_else(|| ctx.hostname.clone()),
            timeout: ctx.timeout,
        }
    }

    /// What a dry run checks: the message builds (addresses parse); the smarthost
    /// it would be sent through.
    pub fn dry_run(&self, n: &Notification) -> Result<Vec<String>, SendError> {
        message(&self.cfg, n)?;
        let (host, port) = smarthost(&self.cfg.smarthost)
            .ok_or_else(|| SendError::fatal(Reason::Invalid, "smarthost is not host:port"))?;
        Ok(vec![format!("smtp://{host}:{port}")])
    }

    /// One SMTP session, bounded by the delivery timeout as a whole (lettre bounds
    /// only the connect; a server that stops answering must not stall the lane).
    pub async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        tokio::time::timeout(self.timeout, self.session(n))
            .await
            .unwrap_or_else(|_| {
                Err(SendError::retry(
                    Reason::Timeout,
                    format!("SMTP session took longer than {:?}", self.timeout),
                ))
            })
    }

    async fn session(&self, n: &Notification) -> Result<(), SendError> {
        // Parsing every address and rendering the message is CPU work that grows with
        // the recipients and the alerts: off the async workers, so no send stalls the
        // server's other requests.
        let (cfg, owned) = (self.cfg.clone(), n.clone());
        let (envelope, bytes) = tokio::task::spawn_blocking(move || {
            message(&cfg, &owned).map(|m| (m.envelope().clone(), m.formatted()))
        })
        .await
        .map_err(|e| SendError::retry(Reason::Invalid, format!("building the message: {e}")))??;
        let (host, port) = smarthost(&self.cfg.smarthost)
            .ok_or_else(|| SendError::fatal(Reason::Invalid, "smarthost is not host:port"))?;
        let hello = ClientId::Domain(self.hello.clone());
        let tls = || {
            let mut b = TlsParameters::builder(host.clone());
            if let Some(ca) = &self.cfg.ca_file {
                let cert = std::fs::read(ca)
                    .ok()
                    .and_then(|pem| Certificate::from_pem(&pem).ok())
                    .ok_or_else(|| {
                        SendError::fatal(Reason::Tls, format!("cannot load {}", ca.display()))
                    })?;
                b = b.add_root_certificate(cert);
            }
            b.build()
                .map_err(|e| SendError::fatal(Reason::Tls, format!("TLS setup: {e}")))
        };
        // Step 1: connect (TLS from the first byte for SMTPS) and EHLO.
        let implicit = match self.cfg.tls {
            SmtpTls::Tls => Some(tls()?),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (host.as_str(), port),
            Some(self.timeout),
            &hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| {
            let mut err = step_error("connect", &e);
            // lettre reports a failed implicit-TLS handshake as a connection error.
            if self.cfg.tls == SmtpTls::Tls
                && ["SSL", "TLS", "certificate"]
                    .iter()
                    .any(|w| err.message.contains(w))
            {
                err.reason = Reason::Tls;
            }
            err
        })?;
        // Step 2: STARTTLS.
        if self.cfg.tls == SmtpTls::Starttls {
            conn.starttls(tls()?, &hello).await.map_err(|e| {
                let mut err = step_error("starttls", &e);
                err.reason = Reason::Tls;
                err.retryable = true;
                err
            })?;
        }
        // Step 3: AUTH.
        if let (Some(user), Some(pass)) = (&self.cfg.username, &self.cfg.password) {
            let creds = Credentials::new(user.clone(), pass.expose().to_string());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .await
                .map_err(|e| {
                    let mut err = step_error("auth", &e);
                    // A refused login is usually a rotated password or a locked
                    // account: someone can fix it while the outbox keeps the mail.
                    err.reason = Reason::Auth;
                    err.retryable = true;
                    err
                })?;
        }
        // Step 4: MAIL FROM, RCPT TO, DATA.
        let sent = conn.send(&envelope, &bytes).await;
        let _ = conn.quit().await;
        sent.map(|_| ()).map_err(|e| step_error("send", &e))
    }
}

/// Appended to a handshake refused because the server presented a CA certificate.
pub const CA_AS_SERVER_HINT: &str = " (the server presents a CA certificate as its own, as a \
     self-signed one made with `openssl req -x509` is by default; give the server a \
     certificate issued by a CA and put that CA in ca_file)";

/// Classifies one lettre error: permanent SMTP replies (5xx) are fatal, transient
/// ones (4xx), timeouts and I/O are retryable.
fn step_error(step: &str, e: &lettre::transport::smtp::Error) -> SendError {
    let mut text = format!("SMTP {step}: {e}");
    if text.contains("CaUsedAsEndEntity") {
        // rustls refuses what OpenSSL let through: a server certificate that is itself
        // a CA, as `openssl req -x509` makes by default.
        text.push_str(CA_AS_SERVER_HINT);
    }
    if e.is_permanent() {
        SendError::fatal(Reason::Rejected, text)
    } else if e.is_transient() {
        SendError::retry(Reason::ServerError, text)
    } else if e.is_timeout() {
        SendError::retry(Reason::Timeout, text)
    } else if e.is_tls() {
        SendError::retry(Reason::Tls, text)
    } else {
        SendError::retry(Reason::Connection, text)
    }
}

/// The message: subject is [`subject`], one plain and one HTML part.
pub(crate) fn message(cfg: &EmailConfig, n: &Notification) -> Result<Message, SendError> {
    let invalid = |what: &str, v: &str| {
        SendError::fatal(
            Reason::Invalid,
            format!("{what} {v:?} is not an email address"),
        )
    };
    let from: Mailbox = cfg.from.parse().map_err(|_| invalid("from", &cfg.from))?;
    let mut b = Message::builder().from(from).subject(subject(n)).header(
        lettre::message::header::MessageId::from(format!(
            "<{}.{}@m4watch>",
            n.group_key.len(),
            fastrand::u64(..)
        )),
    );
    // One `To` header set once: adding recipients one by one re-parses the header
    // each time, O(n²) in the number of recipients.
    let mut to = Mailboxes::new();
    for t in &cfg.to {
        to.push(t.parse().map_err(|_| invalid("to", t))?);
    }
    // lettre writes an address list on one line, and SMTP servers refuse a line over
    // 1000 octets (RFC 5321): as unstructured text the header is folded between the
    // addresses. The envelope is read back from it.
    if to.iter().next().is_some() {
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("To"),
            to.to_string(),
        ));
    }
    let (text, html) = bodies(n);
    b.multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| SendError::fatal(Reason::Invalid, format!("cannot build the message: {e}")))
}

/// The subject: the title, led by the worst firing severity so a mail client can
/// sort and filter on it (`[EMERGENCY] [FIRING:1] ThermalEmergency`); a resolve is
/// the title alone.
pub(crate) fn subject(n: &Notification) -> String {
    if n.status() == "resolved" {
        n.title()
    } else {
        format!(
            "[{}] {}",
            n.severity().as_str().to_ascii_uppercase(),
            n.title()
        )
    }
}

/// The plain-text and HTML bodies.
pub(crate) fn bodies(n: &Notification) -> (String, String) {
    let mut text = format!("{}\n\n", n.title());
    let mut html = format!("<html><body><h2>{}</h2>\n", escape(&n.title()));
    for a in &n.alerts {
        let no_data = a.no_data_since().map(|t| format!("NO DATA SINCE {t}"));
        let state = match a.state {
            AlertState::Firing => "FIRING",
            AlertState::Resolved => no_data.as_deref().unwrap_or("RESOLVED"),
            AlertState::Acknowledged => "ACKNOWLEDGED",
        };
        text.push_str(&format!("{state}: {}\n", a.summary()));
        html.push_str(&format!("<h3>{state}: {}</h3>\n", escape(&a.summary())));
        if let Some(d) = a.annotations.get("description") {
            text.push_str(&format!("  {d}\n"));
            html.push_str(&format!("<p>{}</p>\n", escape(d)));
        }
        if let Some(v) = a.value {
            text.push_str(&format!("  value: {v}\n"));
            html.push_str(&format!("<p>Value: <b>{v}</b></p>\n"));
        }
        text.push_str(&format!("  since: {}\n", a.starts_at.to_rfc3339()));
        html.push_str("<table>\n");
        for (k, v) in &a.labels {
            text.push_str(&format!("  {k}={v}\n"));
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>\n",
                escape(k),
                escape(v)
            ));
        }
        html.push_str("</table>\n");
        for (name, url) in a.links() {
            text.push_str(&format!("  {name}: {url}\n"));
            html.push_str(&format!("<p><a href=\"{}\">{name}</a></p>\n", escape(&url)));
        }
        text.push('\n');
    }
    html.push_str("</body></html>\n");
    (text, html)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Kind;
    use crate::notify::tests::test_event;

    #[test]
    fn bad_address_is_fatal() {
        let cfg = EmailConfig {
            smarthost: "localhost:25".into(),
            from: "not an address".into(),
            to: vec!["ops@example.com".into()],
            ..Default::default()
        };
        let n = Notification {
            receiver: "mail".into(),
            kind: Kind::Alert,
            group_key: "g".into(),
            group_labels: Default::default(),
            alerts: vec![test_event("A", AlertState::Firing)],
        };
        let e = message(&cfg, &n).unwrap_err();
        assert!(!e.retryable);
        assert_eq!(e.reason, Reason::Invalid);
    }

    /// Issue 25: the most recipients a receiver may name go into one message whose
    /// every line an SMTP server takes (at most 1000 octets), all in the envelope, in
    /// time linear in their number (the header was re-parsed per recipient).
    #[test]
    fn a_hundred_recipients_fold_into_lines_smtp_takes() {
        let to: Vec<String> = (0..crate::config::notify::MAX_EMAIL_RECIPIENTS)
            .map(|i| format!("\"Desk {i}\" <desk.{i}@example.com>"))
            .collect();
        let cfg = EmailConfig {
            smarthost: "localhost:25".into(),
            from: "m4watch@example.com".into(),
            to: to.clone(),
            ..Default::default()
        };
        let n = Notification {
            receiver: "mail".into(),
            kind: Kind::Alert,
            group_key: "g".into(),
            group_labels: Default::default(),
            alerts: vec![test_event("A", AlertState::Firing)],
        };
        let m = message(&cfg, &n).unwrap();
        assert_eq!(m.envelope().to().len(), to.len());
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(
            text.lines().all(|l| l.len() <= 998),
            "a line over 998 octets"
        );
        let header: String = text
            .split("\r\n")
            .skip_while(|l| !l.starts_with("To: "))
            .take_while(|l| l.starts_with("To: ") || l.starts_with(' '))
            .collect();
        assert!(header.contains("desk.99@example.com"), "{header}");
    }

    #[test]
    fn html_is_escaped() {
        let mut a = test_event("A", AlertState::Firing);
        a.annotations
            .insert("description".into(), "<script>x</script>".into());
        let n = Notification {
            receiver: "mail".into(),
            kind: Kind::Alert,
            group_key: "g".into(),
            group_labels: Default::default(),
            alerts: vec![a],
        };
        let (text, html) = bodies(&n);
        assert!(text.contains("<script>x</script>"));
        assert!(html.contains("&lt;script&gt;"));
    }

    #[test]
    fn subject_leads_with_the_worst_firing_severity() {
        let mut warn = test_event("MemoryUsedHigh", AlertState::Firing);
        warn.labels.insert("severity".into(), "warning".into());
        let mut emerg = test_event("ThermalEmergency", AlertState::Firing);
        emerg.labels.insert("severity".into(), "emergency".into());
        let mut n = Notification {
            receiver: "mail".into(),
            kind: Kind::Alert,
            group_key: "g".into(),
            group_labels: Default::default(),
            alerts: vec![warn, emerg],
        };
        assert_eq!(subject(&n), "[EMERGENCY] [FIRING:2] MemoryUsedHigh");
        for a in &mut n.alerts {
            a.state = AlertState::Resolved;
        }
        assert_eq!(subject(&n), "[RESOLVED] MemoryUsedHigh");
        // Issue 29: one of them resolved for lack of data: never headlined a recovery.
        n.alerts[1].annotations.insert(
            "resolved_reason".into(),
            "no data since 2027-01-15T08:00:00Z".into(),
        );
        assert_eq!(subject(&n), "[NO DATA] MemoryUsedHigh");
        let (text, html) = bodies(&n);
        assert!(
            text.contains("NO DATA SINCE 2027-01-15T08:00:00Z: ThermalEmergency is high"),
            "{text}"
        );
        assert!(
            html.contains("NO DATA SINCE 2027-01-15T08:00:00Z"),
            "{html}"
        );
    }
}
