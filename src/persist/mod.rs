//! Persistence: every SQLite database m4watch keeps under `data_dir`, opened one way
//! (rollback journal and no memory mapping, integrity check, busy timeout, the clear
//! "locked by another process" and "not a usable database" errors) and migrated one
//! way (`PRAGMA user_version`, migrations run in order, a newer schema refused).
//!
//! - `m4watch.db` ([`open_main`]): alert state, transitions and silences
//!   ([`alerts`]) and the notifier's outbox, settings and groups (its queries live in
//!   `notify/outbox.rs`). One schema, one version, whichever part opens it first.
//! - [`samples`]: `history.db`: downsampled hardware and container samples, latency
//!   baselines.
//! - [`storage`]: whether the data directory takes writes, as every writer reports it.
//!
//! Consumers get handles from the wiring ([`crate::app`]); none opens a database itself.

pub(crate) mod alerts;
pub(crate) mod samples;
pub(crate) mod storage;

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

/// The lock file in the data directory.
pub(crate) const LOCK_FILE: &str = "m4watch.lock";

/// The exclusive claim on a data directory, held for the daemon's life.
///
/// Two locks, because one alone can be lost to a cleanup script:
///
/// - an `flock` on `<data_dir>/m4watch.lock`, which holds the owner's pid. SQLite
///   never reports a second process on the file as an error worth stopping for, so
///   without it two instances would both deliver every notification. The kernel drops
///   the lock when the process dies, `kill -9` included, so a stale lock file never
///   blocks a restart.
/// - on Linux, an abstract Unix socket named after the directory's canonical path
///   (`@m4watch:<path>`), bound for the daemon's life. An flock belongs to an inode:
///   once the directory (or only its lock file) is renamed or deleted, a second
///   instance at the same path makes a fresh directory or lock file and its flock
///   succeeds. A name bound in the kernel belongs to the path instead and survives
///   whatever happens to the directory, and it too goes with the process. It is per
///   network namespace: instances in two containers sharing one volume are kept apart
///   by the flock only. Other systems have no abstract names; there the running
///   instance's directory check ([`storage::Storage::check_directory`]) notices the
///   move, refuses writes and stops delivering, so the old owner goes quiet instead.
///
/// The directory and lock file identities (device, inode) taken here are what that
/// check compares with, every few seconds and before each write.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: std::fs::File,
    dir: std::path::PathBuf,
    identities: (storage::Identity, storage::Identity),
    #[cfg(target_os = "linux")]
    _name: std::os::unix::net::UnixListener,
}

/// Why the data directory cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "{dir}: the data directory is in use by another m4watch (pid {pid}); stop it or give this one another data_dir"
    )]
    Held { dir: String, pid: String },
    /// Only Linux claims the path itself ([`DataDirLock`]).
    #[cfg(target_os = "linux")]
    #[error(
        "{dir}: another m4watch (pid {pid}) still runs on this data directory path, though its directory or lock file was moved or deleted; stop it first"
    )]
    HeldByPath { dir: String, pid: String },
    #[error("{0}: cannot claim the data directory: {1}")]
    Io(String, std::io::Error),
}

impl DataDirLock {
    /// Creates `dir` (mode 0700: it holds receiver secrets) and takes its lock, or
    /// says which process holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        use std::os::unix::io::AsRawFd;
        let io = |e| LockError::Io(dir.display().to_string(), e);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        // SAFETY: a valid open descriptor; flock only reads it.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: dir.display().to_string(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_string()
                    },
                });
            }
            return Err(io(err));
        }
        // After the flock, so that a second instance on an intact directory is told
        // about the lock file's pid as before.
        #[cfg(target_os = "linux")]
        let name = bind_path_name(dir)?;
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        let identities = (
            storage::Identity::of(&std::fs::metadata(dir).map_err(io)?),
            storage::Identity::of(&file.metadata().map_err(io)?),
        );
        Ok(DataDirLock {
            _file: file,
            dir: dir.to_path_buf(),
            identities,
            #[cfg(target_os = "linux")]
            _name: name,
        })
    }

    /// The locked directory, as configured.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Device and inode of the directory and of the lock file when locked.
    pub(crate) fn identities(&self) -> (storage::Identity, storage::Identity) {
        self.identities
    }
}

/// Binds the abstract socket named after `dir`'s canonical path, or says which
/// process holds it (its peer credentials, read by connecting to it).
#[cfg(target_os = "linux")]
fn bind_path_name(dir: &Path) -> Result<std::os::unix::net::UnixListener, LockError> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    let io = |e| LockError::Io(dir.display().to_string(), e);
    let canonical = std::fs::canonicalize(dir).map_err(io)?;
    let mut name = b"m4watch:".to_vec();
    name.extend_from_slice(canonical.as_os_str().as_encoded_bytes());
    // The kernel takes at most 107 bytes; a longer path keeps its tail, which is
    // where paths differ.
    if name.len() > 107 {
        name.drain(8..name.len() - 99);
    }
    let addr = SocketAddr::from_abstract_name(&name).map_err(io)?;
    match UnixListener::bind_addr(&addr) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let pid = UnixStream::connect_addr(&addr)
                .ok()
                .and_then(|s| peer_pid(&s))
                .map_or_else(|| "unknown".to_string(), |p| p.to_string());
            Err(LockError::HeldByPath {
                dir: dir.display().to_string(),
                pid,
            })
        }
        Err(e) => Err(io(e)),
    }
}

/// The pid of the process at the other end of a Unix socket.
#[cfg(target_os = "linux")]
fn peer_pid(s: &std::os::unix::net::UnixStream) -> Option<i32> {
    use std::os::unix::io::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

/// Makes a database file and its journal readable by the owner only: `m4watch.db`
/// holds receiver settings. SQLite creates the journal with the database file's mode,
/// so creating that one 0600 covers it; files left by an older release (its WAL and
/// shared-memory files too, until the first open turns them back into the journal)
/// are tightened too.
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    drop(
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?,
    );
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
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

/// Each connection's page cache, in KiB (SQLite's default: 2000).
pub(crate) const CACHE_KIB: i64 = 256;
const _: () = assert!(CACHE_KIB < 2000, "below SQLite's default of 2000 KiB");

/// Opens (creating) the SQLite file `path`, checks its integrity and runs
/// `migrations` (entry `i` takes the schema from version `i` to `i + 1`, kept in
/// `PRAGMA user_version`). Blocking. A locked or corrupt file is a clear error here,
/// at start-up.
///
/// No memory mapping anywhere, so that a file made unwritable, replaced or out of
/// space is an error SQLite returns, never a SIGBUS that kills the daemon without a
/// word (issue 25): `mmap_size = 0`, and the rollback journal (`DELETE`) rather than
/// WAL, whose index lives in the `-shm` file that every connection maps. WAL could
/// keep its index in heap memory only with `locking_mode = EXCLUSIVE`, which allows
/// one connection per file, and m4watch opens two on each (`m4watch.db`: the alert
/// writer and the outbox; `history.db`: the writer and the reader). The journal also
/// makes a vanished directory an error at the next commit, since the journal is
/// created beside the database each time. `synchronous = FULL`: a commit is on disk
/// when the API answers. Write transactions start `IMMEDIATE`, so two connections
/// never both read and then both wait to write (SQLite answers that deadlock with
/// "busy" at once, whatever the timeout).
///
/// `PRAGMA quick_check` runs on every open: a file damaged in the middle (a torn
/// write, a bad block) is refused at start-up, naming the file, instead of failing
/// at some later read. It is not moved aside automatically: `m4watch.db` holds
/// unsent notifications, silences and acknowledgements, and starting empty would
/// page again for everything and unmute what was muted; an operator decides.
pub(crate) fn open_sqlite(path: &Path, migrations: &[&str]) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DbError::Dir(dir.display().to_string(), e))?;
    }
    owner_only(path).map_err(|e| DbError::Dir(path.display().to_string(), e))?;
    let err = |e| open_error(path, e);
    let mut conn = Connection::open(path).map_err(err)?;
    // Short: at start-up a held lock means another writer, not a brief overlap.
    conn.busy_timeout(std::time::Duration::from_secs(2))
        .map_err(err)?;
    conn.pragma_update(None, "mmap_size", 0).map_err(err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(DbError::Sqlite {
            path: path.display().to_string(),
            source: rusqlite::Error::InvalidParameterName(format!("journal_mode stayed {mode:?}")),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    // SQLite's default page cache is 2 MiB per connection, and m4watch holds four;
    // the files are small and the OS caches them anyway.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(err)?;
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    quick_check(&conn, path)?;
    migrate(&mut conn, path, migrations)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    Ok(conn)
}

/// `PRAGMA quick_check`: `ok`, or the first problems it names, as a [`DbError::Corrupt`].
fn quick_check(conn: &Connection, path: &Path) -> Result<(), DbError> {
    // SQLite may stop the check itself at a page it cannot read.
    let err = |e: rusqlite::Error| match open_error(path, e) {
        DbError::Corrupt { path, detail } => DbError::Corrupt {
            path,
            detail: format!("integrity check failed: {detail}"),
        },
        other => other,
    };
    let mut st = conn.prepare("PRAGMA quick_check(5)").map_err(err)?;
    let found: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(err)?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    Err(DbError::Corrupt {
        path: path.display().to_string(),
        detail: format!("integrity check failed: {}", found.join("; ")),
    })
}

/// One write transaction that changes nothing a reader sees (`user_version` written
/// back as it is): whether the file takes writes now, for a writer whose last write
/// failed and that has nothing else to write.
pub(crate) fn probe_write(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let v: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    tx.pragma_update(None, "user_version", v)?;
    tx.commit()
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
    // Version 4: a notification group keeps every alert it holds, resolves waiting
    // for group_interval included, and which of them were notified (NULL: all, as
    // version 3 stored only notified firing alerts).
    "
ALTER TABLE notify_groups ADD COLUMN notified TEXT;
",
    // Version 5: when a silence was made or last changed (Alertmanager's `updatedAt`;
    // NULL in rows of version 4, read as their start).
    "
ALTER TABLE silences ADD COLUMN updated_at INTEGER;
",
    // Version 6: a notification moved aside from the head of its lane after failing
    // its first attempts (1), so later ones go out while it is retried on its own.
    "
ALTER TABLE notify_outbox ADD COLUMN aside INTEGER NOT NULL DEFAULT 0;
",
];

/// Opens `m4watch.db` at `path`, migrated to the current schema.
pub(crate) fn open_main(path: &Path) -> Result<Connection, DbError> {
    open_sqlite(path, MAIN_MIGRATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_data_directory_has_one_owner_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = DataDirLock::acquire(&dir).unwrap();
        let e = DataDirLock::acquire(&dir).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: the data directory is in use by another m4watch (pid {}); stop it or give this one another data_dir",
                dir.display(),
                std::process::id()
            )
        );
        drop(first);
        // Released with its holder (a killed process releases it the same way).
        let _again = DataDirLock::acquire(&dir).unwrap();
    }

    #[test]
    fn the_data_directory_and_databases_are_the_owners_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _lock = DataDirLock::acquire(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("m4watch.db");
        // A file an older release left world-readable is tightened.
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let conn = open_main(&db).unwrap();
        conn.execute_batch("INSERT INTO silences VALUES ('s', '[]', 0, 1, 'me', '', 0)")
            .unwrap();
        for f in ["m4watch.db", "m4watch.lock"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
    }

    #[test]
    fn no_connection_maps_a_file_and_a_wal_file_is_taken_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m4watch.db");
        // A file an older release left in WAL mode.
        let old = Connection::open(&path).unwrap();
        old.pragma_update(None, "journal_mode", "WAL").unwrap();
        old.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(old);
        let conn = open_main(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        let mmap: i64 = conn
            .pragma_query_value(None, "mmap_size", |r| r.get(0))
            .unwrap();
        assert_eq!(mmap, 0);
        let x: i64 = conn.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 1, "the WAL's rows are kept");
        assert!(!tmp.path().join("m4watch.db-shm").exists());
        assert!(!tmp.path().join("m4watch.db-wal").exists());
    }

    #[test]
    fn a_page_damaged_mid_file_is_refused_at_open() {
        use std::io::{Seek, SeekFrom, Write};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m4watch.db");
        let conn = open_main(&path).unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'silences'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        drop(conn);
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(((root - 1) * page) as u64)).unwrap();
        f.write_all(&vec![0xA5; page as usize]).unwrap();
        drop(f);
        let e = open_main(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}: not a usable SQLite database (integrity check failed",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn every_connection_bounds_its_page_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let conn = open_main(&tmp.path().join("m4watch.db")).unwrap();
        let kib: i64 = conn
            .pragma_query_value(None, "cache_size", |r| r.get(0))
            .unwrap();
        // Negative: a size in KiB rather than pages.
        assert_eq!(kib, -CACHE_KIB);
    }
}
