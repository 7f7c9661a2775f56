//! Hardware and container samples, and trading latency baselines, in
//! `data_dir/history.db`.
//!
//! A file apart from `m4watch.db` (alert state, outbox): samples are written every
//! interval and pruned in bulk, and a 30-day history can grow to hundreds of MB;
//! keeping them apart means alert-state writes never queue behind a prune, and a
//! damaged history file can be moved aside without losing alert state. Opening,
//! migrations and start-up errors are the same code as the alert database
//! ([`super::open_sqlite`]).
//!
//! Layout: a `series` table (name + labels as canonical JSON) and a `samples` table
//! keyed `(series_id, t)` `WITHOUT ROWID`, so a sample costs its three values and a
//! range query or a per-series prune is a primary-key range scan. One thread owns
//! the write connection (commands over a channel, batched in a transaction); reads
//! use their own connection (waiting out a commit in progress, as the rollback
//! journal makes them) and are called under `spawn_blocking`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::storage::{Storage, StorageFault};
use super::{DbError, open_sqlite};
use crate::clock::unix_now_ms as now_ms;

const MIGRATIONS: &[&str] = &["
CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    UNIQUE (name, labels)
);
CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    t INTEGER NOT NULL,
    v REAL NOT NULL,
    PRIMARY KEY (series_id, t)
) WITHOUT ROWID;
CREATE TABLE baselines (
    period_start INTEGER NOT NULL,
    operation TEXT NOT NULL,
    labels TEXT NOT NULL,
    quantile TEXT NOT NULL,
    seconds REAL NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (period_start, operation, labels, quantile)
) WITHOUT ROWID;
"];

/// One value to store: family, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One stored baseline value.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Start of the period, Unix milliseconds.
    pub period_start: i64,
    pub operation: String,
    pub labels: BTreeMap<String, String>,
    /// `0.5` or `0.95`.
    pub quantile: String,
    pub seconds: f64,
    /// Observations in the period.
    pub count: u64,
}

/// How the samples of one step are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Aggregation {
    /// Gauges: the mean of the step's samples (for a state set, the share of the
    /// step spent in the state).
    Mean,
    /// Counters: the last sample of the step, so rates stay computable.
    Last,
}

/// The aggregation a family gets: counters keep their last value, gauges average.
pub(crate) fn aggregation_of(name: &str) -> Aggregation {
    if name.ends_with("_total") {
        Aggregation::Last
    } else {
        Aggregation::Mean
    }
}

/// One series of a query answer; `points` are `(bucket start ms, value)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesOut {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub aggregation: Aggregation,
    pub points: Vec<(i64, f64)>,
}

enum Cmd {
    Write(i64, Vec<Row>),
    Baselines(Vec<Baseline>),
    Flush(mpsc::Sender<()>),
}

/// Handle to the history database; cheap to clone.
#[derive(Clone)]
pub(crate) struct SampleDb {
    tx: mpsc::Sender<Cmd>,
    read: Arc<Mutex<Connection>>,
}

fn labels_key(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

impl SampleDb {
    /// Opens (creating and migrating) `data_dir/history.db`, prunes what is past
    /// `retention`, and starts the writer thread. Blocking.
    #[cfg(test)]
    pub(crate) fn open(data_dir: &Path, retention: Duration) -> Result<SampleDb, DbError> {
        SampleDb::open_with(data_dir, retention, None)
    }

    /// [`SampleDb::open`], reporting each commit's outcome to `storage`.
    pub(crate) fn open_with(
        data_dir: &Path,
        retention: Duration,
        storage: Option<Storage>,
    ) -> Result<SampleDb, DbError> {
        let path = data_dir.join("history.db");
        let write = open_sqlite(&path, MIGRATIONS)?;
        let read = open_sqlite(&path, MIGRATIONS)?;
        let retention_ms = retention.as_millis() as i64;
        prune(&write, now_ms() - retention_ms).map_err(|source| DbError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        let (tx, rx) = mpsc::channel();
        let name = path.display().to_string();
        std::thread::Builder::new()
            .name("m4watch-samples".into())
            .spawn(move || writer(write, rx, name, retention_ms, storage))
            .map_err(|e| DbError::Dir(data_dir.display().to_string(), e))?;
        Ok(SampleDb {
            tx,
            read: Arc::new(Mutex::new(read)),
        })
    }

    /// Queues `rows` sampled at `t_ms`; never blocks.
    pub(crate) fn write(&self, t_ms: i64, rows: Vec<Row>) {
        let _ = self.tx.send(Cmd::Write(t_ms, rows));
    }

    /// Queues baselines (replacing any of the same period, operation and quantile).
    pub(crate) fn save_baselines(&self, b: Vec<Baseline>) {
        let _ = self.tx.send(Cmd::Baselines(b));
    }

    /// Waits until everything queued so far is written. Blocking.
    pub(crate) fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Cmd::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Series of the families `names` with samples in `[from_ms, to_ms]`, one point
    /// per `step_ms` bucket (aligned to multiples of the step). Blocking.
    pub(crate) fn query(
        &self,
        names: &[String],
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> rusqlite::Result<Vec<SeriesOut>> {
        let conn = self.read.lock().expect("history read connection");
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut series = Vec::new();
        {
            let mut stmt = conn.prepare_cached("SELECT id, name, labels FROM series")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for r in rows {
                let (id, name, labels) = r?;
                if wanted.contains(name.as_str()) {
                    series.push((id, name, labels));
                }
            }
        }
        // SQLite returns the bare column `v` from the row holding MAX(t): the last
        // sample of the bucket.
        let mut stmt = conn.prepare_cached(
            "SELECT (t / ?4) * ?4 AS b, AVG(v), v, MAX(t) FROM samples
             WHERE series_id = ?1 AND t >= ?2 AND t <= ?3 GROUP BY b ORDER BY b",
        )?;
        let mut out = Vec::new();
        for (id, name, labels) in series {
            let agg = aggregation_of(&name);
            let points = stmt
                .query_map(params![id, from_ms, to_ms, step_ms.max(1)], |r| {
                    let b: i64 = r.get(0)?;
                    let v: f64 = match agg {
                        Aggregation::Mean => r.get(1)?,
                        Aggregation::Last => r.get(2)?,
                    };
                    Ok((b, v))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if points.is_empty() {
                continue;
            }
            out.push(SeriesOut {
                name,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
                aggregation: agg,
                points,
            });
        }
        out.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        Ok(out)
    }

    /// Stored samples in all (for tests and the size estimate). Blocking.
    #[cfg(test)]
    pub(crate) fn sample_count(&self) -> rusqlite::Result<i64> {
        self.read
            .lock()
            .expect("history read connection")
            .query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0))
    }

    /// Every stored baseline with `period_start >= since_ms`, oldest first. Blocking.
    pub(crate) fn baselines(&self, since_ms: i64) -> rusqlite::Result<Vec<Baseline>> {
        let conn = self.read.lock().expect("history read connection");
        let mut stmt = conn.prepare_cached(
            "SELECT period_start, operation, labels, quantile, seconds, count FROM baselines
             WHERE period_start >= ?1 ORDER BY period_start",
        )?;
        stmt.query_map(params![since_ms], |r| {
            let labels: String = r.get(2)?;
            Ok(Baseline {
                period_start: r.get(0)?,
                operation: r.get(1)?,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
                quantile: r.get(3)?,
                seconds: r.get(4)?,
                count: r.get::<_, i64>(5)? as u64,
            })
        })?
        .collect()
    }
}

/// Deletes samples and baselines older than `before_ms`, series by series (a
/// primary-key range each, no index on `t` needed).
fn prune(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM series")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut deleted = 0;
    let mut stmt = conn.prepare("DELETE FROM samples WHERE series_id = ?1 AND t < ?2")?;
    for id in ids {
        deleted += stmt.execute(params![id, before_ms])?;
    }
    conn.execute(
        "DELETE FROM baselines WHERE period_start < ?1",
        params![before_ms],
    )?;
    Ok(deleted)
}

fn series_id(
    tx: &rusqlite::Transaction<'_>,
    cache: &mut HashMap<(String, String), i64>,
    name: &str,
    labels: String,
) -> rusqlite::Result<i64> {
    let key = (name.to_string(), labels);
    if let Some(id) = cache.get(&key) {
        return Ok(*id);
    }
    tx.execute(
        "INSERT OR IGNORE INTO series (name, labels) VALUES (?1, ?2)",
        params![key.0, key.1],
    )?;
    let id: i64 = tx
        .query_row(
            "SELECT id FROM series WHERE name = ?1 AND labels = ?2",
            params![key.0, key.1],
            |r| r.get(0),
        )
        .optional()?
        .expect("the series row was just inserted");
    cache.insert(key, id);
    Ok(id)
}

fn writer(
    mut conn: Connection,
    rx: mpsc::Receiver<Cmd>,
    path: String,
    retention_ms: i64,
    storage: Option<Storage>,
) {
    let mut cache = HashMap::new();
    let mut pruned = Instant::now();
    // Prune at least hourly, and as often as the retention when it is shorter.
    let prune_every = Duration::from_millis(retention_ms.clamp(1, 3_600_000) as u64);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let mut waiting = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO samples (series_id, t, v) VALUES (?1, ?2, ?3)",
                )?;
                let mut base = tx.prepare_cached(
                    "INSERT OR REPLACE INTO baselines
                     (period_start, operation, labels, quantile, seconds, count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for cmd in batch {
                    match cmd {
                        Cmd::Write(t, rows) => {
                            for r in rows {
                                let id =
                                    series_id(&tx, &mut cache, &r.name, labels_key(&r.labels))?;
                                insert.execute(params![id, t, r.value])?;
                            }
                        }
                        Cmd::Baselines(bs) => {
                            for b in bs {
                                base.execute(params![
                                    b.period_start,
                                    b.operation,
                                    labels_key(&b.labels),
                                    b.quantile,
                                    b.seconds,
                                    b.count as i64
                                ])?;
                            }
                        }
                        Cmd::Flush(done) => waiting.push(done),
                    }
                }
            }
            tx.commit()
        })();
        if let Err(e) = &result {
            tracing::error!(db = %path, error = %e, "cannot write history samples");
            // Series ids made in the rolled-back transaction are gone with it.
            cache.clear();
        }
        if let Some(st) = &storage {
            st.report(
                "history",
                result.map_err(|e| StorageFault::of_sqlite(&conn, &path, &e)),
            );
        }
        if pruned.elapsed() >= prune_every {
            pruned = Instant::now();
            match prune(&conn, now_ms() - retention_ms) {
                Ok(n) => tracing::debug!(db = %path, deleted = n, "pruned history"),
                Err(e) => tracing::warn!(db = %path, error = %e, "cannot prune history"),
            }
        }
        for w in waiting {
            let _ = w.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, cpu: &str, v: f64) -> Row {
        Row {
            name: name.into(),
            labels: [("cpu".to_string(), cpu.to_string())].into(),
            value: v,
        }
    }

    #[test]
    fn steps_average_gauges_and_keep_the_last_counter_value() {
        let dir = tempfile::tempdir().unwrap();
        let db = SampleDb::open(dir.path(), Duration::from_secs(86400 * 365 * 100)).unwrap();
        // Two buckets of 10 s: t = 1000..19000 ms.
        for (t, g, c) in [(1_000, 0.2, 5.0), (6_000, 0.4, 7.0), (12_000, 0.9, 8.0)] {
            db.write(
                t,
                vec![
                    row("m4watch_cpu_utilization_ratio", "0", g),
                    row("m4watch_container_cpu_usage_seconds_total", "0", c),
                ],
            );
        }
        db.flush();
        let names = vec![
            "m4watch_cpu_utilization_ratio".to_string(),
            "m4watch_container_cpu_usage_seconds_total".to_string(),
        ];
        let out = db.query(&names, 0, 20_000, 10_000).unwrap();
        assert_eq!(out.len(), 2);
        let counter = &out[0];
        assert_eq!(counter.aggregation, Aggregation::Last);
        assert_eq!(counter.points, vec![(0, 7.0), (10_000, 8.0)]);
        let gauge = &out[1];
        assert_eq!(gauge.aggregation, Aggregation::Mean);
        assert_eq!(gauge.points.len(), 2);
        assert!((gauge.points[0].1 - 0.3).abs() < 1e-12);
        assert_eq!(gauge.points[1], (10_000, 0.9));
        // The range bounds are inclusive and exclude what is outside.
        let late = db.query(&names, 7_000, 20_000, 10_000).unwrap();
        assert_eq!(late[1].points, vec![(10_000, 0.9)]);
        // Unrequested families are not returned.
        assert!(db.query(&names[..1], 0, 20_000, 1).unwrap().len() == 1);
    }

    #[test]
    fn prune_removes_what_is_past_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let db = SampleDb::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let now = now_ms();
        db.write(
            now - 7_200_000,
            vec![row("m4watch_cpu_utilization_ratio", "0", 1.0)],
        );
        db.write(now, vec![row("m4watch_cpu_utilization_ratio", "0", 2.0)]);
        db.flush();
        assert_eq!(db.sample_count().unwrap(), 2);
        drop(db);
        // Opening prunes.
        let db = SampleDb::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert_eq!(db.sample_count().unwrap(), 1);
    }
}
