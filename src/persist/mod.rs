//! Persistence: every SQLite database m4watch keeps under `data_dir`, opened one way
//! (WAL, busy timeout, the clear "locked by another process" and "not a usable
//! database" errors) and migrated one way (`PRAGMA user_version`, migrations run in
//! order, a newer schema refused).
//!
//! - `m4watch.db` ([`open_main`]): alert state, transitions and silences
//!   ([`alerts`]) and the notifier's outbox, settings and groups (its queries live in
//!   `notify/outbox.rs`). One schema, one version, whichever part opens it first.
//! - [`samples`]: `history.db`: downsampled hardware and container samples, latency
//!   baselines.
//!
//! Consumers get handles from the wiring ([`crate::app`]); none opens a database itself.

pub mod alerts;
pub mod samples;

use std::path::Path;

use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "{path}: schema version {found} is newer than this m4watch knows ({known}); upgrade m4watch"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("{0}: cannot create the data directory: {1}")]
    Dir(String, std::io::Error),
    #[error(
        "{path}: the database is locked by another process (is another m4watch running on this data_dir?)"
    )]
    Locked { path: String },
    #[error(
        "{path}: not a usable SQLite database ({detail}); move it aside to start with an empty one"
    )]
    Corrupt { path: String, detail: String },
}

/// Maps an error met while opening `path` to the clearest [`DbError`].
fn open_error(path: &Path, e: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode;
    let path_s = path.display().to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            DbError::Locked { path: path_s }
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => DbError::Corrupt {
            path: path_s,
            detail: e.to_string(),
        },
        _ => DbError::Sqlite {
            path: path_s,
            source: e,
        },
    }
}

/// Opens (creating) the SQLite file `path` in WAL mode and runs `migrations` (entry
/// `i` takes the schema from version `i` to `i + 1`, kept in `PRAGMA user_version`).
/// Blocking. A locked or corrupt file is a clear error here, at start-up.
pub fn open_sqlite(path: &Path, migrations: &[&str]) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DbError::Dir(dir.display().to_string(), e))?;
    }
    let err = |e| open_error(path, e);
    let mut conn = Connection::open(path).map_err(err)?;
    // Short: at start-up a held lock means another writer, not a brief overlap.
    conn.busy_timeout(std::time::Duration::from_secs(2))
        .map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    migrate(&mut conn, path, migrations)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    Ok(conn)
}

/// Migrations, in order; entry `i` takes the schema from version `i` to `i + 1`.
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[&str],
) -> Result<(), DbError> {
    let err = |e| open_error(path, e);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&err)?;
    let known = migrations.len() as i64;
    if version > known {
        return Err(DbError::TooNew {
            path: path.display().to_string(),
            found: version,
            known,
        });
    }
    for (i, m) in migrations.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(&err)?;
        tx.execute_batch(m).map_err(&err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
    }
    Ok(())
}

/// Migrations of `m4watch.db`, the alert store's and the notifier's tables alike.
/// Version 3 adds the source of an alert. Version 2 adopts the notifier's tables, which older releases versioned apart in
/// `notify_schema`: they are created only where missing, so a file from then keeps
/// its queue, settings and groups.
const MAIN_MIGRATIONS: &[&str] = &[
    "CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    alertname TEXT NOT NULL,
    grp TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    value REAL,
    active_at INTEGER NOT NULL,
    fired_at INTEGER,
    resolved_at INTEGER,
    ack_by TEXT,
    ack_comment TEXT,
    ack_at INTEGER
);
CREATE TABLE alert_transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    alertname TEXT NOT NULL,
    severity TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at INTEGER NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    value REAL,
    acknowledged INTEGER NOT NULL,
    silenced INTEGER NOT NULL
);
CREATE INDEX alert_transitions_at ON alert_transitions(at);
CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL
);
",
    "
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    integration TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    finished_at REAL,
    last_reason TEXT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS notify_outbox_lane
    ON notify_outbox (status, receiver, integration, id);
CREATE TABLE IF NOT EXISTS notify_settings (
    receiver TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_groups (
    group_key TEXT PRIMARY KEY,
    route INTEGER NOT NULL,
    receiver TEXT NOT NULL,
    labels TEXT NOT NULL,
    alerts TEXT NOT NULL,
    updated_at REAL NOT NULL
);
DROP TABLE IF EXISTS notify_schema;
",
    // Version 3: alerts posted by Prometheus live in the same table, with where they
    // came from, when they expire unless posted again, and their link back.
    "
ALTER TABLE alerts ADD COLUMN source TEXT NOT NULL DEFAULT 'm4watch';
ALTER TABLE alerts ADD COLUMN expires_at INTEGER;
ALTER TABLE alerts ADD COLUMN generator_url TEXT;
ALTER TABLE alert_transitions ADD COLUMN source TEXT NOT NULL DEFAULT 'm4watch';
",
];

/// Opens `m4watch.db` at `path`, migrated to the current schema.
pub fn open_main(path: &Path) -> Result<Connection, DbError> {
    open_sqlite(path, MAIN_MIGRATIONS)
}
