//! The history writer: every `history.interval` the configured families the store
//! holds are written to the sample database ([`crate::persist::samples`]); latency
//! baselines reach the same database through [`baseline_sink`]. "History" means this
//! SQLite record; the store's short in-memory window is the sample ring.

use std::collections::HashSet;
use std::sync::Arc;

use crate::clock::{every, unix_now_ms};
use crate::config::HistoryConfig;
use crate::persist::samples::{Baseline, Row, SampleDb};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// The rows of `families` (by name) the store holds now; NaN (unknown) is skipped.
pub(crate) fn rows_of(store: &Store, families: &HashSet<String>) -> Vec<Row> {
    let mut out = Vec::new();
    for f in store.families() {
        if !families.contains(&f.name) {
            continue;
        }
        for s in &f.samples {
            if s.value.is_nan() {
                continue;
            }
            out.push(Row {
                name: format!("{}{}", f.name, s.suffix),
                labels: s.labels.iter().cloned().collect(),
                value: s.value,
            });
        }
    }
    out
}

/// Writes the configured families every `history.interval` until shutdown, then
/// flushes what is queued.
pub(crate) fn spawn_sampler(
    store: Arc<Store>,
    db: SampleDb,
    cfg: &HistoryConfig,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let families: Arc<HashSet<String>> = Arc::new(cfg.families.iter().cloned().collect());
    let interval = cfg.interval.get();
    tokio::spawn(async move {
        let writer = db.clone();
        every(interval, shutdown, move || {
            let rows = rows_of(&store, &families);
            if !rows.is_empty() {
                writer.write(unix_now_ms(), rows);
            }
            std::future::ready(())
        })
        .await;
        let _ = tokio::task::spawn_blocking(move || db.flush()).await;
    })
}

/// Where the trading collector hands finished baseline periods: the sample database.
pub(crate) fn baseline_sink(db: SampleDb) -> Box<dyn Fn(Vec<Baseline>) + Send + Sync> {
    Box::new(move |b| db.save_baselines(b))
}
