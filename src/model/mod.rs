//! The data model every layer shares: metric families and alerts. Leaves: nothing here
//! imports anything else of the crate.

pub mod alert;
pub mod metric;

pub use metric::{Family, Kind, Labels, MetricDef, Sample, def};
