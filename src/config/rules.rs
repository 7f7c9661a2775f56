//! `rules:` section.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

/// The rule engine (issue 4). Every key is optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Rule files in Prometheus format; a `*` in the file name is a glob. Relative
    /// paths are relative to the working directory. Empty: the shipped
    /// `alert-rules/*.rules.yml`, embedded in the binary.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    pub evaluation_interval: Dur,
    /// Longest range selector a rule may use; the sample ring keeps this much history
    /// (and at least the 5m look-back of instant selectors).
    pub max_range: Dur,
    /// How long resolved alerts stay listed in the API.
    pub resolved_retention: Dur,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            enabled: true,
            files: Vec::new(),
            evaluation_interval: Dur(Duration::from_secs(1)),
            max_range: Dur(Duration::from_secs(15 * 60)),
            resolved_retention: Dur(Duration::from_secs(3600)),
        }
    }
}
