//! Who this m4watch is to the people and systems it talks to: the labels that name
//! its host on every alert (`external_labels`, as Prometheus's
//! `global.external_labels`), where people reach it (`external_url`) and where its
//! dashboards are (`grafana_url`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The label every alert of a fleet carries unless `external_labels` sets it
/// otherwise: the machine's hostname.
pub const HOST_LABEL: &str = "host";

/// What the notifier and the rule engine need to know of the host they run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Added to every alert m4watch evaluates and to every alert it sends out,
    /// where the alert does not already carry the label. Sorted by name.
    pub external_labels: Vec<(String, String)>,
    /// Where people reach this m4watch, without a trailing slash.
    pub external_url: String,
    /// Grafana's base URL, without a trailing slash; dashboard links need it.
    pub grafana_url: Option<String>,
    /// The rule engine's evaluation interval (an alert forwarded to Alertmanager is
    /// valid for four of these or four resend delays, whichever is longer).
    pub evaluation_interval: Duration,
}

impl Identity {
    /// A host's identity with nothing configured: `host=<hostname>`,
    /// `http://<hostname>:9977`, no Grafana, a 1 s evaluation interval.
    pub fn of_this_host() -> Identity {
        let host = hostname();
        Identity {
            external_labels: vec![(HOST_LABEL.to_string(), host.clone())],
            external_url: format!("http://{host}:{}", super::DEFAULT_LISTEN.port()),
            grafana_url: None,
            evaluation_interval: Duration::from_secs(1),
        }
    }

    /// `labels` with every external label it lacks added (a label the alert carries
    /// wins, as Prometheus applies `external_labels`).
    pub fn label(&self, labels: &mut BTreeMap<String, String>) {
        for (k, v) in &self.external_labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    /// The host an alert is about: its `host` label, else this m4watch's.
    pub fn host_of<'a>(&'a self, labels: &'a BTreeMap<String, String>) -> Option<&'a str> {
        labels
            .get(HOST_LABEL)
            .map(String::as_str)
            .or_else(|| self.external_label(HOST_LABEL))
    }

    /// The value of one external label.
    pub fn external_label(&self, name: &str) -> Option<&str> {
        self.external_labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A link annotation made absolute: a value starting with `/` is relative to
    /// `base` (`runbook_url` to `external_url`, `dashboard_url` to `grafana_url`);
    /// without a base the relative link is dropped (it would lead nowhere). Anything
    /// else is kept as written.
    pub fn resolve(base: Option<&str>, value: &str) -> Option<String> {
        if value.starts_with('/') && !value.starts_with("//") {
            base.map(|b| format!("{b}{value}"))
        } else {
            Some(value.to_string())
        }
    }
}

/// `external_labels` as written, checked, with `host` added unless the map names it
/// (an empty value removes a label, as in Prometheus).
pub(crate) fn external_labels(
    written: Option<&BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, (String, String)> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    out.insert(HOST_LABEL.to_string(), hostname());
    for (k, v) in written.into_iter().flatten() {
        let path = format!("external_labels.{k}");
        if !valid_label_name(k) {
            return Err((
                path,
                "is not a label name: letters, digits and _, not starting with a digit".into(),
            ));
        }
        if k.starts_with("__") {
            return Err((path, "names starting with __ are reserved".into()));
        }
        if k == "alertname" || k == "severity" {
            return Err((
                path,
                "is set by each rule; an external label may not replace it".into(),
            ));
        }
        if v.len() > 1024 {
            return Err((path, "a label value may be at most 1024 bytes".into()));
        }
        if v.is_empty() {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    if out.len() > 32 {
        return Err((
            "external_labels".into(),
            "at most 32 labels; they go on every alert".into(),
        ));
    }
    Ok(out.into_iter().collect())
}

fn valid_label_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A base URL as written (`external_url`, `grafana_url`), checked, without its
/// trailing slash.
pub(crate) fn base_url(u: &str, path: &str) -> Result<String, (String, String)> {
    match reqwest::Url::parse(u) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.query().is_none()
                && url.fragment().is_none()
                && url.username().is_empty()
                && url.password().is_none() =>
        {
            Ok(u.trim_end_matches('/').to_string())
        }
        _ => Err((
            path.to_string(),
            format!(
                "{u:?} is not a base URL: write http(s)://host[:port][/path], without credentials, query or fragment"
            ),
        )),
    }
}

/// Where people reach an m4watch listening on `listen` when `external_url` is not
/// set: the hostname when it listens on every interface, else the address it
/// listens on.
pub(crate) fn default_external_url(listen: SocketAddr) -> String {
    let ip = listen.ip();
    if ip.is_unspecified() {
        format!("http://{}:{}", hostname(), listen.port())
    } else {
        format!("http://{listen}")
    }
}

/// This machine's hostname (`localhost` when it has none).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates
    // within it or fails.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn host_is_there_unless_the_map_says_otherwise() {
        let l = external_labels(None).unwrap();
        assert_eq!(l, vec![("host".to_string(), hostname())]);
        let l = external_labels(Some(&map(&[("desk", "fx"), ("host", "mac-07")]))).unwrap();
        assert_eq!(
            l,
            vec![
                ("desk".to_string(), "fx".to_string()),
                ("host".to_string(), "mac-07".to_string())
            ]
        );
        let l = external_labels(Some(&map(&[("host", ""), ("desk", "fx")]))).unwrap();
        assert_eq!(l, vec![("desk".to_string(), "fx".to_string())]);
    }

    #[test]
    fn bad_label_names_are_refused_by_name() {
        for (k, why) in [
            ("1st", "not a label name"),
            ("a-b", "not a label name"),
            ("__x", "reserved"),
            ("alertname", "set by each rule"),
        ] {
            let (path, reason) = external_labels(Some(&map(&[(k, "v")]))).unwrap_err();
            assert_eq!(path, format!("external_labels.{k}"));
            assert!(reason.contains(why), "{k}: {reason}");
        }
    }

    #[test]
    fn alert_labels_win_over_external_ones() {
        let id = Identity {
            external_labels: vec![
                ("desk".into(), "fx".into()),
                ("host".into(), "mac-01".into()),
            ],
            ..Identity::of_this_host()
        };
        let mut l = map(&[("alertname", "A"), ("host", "prometheus-said")]);
        id.label(&mut l);
        assert_eq!(l["host"], "prometheus-said");
        assert_eq!(l["desk"], "fx");
        assert_eq!(id.host_of(&l), Some("prometheus-said"));
        assert_eq!(id.host_of(&map(&[])), Some("mac-01"));
    }

    #[test]
    fn relative_links_need_a_base() {
        assert_eq!(
            Identity::resolve(Some("http://mac:9977"), "/runbooks#pcorehigh").as_deref(),
            Some("http://mac:9977/runbooks#pcorehigh")
        );
        assert_eq!(Identity::resolve(None, "/d/m4watch-hardware"), None);
        assert_eq!(
            Identity::resolve(None, "https://wiki/x").as_deref(),
            Some("https://wiki/x")
        );
        assert_eq!(
            Identity::resolve(Some("http://a"), "//evil/x").as_deref(),
            Some("//evil/x")
        );
    }

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            base_url("http://grafana:3000/", "grafana_url").unwrap(),
            "http://grafana:3000"
        );
        assert!(base_url("grafana:3000", "grafana_url").is_err());
        assert!(base_url("http://u:p@grafana", "grafana_url").is_err());
        assert!(base_url("http://grafana/?x=1", "grafana_url").is_err());
    }

    #[test]
    fn the_default_url_names_the_host_only_for_a_wildcard_listen() {
        assert_eq!(
            default_external_url("127.0.0.1:9977".parse().unwrap()),
            "http://127.0.0.1:9977"
        );
        assert_eq!(
            default_external_url("0.0.0.0:9977".parse().unwrap()),
            format!("http://{}:9977", hostname())
        );
    }
}
