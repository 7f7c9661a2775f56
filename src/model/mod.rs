//! The data model every layer shares: metric families and alerts. Leaves: nothing here
//! imports anything else of the crate.

pub(crate) mod alert;
pub(crate) mod metric;

pub(crate) use metric::{Family, Kind, MetricDef, Sample, def};

/// A label set: `(name, value)` pairs. The one type for every label set of the crate:
/// a metric sample's (in the order written), a ring series' and a rule engine sample's
/// (sorted by name, `__name__` included in the ring), an alert's labels and annotations
/// (sorted by name).
pub(crate) type Labels = Vec<(String, String)>;
