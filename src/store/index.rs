//! A lookup index over the store's families, for the JSON views and the
//! recommendations: values by name and labels, state sets, unknown (NaN) left out.

use std::collections::BTreeMap;

use crate::store::Family;

/// The store's families by name, for lookups.
pub(crate) struct Families(BTreeMap<String, Family>);

impl Families {
    pub(crate) fn of(families: Vec<Family>) -> Self {
        Families(families.into_iter().map(|f| (f.name.clone(), f)).collect())
    }

    /// `(labels, value)` of every sample of `name`; NaN values (unknown) are left out.
    pub(crate) fn samples<'a>(
        &'a self,
        name: &str,
    ) -> impl Iterator<Item = (&'a [(String, String)], f64)> + 'a {
        self.0
            .get(name)
            .into_iter()
            .flat_map(|f| f.samples.iter())
            .filter(|s| !s.value.is_nan())
            .map(|s| (s.labels.as_slice(), s.value))
    }

    /// The value of the sample of `name` whose labels include every pair of `want`.
    pub(crate) fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .find(|(labels, _)| want.iter().all(|(k, v)| label(labels, k) == Some(*v)))
            .map(|(_, v)| v)
    }

    /// Values of `name` keyed by the value of label `key`.
    pub(crate) fn by_label(&self, name: &str, key: &str) -> BTreeMap<String, f64> {
        self.samples(name)
            .filter_map(|(labels, v)| label(labels, key).map(|l| (l.to_string(), v)))
            .collect()
    }

    /// The label of the state-set sample of `name` that is 1.
    pub(crate) fn state(&self, name: &str, key: &str) -> Option<String> {
        self.samples(name)
            .find(|(_, v)| *v == 1.0)
            .and_then(|(labels, _)| label(labels, key).map(str::to_string))
    }
}

/// The value of label `key` in `labels`, if present.
pub(crate) fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A family from literal samples, for tests.
#[cfg(test)]
pub(crate) fn family(def: &crate::model::MetricDef, samples: &[(&[(&str, &str)], f64)]) -> Family {
    let mut f = Family::new(def);
    for (labels, v) in samples {
        f.push(labels.iter().copied(), *v);
    }
    f
}
