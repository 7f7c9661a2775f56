//! Latency measurements started and ended over HTTP (the original
//! `start-latency-measurement` / `end-latency-measurement/{id}` API).
//!
//! The daemon holds the start time, so a client measures with one clock it does not
//! own. A measurement never ended is dropped after a TTL and counted as abandoned, so
//! a crashed client cannot grow the table forever.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a measurement could not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartError {
    #[error("{0} measurements are open already (trading.max_open_measurements)")]
    Full(usize),
}

/// A measurement that has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub operation: String,
    pub labels: BTreeMap<String, String>,
    pub latency: Duration,
}

struct Open {
    operation: String,
    labels: BTreeMap<String, String>,
    started: Instant,
}

/// The open measurements.
pub struct Measurements {
    open: Mutex<HashMap<String, Open>>,
    next: AtomicU64,
    ttl: Duration,
    max: usize,
}

impl Measurements {
    pub fn new(ttl: Duration, max: usize) -> Self {
        // Ids start at a time-derived offset so ids from before a restart do not
        // match new measurements.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Measurements {
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(seed.rotate_left(17)),
            ttl,
            max,
        }
    }

    /// Starts timing `operation` at `now`; returns the id to end it with.
    pub fn start(
        &self,
        operation: String,
        labels: BTreeMap<String, String>,
        now: Instant,
    ) -> Result<String, StartError> {
        let mut open = self.open.lock().expect("measurements lock");
        if open.len() >= self.max {
            return Err(StartError::Full(open.len()));
        }
        let id = format!("{:016x}", self.next.fetch_add(1, Ordering::Relaxed));
        open.insert(
            id.clone(),
            Open {
                operation,
                labels,
                started: now,
            },
        );
        Ok(id)
    }

    /// Ends `id` at `now`; `None` when no such measurement is open (never started,
    /// already ended, or expired).
    pub fn end(&self, id: &str, now: Instant) -> Option<Ended> {
        let m = self.open.lock().expect("measurements lock").remove(id)?;
        Some(Ended {
            operation: m.operation,
            labels: m.labels,
            latency: now.saturating_duration_since(m.started),
        })
    }

    /// Drops measurements older than the TTL; returns how many were abandoned.
    pub fn expire(&self, now: Instant) -> usize {
        let mut open = self.open.lock().expect("measurements lock");
        let before = open.len();
        open.retain(|_, m| now.saturating_duration_since(m.started) < self.ttl);
        before - open.len()
    }

    /// How many are open now.
    pub fn len(&self) -> usize {
        self.open.lock().expect("measurements lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_then_end_measures_the_gap_once() {
        let m = Measurements::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let id = m
            .start("order_execution".into(), BTreeMap::new(), t0)
            .unwrap();
        let e = m.end(&id, t0 + Duration::from_micros(420)).unwrap();
        assert_eq!(e.operation, "order_execution");
        assert_eq!(e.latency, Duration::from_micros(420));
        assert_eq!(m.end(&id, t0), None, "an id ends once");
    }

    #[test]
    fn unended_measurements_expire_as_abandoned() {
        let m = Measurements::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let old = m.start("a".into(), BTreeMap::new(), t0).unwrap();
        let new = m
            .start("a".into(), BTreeMap::new(), t0 + Duration::from_secs(30))
            .unwrap();
        assert_eq!(m.expire(t0 + Duration::from_secs(61)), 1);
        assert!(m.end(&old, t0).is_none());
        assert!(m.end(&new, t0 + Duration::from_secs(62)).is_some());
    }

    #[test]
    fn the_table_is_bounded() {
        let m = Measurements::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        m.start("a".into(), BTreeMap::new(), t0).unwrap();
        m.start("a".into(), BTreeMap::new(), t0).unwrap();
        assert_eq!(
            m.start("a".into(), BTreeMap::new(), t0),
            Err(StartError::Full(2))
        );
    }
}
