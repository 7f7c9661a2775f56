//! Config value types: secrets that redact themselves, durations, CPU lists, and
//! secret resolution from files and the environment.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret value. Debug, Display and Serialize print `<redacted>`; only
/// [`Secret::expose`] gives the value, at the point of use.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one call that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// In the OpenAPI document a secret is a string (always `<redacted>` in answers).
impl utoipa::PartialSchema for Secret {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <String as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Secret {}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if EXPOSE.with(std::cell::Cell::get) {
            s.serialize_str(&self.0)
        } else {
            s.serialize_str("<redacted>")
        }
    }
}

thread_local! {
    /// Set only inside [`differ_by_value`]: secrets serialise as their values.
    static EXPOSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether `a` and `b` serialise alike with every [`Secret`] in them compared by its
/// value, not by its `<redacted>` rendering (a rotated token is a change). The
/// serialised forms live only inside this call; nothing is written out.
pub(crate) fn differ_by_value<T: Serialize>(a: &T, b: &T) -> bool {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            EXPOSE.with(|e| e.set(false));
        }
    }
    EXPOSE.with(|e| e.set(true));
    let _reset = Reset;
    serde_json::to_value(a).ok() != serde_json::to_value(b).ok()
}

/// A duration written as `1s`, `500ms`, `15m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = parse_duration(&s).map_err(serde::de::Error::custom)?;
        if v > super::ceilings::MAX_ANY_DURATION {
            return Err(serde::de::Error::custom(format!(
                "{} is above the limit of {} of any duration",
                s.trim(),
                Dur(super::ceilings::MAX_ANY_DURATION)
            )));
        }
        Ok(Dur(v))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A regular expression that must match a whole name (`loop\d+` matches `loop0`, not
/// `myloop0`), as Prometheus' relabelling regexes do. Checked while the file is parsed,
/// so a bad one is an error at its line; printed back as written.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    anchored: regex::Regex,
}

/// A [`Pattern`] that does not compile: the pattern as written and the one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, PatternError> {
        let anchored = regex::Regex::new(&format!("^(?:{source})$")).map_err(|e| {
            // The syntax error's last line says what is wrong (`error: unclosed group`);
            // the lines above draw the pattern with a caret, which a one-line error
            // cannot show.
            let e = e.to_string();
            let why = e.lines().rev().find_map(|l| l.strip_prefix("error: "));
            PatternError {
                pattern: source.to_string(),
                reason: why.unwrap_or(e.as_str()).to_string(),
            }
        })?;
        Ok(Pattern {
            source: source.to_string(),
            anchored,
        })
    }

    /// Whether `name` matches as a whole.
    pub fn matches(&self, name: &str) -> bool {
        self.anchored.is_match(name)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Parses `1s`, `500ms`, `2m30s`; a bare number is rejected because its unit would be a
/// guess.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(s.trim()).map_err(|_| DurationError(s.to_string()))
}

/// A duration that [`parse_duration`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: write a number with a unit, like 1s, 500ms or 5m")]
pub struct DurationError(pub String);

/// Reads one environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The shortest interval or timeout m4watch runs a loop, a collector or a request on:
/// shorter ones only spin (a `1ns` interval took 40-83% of a CPU and logged ~850
/// lines a second).
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The shortest interval of what writes to SQLite or evaluates every rule, and of a
/// notification group's flushes.
pub const MIN_SLOW_INTERVAL: Duration = Duration::from_millis(100);

/// Refuses a duration shorter than `min`, naming the key and the minimum.
pub(crate) fn at_least(d: Dur, min: Duration, path: &str) -> Result<(), (String, String)> {
    if d.0 < min {
        Err((
            path.to_string(),
            format!("must be at least {} (got {d})", Dur(min)),
        ))
    } else {
        Ok(())
    }
}

/// Refuses a duration longer than `max`, naming the key and the maximum.
pub(crate) fn at_most(d: Dur, max: Duration, path: &str) -> Result<(), (String, String)> {
    if d.0 > max {
        Err((
            path.to_string(),
            format!("{d} is above the limit of {}", Dur(max)),
        ))
    } else {
        Ok(())
    }
}

/// [`at_least`] [`MIN_INTERVAL`]: every interval and timeout has this lower bound.
pub(crate) fn positive(d: Dur, path: &str) -> Result<(), (String, String)> {
    at_least(d, MIN_INTERVAL, path)
}

/// Resolves a secret from (in order of precedence) the environment, the `*_file`
/// sibling key, or the inline value.
pub(crate) fn resolve_secret(
    inline: Option<Secret>,
    file: Option<&Path>,
    key: &str,
    env_var: &str,
    base: &Path,
    env: EnvLookup<'_>,
) -> Result<Option<Secret>, (String, String)> {
    if inline.is_some() && file.is_some() {
        return Err((
            key.to_string(),
            format!("set either {key} or {key}_file, not both"),
        ));
    }
    if let Some(v) = env(env_var) {
        return Ok(Some(Secret::new(v)));
    }
    if let Some(f) = file {
        let path = base.join(f);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            (
                format!("{key}_file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let value = text.trim_end_matches(['\r', '\n']).to_string();
        if value.is_empty() {
            return Err((
                format!("{key}_file"),
                format!("{} is empty", path.display()),
            ));
        }
        return Ok(Some(Secret::new(value)));
    }
    Ok(inline.filter(|s| !s.0.is_empty()))
}

/// Parses a Linux CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(out);
    }
    let bad = || format!("invalid CPU list {s:?}: write ranges like \"0-3,8-11\"");
    for part in s.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.trim().parse().map_err(|_| bad())?;
                let b: u32 = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
