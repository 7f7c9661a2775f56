//! The alert database (`data_dir/m4watch.db`): alert state, alert transitions and
//! silences, so alerts survive restarts.
//!
//! One dedicated thread owns the connection; callers send commands over a channel and
//! never block an async worker. Opening (migrations and the initial load) is blocking
//! and is run under `spawn_blocking`. A rollback journal without memory mapping
//! ([`super::open_sqlite`]); the schema version is `PRAGMA user_version` and
//! migrations run in order. A batch that cannot commit is kept (bounded) and tried
//! again, and each outcome goes to the storage verdict ([`super::storage`]).

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{Connection, params};

use super::storage::{Storage, StorageFault};
use super::{DbError, open_main, probe_write};
use crate::clock::unix_now_ms as now_ms;
use crate::model::alert::{
    Ack, AlertSource, MatcherSpec, Severity, Silence, State, StoredAlert, Transition,
};

/// How long alert transitions are kept.
pub(crate) const TRANSITION_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// Deletes transitions older than [`TRANSITION_RETENTION_MS`] before `now` (ms).
fn prune(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM alert_transitions WHERE at < ?1",
        params![now - TRANSITION_RETENTION_MS],
    )
}

enum Cmd {
    SaveAlert(Box<StoredAlert>),
    DeleteAlert(String),
    Transition(Box<Transition>),
    SaveSilence(Silence),
    DeleteSilence(String),
    /// Answers whether everything sent before it is committed.
    Flush(mpsc::Sender<Result<(), StorageFault>>),
}

/// Handle to the database thread. Cloning shares the thread.
#[derive(Clone)]
pub(crate) struct History {
    tx: mpsc::Sender<Cmd>,
}

/// What the database held at startup.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub alerts: Vec<StoredAlert>,
    pub silences: Vec<Silence>,
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> DbError + '_ {
    move |source| DbError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// Opens (creating and migrating) the database, loads the saved state, and starts the
/// writer thread. Blocking.
#[cfg(test)]
pub(crate) fn open(data_dir: &Path) -> Result<(History, Loaded), DbError> {
    open_with(data_dir, Storage::unlocked(data_dir))
}

/// [`open`], reporting each commit's outcome to `storage`.
pub(crate) fn open_with(data_dir: &Path, storage: Storage) -> Result<(History, Loaded), DbError> {
    let path: PathBuf = data_dir.join("m4watch.db");
    let err = sql(&path);
    let conn = open_main(&path)?;
    prune(&conn, now_ms()).map_err(&err)?;
    let loaded = load(&conn).map_err(&err)?;
    let (tx, rx) = mpsc::channel();
    let name = path.display().to_string();
    std::thread::Builder::new()
        .name("m4watch-history".into())
        .spawn(move || writer(conn, rx, name, storage))
        .map_err(|e| DbError::Dir(data_dir.display().to_string(), e))?;
    Ok((History { tx }, loaded))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn load(conn: &Connection) -> rusqlite::Result<Loaded> {
    let mut out = Loaded::default();
    let mut stmt = conn.prepare(
        "SELECT id, alertname, grp, severity, state, labels, annotations, value, active_at,
                fired_at, resolved_at, ack_by, ack_comment, ack_at, source, expires_at,
                generator_url FROM alerts",
    )?;
    let rows = stmt.query_map([], |r| {
        let labels: String = r.get(5)?;
        let annotations: String = r.get(6)?;
        let state: String = r.get(4)?;
        let ack_by: Option<String> = r.get(11)?;
        let severity: String = r.get(3)?;
        let source: String = r.get(14)?;
        Ok(StoredAlert {
            // Only the two words are ever written (the column defaults to m4watch).
            source: AlertSource::parse(&source).unwrap_or(AlertSource::Rules),
            expires_at: r.get(15)?,
            generator_url: r.get(16)?,
            id: r.get(0)?,
            alertname: r.get(1)?,
            group: r.get(2)?,
            // Written as the model's word; a row of a release that kept the label as
            // written reads as the severity it was treated as.
            severity: Severity::of_label(Some(&severity)),
            state: State::parse(&state).unwrap_or(State::Resolved),
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            annotations: serde_json::from_str(&annotations).unwrap_or_default(),
            value: r.get::<_, Option<f64>>(7)?.unwrap_or(f64::NAN),
            active_at: r.get(8)?,
            fired_at: r.get(9)?,
            resolved_at: r.get(10)?,
            ack: match ack_by {
                Some(by) => Some(Ack {
                    by,
                    comment: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
                    at: r.get::<_, Option<i64>>(13)?.unwrap_or(0),
                }),
                None => None,
            },
        })
    })?;
    for r in rows {
        out.alerts.push(r?);
    }
    let mut stmt = conn.prepare(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment, updated_at FROM silences",
    )?;
    let rows = stmt.query_map([], |r| {
        let id: String = r.get(0)?;
        let m: String = r.get(1)?;
        // A stored silence whose matchers no longer parse is dropped, never widened
        // into one that silences everything.
        let matchers: Result<Vec<_>, String> = serde_json::from_str::<Vec<MatcherSpec>>(&m)
            .map_err(|e| e.to_string())
            .and_then(|specs| {
                specs
                    .iter()
                    .map(|m| m.compile().map_err(|e| e.to_string()))
                    .collect()
            });
        let matchers = match matchers {
            Ok(ms) if !ms.is_empty() => ms,
            Ok(_) => {
                tracing::warn!(silence = %id, "stored silence has no matchers; ignored");
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(silence = %id, error = %e, "stored silence unreadable; ignored");
                return Ok(None);
            }
        };
        let starts_at: i64 = r.get(2)?;
        Ok(Some(Silence {
            id,
            matchers,
            starts_at,
            ends_at: r.get(3)?,
            updated_at: r.get::<_, Option<i64>>(6)?.unwrap_or(starts_at),
            created_by: r.get(4)?,
            comment: r.get(5)?,
        }))
    })?;
    for r in rows {
        out.silences.extend(r?);
    }
    Ok(out)
}

fn apply(tx: &rusqlite::Transaction<'_>, cmd: &Cmd) -> rusqlite::Result<()> {
    match cmd {
        Cmd::SaveAlert(a) => {
            tx.execute(
                "INSERT OR REPLACE INTO alerts (id, alertname, grp, severity, state, labels,
                    annotations, value, active_at, fired_at, resolved_at, ack_by, ack_comment, ack_at,
                    source, expires_at, generator_url)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                params![
                    a.id,
                    a.alertname,
                    a.group,
                    a.severity.as_str(),
                    a.state.as_str(),
                    json(&a.labels),
                    json(&a.annotations),
                    a.value,
                    a.active_at,
                    a.fired_at,
                    a.resolved_at,
                    a.ack.as_ref().map(|k| k.by.clone()),
                    a.ack.as_ref().map(|k| k.comment.clone()),
                    a.ack.as_ref().map(|k| k.at),
                    a.source.as_str(),
                    a.expires_at,
                    a.generator_url,
                ],
            )?;
        }
        Cmd::DeleteAlert(id) => {
            tx.execute("DELETE FROM alerts WHERE id = ?1", params![id])?;
        }
        Cmd::Transition(t) => {
            tx.execute(
                "INSERT INTO alert_transitions (alert_id, alertname, severity, from_state, to_state,
                    at, labels, annotations, value, acknowledged, silenced, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    t.id,
                    t.alertname,
                    t.severity.as_str(),
                    t.from.as_str(),
                    t.to.as_str(),
                    t.at,
                    json(&t.labels),
                    json(&t.annotations),
                    t.value,
                    t.acknowledged,
                    t.silenced,
                    t.source.as_str(),
                ],
            )?;
        }
        Cmd::SaveSilence(s) => {
            tx.execute(
                "INSERT OR REPLACE INTO silences
                    (id, matchers, starts_at, ends_at, created_by, comment, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    json(&s.specs()),
                    s.starts_at,
                    s.ends_at,
                    s.created_by,
                    s.comment,
                    s.updated_at
                ],
            )?;
        }
        Cmd::DeleteSilence(id) => {
            tx.execute("DELETE FROM silences WHERE id = ?1", params![id])?;
        }
        Cmd::Flush(_) => {}
    }
    Ok(())
}

/// Commands kept for the next commit after a failed one; beyond this the oldest go
/// (logged), so a long outage cannot grow memory without bound.
const CARRY_MAX: usize = 10_000;

/// How often a writer with a failed commit behind it tries again on its own.
const RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The writer thread: takes every queued command and applies them in one transaction.
/// A batch that cannot commit (disk full, read-only, the directory gone) is kept, up
/// to [`CARRY_MAX`] commands, and tried again with the next batch or every [`RETRY`];
/// each outcome goes to `storage`, and a flush answers whether everything before it
/// is committed.
fn writer(mut conn: Connection, rx: mpsc::Receiver<Cmd>, path: String, storage: Storage) {
    let mut pruned = std::time::Instant::now();
    let mut carry: Vec<Cmd> = Vec::new();
    let mut lost = 0usize;
    loop {
        let first = if carry.is_empty() && storage.fault().is_none() {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => break,
            }
        } else {
            match rx.recv_timeout(RETRY) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        };
        if pruned.elapsed() > std::time::Duration::from_secs(3600) {
            pruned = std::time::Instant::now();
            if let Err(e) = prune(&conn, now_ms()) {
                tracing::warn!(db = %path, error = %e, "cannot prune old alert transitions");
            }
        }
        let mut batch = std::mem::take(&mut carry);
        batch.extend(first);
        batch.extend(rx.try_iter());
        let result = storage.check_directory().and_then(|()| {
            (|| -> rusqlite::Result<()> {
                if batch.iter().all(|c| matches!(c, Cmd::Flush(_))) {
                    // Nothing to write: whether writes commit again, when one failed.
                    return match storage.fault() {
                        Some(_) => probe_write(&mut conn),
                        None => Ok(()),
                    };
                }
                let tx = conn.transaction()?;
                for cmd in &batch {
                    apply(&tx, cmd)?;
                }
                tx.commit()
            })()
            .map_err(|e| StorageFault::of_sqlite(&conn, &path, &e))
        });
        storage.report("alerts", result.clone());
        let answer = match (&result, lost) {
            (Err(e), _) => Err(e.clone()),
            (Ok(()), 0) => Ok(()),
            (Ok(()), n) => Err(StorageFault {
                reason: super::storage::Reason::Io,
                detail: format!("{path}: {n} changes were dropped while writes failed"),
            }),
        };
        for cmd in batch {
            match cmd {
                Cmd::Flush(done) => {
                    let _ = done.send(answer.clone());
                }
                other if result.is_err() => carry.push(other),
                _ => {}
            }
        }
        if result.is_ok() {
            lost = 0;
        }
        if carry.len() > CARRY_MAX {
            let n = carry.len() - CARRY_MAX;
            carry.drain(..n);
            lost += n;
            tracing::error!(db = %path, dropped = n,
                "alert state changes dropped: writes have been failing for too long");
        }
    }
}

impl History {
    fn send(&self, cmd: Cmd) {
        // The thread only stops when every handle is gone, so a failed send means
        // shutdown is under way; nothing more can be saved.
        let _ = self.tx.send(cmd);
    }

    pub(crate) fn save_alert(&self, a: &StoredAlert) {
        self.send(Cmd::SaveAlert(Box::new(a.clone())));
    }

    pub(crate) fn delete_alert(&self, id: &str) {
        self.send(Cmd::DeleteAlert(id.to_string()));
    }

    pub(crate) fn transition(&self, t: &Transition) {
        self.send(Cmd::Transition(Box::new(t.clone())));
    }

    pub(crate) fn save_silence(&self, s: &Silence) {
        self.send(Cmd::SaveSilence(s.clone()));
    }

    pub(crate) fn delete_silence(&self, id: &str) {
        self.send(Cmd::DeleteSilence(id.to_string()));
    }

    /// Waits until everything sent so far is committed. Blocking.
    pub(crate) fn flush(&self) {
        let _ = self.commit();
    }

    /// Waits until everything sent so far is committed, or says why it is not (a
    /// storage fault, or no answer within 10 s). Blocking.
    pub(crate) fn commit(&self) -> Result<(), StorageFault> {
        let (tx, rx) = mpsc::channel();
        self.send(Cmd::Flush(tx));
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| {
                Err(StorageFault {
                    reason: super::storage::Reason::Io,
                    detail: "m4watch.db: the alert-state writer did not answer within 10 s".into(),
                })
            })
    }
}

/// One row of the transitions table: `(seq, alert id, from state, to state, at ms)`.
pub(crate) type TransitionRow = (i64, String, String, String, i64);

/// Rows of the transitions table after `seq`, oldest first, for consumers that poll
/// (the notifier). Blocking.
pub fn transitions_since(data_dir: &Path, seq: i64) -> rusqlite::Result<Vec<TransitionRow>> {
    let conn = Connection::open(data_dir.join("m4watch.db"))?;
    let mut stmt = conn.prepare(
        "SELECT seq, alert_id, from_state, to_state, at FROM alert_transitions WHERE seq > ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![seq], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    rows.collect()
}

/// The schema version of an existing database, if it has one.
#[cfg(test)]
pub(crate) fn schema_version(data_dir: &Path) -> rusqlite::Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    let conn = Connection::open(data_dir.join("m4watch.db"))?;
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_round_trip_and_an_unreadable_one_is_dropped_not_widened() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _) = open(dir.path()).unwrap();
        let spec = MatcherSpec {
            name: "alertname".into(),
            value: "Cpu.*".into(),
            is_regex: true,
            is_equal: true,
        };
        h.save_silence(&Silence {
            id: "good".into(),
            matchers: vec![spec.compile().unwrap()],
            starts_at: 0,
            ends_at: 10,
            updated_at: 5,
            created_by: "me".into(),
            comment: String::new(),
        });
        h.flush();
        drop(h);
        let conn = Connection::open(dir.path().join("m4watch.db")).unwrap();
        for (id, matchers) in [("garbled", "not json"), ("empty", "[]")] {
            conn.execute(
                "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment)
                 VALUES (?1, ?2, 0, 10, 'me', '')",
                params![id, matchers],
            )
            .unwrap();
        }
        drop(conn);
        let (_, loaded) = open(dir.path()).unwrap();
        let ids: Vec<&str> = loaded.silences.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["good"], "only the readable silence is loaded");
        assert_eq!(loaded.silences[0].specs(), [spec]);
        assert_eq!(loaded.silences[0].updated_at, 5, "when it last changed");
    }

    #[test]
    fn migrates_saves_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let (h, loaded) = open(dir.path()).unwrap();
        assert!(loaded.alerts.is_empty());
        let a = StoredAlert {
            source: AlertSource::Prometheus,
            expires_at: Some(9000),
            generator_url: Some("http://prometheus:9090/graph".into()),
            id: "abc".into(),
            alertname: "Hot".into(),
            group: "g".into(),
            severity: Severity::Critical,
            state: State::Firing,
            labels: vec![("alertname".into(), "Hot".into())],
            annotations: vec![("summary".into(), "hot".into())],
            value: 2.5,
            active_at: 1000,
            fired_at: Some(2000),
            resolved_at: None,
            ack: Some(Ack {
                by: "alice".into(),
                comment: "on it".into(),
                at: 3000,
            }),
        };
        h.save_alert(&a);
        h.flush();
        drop(h);
        let (_h, loaded) = open(dir.path()).unwrap();
        assert_eq!(loaded.alerts, vec![a]);
        assert_eq!(schema_version(dir.path()).unwrap(), Some(6));
        let conn = Connection::open(dir.path().join("m4watch.db")).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        // A rollback journal: no `-shm` file mapped into memory (issue 25).
        assert_eq!(mode, "delete");
        assert!(!dir.path().join("m4watch.db-shm").exists());
        // The enums are stored as the words they always were.
        let words: (String, String) = conn
            .query_row("SELECT severity, source FROM alerts", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(words, ("critical".into(), "prometheus".into()));
    }

    #[test]
    fn old_transitions_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _) = open(dir.path()).unwrap();
        let t = |at: i64| Transition {
            id: "a".into(),
            source: AlertSource::Rules,
            generator_url: None,
            alertname: "A".into(),
            severity: Severity::Warning,
            from: State::Pending,
            to: State::Firing,
            at,
            labels: Vec::new(),
            annotations: Vec::new(),
            value: 1.0,
            fired_at: Some(at),
            acknowledged: false,
            silenced: false,
        };
        let now = now_ms();
        h.transition(&t(now - TRANSITION_RETENTION_MS - 1));
        h.transition(&t(now));
        h.flush();
        let conn = Connection::open(dir.path().join("m4watch.db")).unwrap();
        assert_eq!(prune(&conn, now).unwrap(), 1);
        assert_eq!(transitions_since(dir.path(), 0).unwrap().len(), 1);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("m4watch.db")).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = open(dir.path()).err().unwrap().to_string();
        assert!(
            e.ends_with("schema version 99 is newer than this m4watch knows (6); upgrade m4watch"),
            "{e}"
        );
    }
}
