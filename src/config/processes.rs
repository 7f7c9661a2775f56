//! `processes:` section: the trading processes, selected into named groups.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

/// Most groups one m4watch watches: each is a handful of series, and each costs a
/// pass over its processes every interval.
pub const MAX_PROCESS_GROUPS: usize = 32;
/// Longest selector regex, in bytes of pattern text.
pub const MAX_SELECTOR_LEN: usize = 512;
/// Ceiling of `processes.max_processes`.
pub const MAX_PROCESSES_CEILING: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessesConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub interval: Dur,
    /// procfs root (Linux), so tests can point the collector at a fixture tree.
    #[serde(default = "default_procfs")]
    pub procfs: PathBuf,
    /// Most processes read per group each interval (the lowest pids); the rest are
    /// counted in `m4watch_process_group_processes` but not read.
    pub max_processes: usize,
    /// The watched groups; empty: the collector does not run.
    pub groups: Vec<ProcessGroupConfig>,
}

/// One named group. A process belongs to it when every regex given matches
/// (`process_name` and `cmdline` together narrow), or when its pid is the one in
/// `pid_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessGroupConfig {
    /// The `group` label.
    pub name: String,
    /// Regex on the process name (Linux `comm`, at most 15 characters; macOS
    /// `proc_name`), unanchored: write `^engine$` for an exact name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    /// Regex on the command line, its arguments joined by spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// File holding the pid of the group's one process. A missing or unreadable file
    /// at run time is a group that matches nothing (`m4watch_process_group_up 0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
}

fn default_procfs() -> PathBuf {
    "/proc".into()
}

impl Default for ProcessesConfig {
    fn default() -> Self {
        ProcessesConfig {
            enabled: true,
            interval: Dur(Duration::from_secs(5)),
            procfs: default_procfs(),
            max_processes: 64,
            groups: Vec::new(),
        }
    }
}

/// Why a group's `process_name` or `cmdline` is not a usable selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("regex is {len} bytes long, more than {MAX_SELECTOR_LEN}")]
    TooLong { len: usize },
    /// A syntax error (its one-line reason) or a compiled size over the limit.
    #[error("invalid regex {pattern:?}: {reason}")]
    Invalid { pattern: String, reason: String },
}

/// A selector regex, compiled with bounds on its size.
pub fn selector_regex(pattern: &str) -> Result<regex::Regex, SelectorError> {
    if pattern.len() > MAX_SELECTOR_LEN {
        return Err(SelectorError::TooLong { len: pattern.len() });
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| SelectorError::Invalid {
            pattern: pattern.to_string(),
            reason: match e {
                regex::Error::Syntax(s) => {
                    // The crate's message spans lines (pattern, caret, reason); the last
                    // line is the reason.
                    let reason = s.lines().rfind(|l| l.starts_with("error:")).unwrap_or(&s);
                    reason.trim_start_matches("error: ").to_string()
                }
                other => other.to_string(),
            },
        })
}

impl ProcessesConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let err = |p: String, r: String| Err((p, r));
        positive(self.interval, "processes.interval")?;
        if self.max_processes == 0 || self.max_processes > MAX_PROCESSES_CEILING {
            return err(
                "processes.max_processes".into(),
                format!("must be between 1 and {MAX_PROCESSES_CEILING}"),
            );
        }
        if self.groups.len() > MAX_PROCESS_GROUPS {
            return err(
                "processes.groups".into(),
                format!(
                    "{} groups, more than the {MAX_PROCESS_GROUPS} one m4watch watches",
                    self.groups.len()
                ),
            );
        }
        let mut names = BTreeSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let at = |k: &str| format!("processes.groups[{i}].{k}");
            if g.name.is_empty() {
                return err(at("name"), "a group needs a name (its group label)".into());
            }
            if !names.insert(g.name.as_str()) {
                return err(at("name"), format!("duplicate group name {:?}", g.name));
            }
            let regexes = g.process_name.is_some() || g.cmdline.is_some();
            match (regexes, &g.pid_file) {
                (false, None) => {
                    return err(
                        at("name"),
                        format!(
                            "group {:?} selects nothing: give process_name, cmdline or pid_file",
                            g.name
                        ),
                    );
                }
                (true, Some(_)) => {
                    return err(
                        at("pid_file"),
                        "pid_file names one process: use it without process_name and cmdline"
                            .into(),
                    );
                }
                _ => {}
            }
            for (key, pattern) in [("process_name", &g.process_name), ("cmdline", &g.cmdline)] {
                if let Some(p) = pattern {
                    selector_regex(p).map_err(|r| (at(key), r.to_string()))?;
                }
            }
            if let Some(f) = &g.pid_file
                && !f.is_absolute()
            {
                return err(
                    at("pid_file"),
                    format!("{} is not an absolute path", f.display()),
                );
            }
        }
        Ok(())
    }
}
