//! The metric model: what a metric family is, independent of where it comes from or
//! goes to. A leaf: it imports nothing of the crate.
//!
//! Each module that exports metrics declares them as typed constants
//! (`pub const CPU_CORES: MetricDef = def(...)`) and builds its families from them
//! ([`Family::new`]); the catalogue at the top of the crate aggregates the definitions.

use super::Labels;

/// One exported metric family's definition.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Shorthand for a [`MetricDef`] constant.
pub(crate) const fn def(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

/// A metric type, as the text exposition format names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// Quantile series plus `_sum` and `_count`, as the exposition format defines.
    Summary,
    Untyped,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Untyped => "untyped",
        }
    }
}

/// One series value. `suffix` is empty except for histogram parts
/// (`_bucket`, `_sum`, `_count`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub suffix: &'static str,
    /// In the order they are written.
    pub labels: Labels,
    pub value: f64,
}

/// A named family of samples with its help text and type.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    /// An empty family named, typed and described by its definition.
    pub fn new(def: &MetricDef) -> Self {
        Family {
            name: def.name.to_string(),
            help: def.help.to_string(),
            kind: def.kind,
            samples: Vec::new(),
        }
    }

    /// Adds a series. Values that are not finite are still written (Prometheus accepts
    /// NaN and ±Inf); a value that is *unknown* must simply not be pushed.
    pub fn push<K: Into<String>, V: Into<String>>(
        &mut self,
        labels: impl IntoIterator<Item = (K, V)>,
        value: f64,
    ) -> &mut Self {
        self.samples.push(Sample {
            suffix: "",
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            value,
        });
        self
    }

    /// Adds one part of a histogram or summary series (`_bucket`, `_sum`, `_count`).
    pub fn push_part(&mut self, suffix: &'static str, labels: Labels, value: f64) -> &mut Self {
        self.samples.push(Sample {
            suffix,
            labels,
            value,
        });
        self
    }

    /// Adds a series with no labels.
    pub fn push_value(&mut self, value: f64) -> &mut Self {
        self.push(std::iter::empty::<(String, String)>(), value)
    }
}
