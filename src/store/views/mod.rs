//! The typed read path: what a consumer needs from a source that no series carries (a
//! probe's error text, a container's cpuset, the trading windows' statistics), as plain
//! types in typed slots. A source publishes its view after every run; the JSON API and
//! the recommendations read it here, never from the source itself.

use std::sync::{Arc, RwLock};

pub(crate) mod containers;
mod probes;
pub(crate) mod trading;

pub(crate) use probes::ProbeResult;

/// The latest value of one view: `None` until its source has published one, and again
/// after a run that could not produce one (unknown is absent).
pub struct Slot<T>(RwLock<Option<Arc<T>>>);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(RwLock::new(None))
    }
}

impl<T> Slot<T> {
    /// Replaces the view (`None` removes it).
    pub fn set(&self, view: Option<Arc<T>>) {
        *self.0.write().expect("view lock") = view;
    }

    /// The latest view, if any.
    pub fn get(&self) -> Option<Arc<T>> {
        self.0.read().expect("view lock").clone()
    }
}

/// Every typed view the store holds, one slot per kind.
#[derive(Default)]
pub struct Views {
    /// The probe collector's last round.
    pub probes: Slot<Vec<ProbeResult>>,
    /// The container collector's last successful cycle; absent after a failed one.
    pub containers: Slot<containers::Report>,
    /// The trading collector's last run (an empty view until then); absent when
    /// trading is off.
    pub trading: Slot<trading::View>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_holds_the_latest_view_and_none_removes_it() {
        let views = Views::default();
        assert!(views.probes.get().is_none(), "absent before a publish");
        let round = |target: &str| {
            Arc::new(vec![ProbeResult {
                target: target.into(),
                success: true,
                duration_seconds: 0.01,
                http_status_code: Some(200),
                error: None,
            }])
        };
        views.probes.set(Some(round("risk")));
        views.probes.set(Some(round("ml")));
        assert_eq!(views.probes.get().unwrap()[0].target, "ml");
        views.probes.set(None);
        assert!(views.probes.get().is_none());
    }
}
