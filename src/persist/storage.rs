//! Whether the data directory still takes writes: one shared verdict that every writer
//! reports into (the alert-state writer, the outbox, the history writer, the
//! directory check) and that the API, the health verdict and the metrics read.
//!
//! A writer that fails reports a [`StorageFault`] under its own name; the next write
//! of that writer that commits clears it. The data directory is healthy when no
//! writer has a fault standing, so one writer succeeding never hides another that
//! still fails. Each change is logged once: ERROR when a fault begins, INFO when it
//! ends.
//!
//! The directory check ([`Storage::check_directory`]) compares the directory and its
//! lock file, by path, with the device and inode the daemon locked at start-up
//! ([`super::DataDirLock`]). A directory renamed, deleted or replaced, or a lock file
//! deleted or replaced, is a fault that never clears by itself: from then on the API
//! refuses writes (503), the outbox delivers nothing (another instance may own the
//! directory now) and the health verdict is critical until the daemon is restarted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::model::{Family, Kind, MetricDef, def};

pub(crate) const STORAGE_HEALTHY: MetricDef = def(
    "m4watch_storage_healthy",
    Kind::Gauge,
    &[],
    "1 while every write to the data directory commits and the directory is the one m4watch locked at start-up; 0 while a write fails (disk full, read-only, permission denied) or the directory was moved, deleted or replaced: write requests are refused with 503 and notifications are sent from memory.",
);

pub(crate) const STORAGE_FAULT_INFO: MetricDef = def(
    "m4watch_storage_fault_info",
    Kind::Gauge,
    &["writer", "reason"],
    "1 for each writer whose last write failed (`alerts`, `outbox`, `history`) or for the directory check (`data_dir`), with the bounded reason: no_space, read_only, permission_denied, directory_missing, directory_replaced, io_error. Absent while healthy.",
);

/// The storage families.
pub(crate) const METRICS: &[MetricDef] = &[STORAGE_HEALTHY, STORAGE_FAULT_INFO];

/// Why a write could not be made durable, in a bounded word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    NoSpace,
    ReadOnly,
    PermissionDenied,
    DirectoryMissing,
    DirectoryReplaced,
    Io,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::NoSpace => "no_space",
            Reason::ReadOnly => "read_only",
            Reason::PermissionDenied => "permission_denied",
            Reason::DirectoryMissing => "directory_missing",
            Reason::DirectoryReplaced => "directory_replaced",
            Reason::Io => "io_error",
        }
    }

    /// The reason an OS error number stands for.
    pub(crate) fn of_errno(errno: i32) -> Reason {
        match errno {
            libc::ENOSPC | libc::EDQUOT => Reason::NoSpace,
            libc::EROFS => Reason::ReadOnly,
            libc::EACCES | libc::EPERM => Reason::PermissionDenied,
            libc::ENOENT | libc::ESTALE => Reason::DirectoryMissing,
            _ => Reason::Io,
        }
    }
}

/// A write that did not commit: the bounded reason and a sentence naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} ({})", reason.as_str())]
pub(crate) struct StorageFault {
    pub reason: Reason,
    pub detail: String,
}

impl StorageFault {
    /// The fault behind a failed SQLite call on `conn` (the file at `path`): SQLite's
    /// own code where it says enough, else the OS error of its last system call, else
    /// the error of opening the file for writing.
    pub(crate) fn of_sqlite(
        conn: &rusqlite::Connection,
        path: &str,
        e: &rusqlite::Error,
    ) -> StorageFault {
        use rusqlite::ErrorCode;
        // SAFETY: the handle is valid while `conn` lives; the call only reads it.
        let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
        let reason = match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Reason::NoSpace,
            Some(ErrorCode::ReadOnly) if errno == 0 => Reason::ReadOnly,
            Some(ErrorCode::PermissionDenied) if errno == 0 => Reason::PermissionDenied,
            _ if errno != 0 => Reason::of_errno(errno),
            Some(ErrorCode::CannotOpen) => Reason::DirectoryMissing,
            _ => Reason::Io,
        };
        // SQLite does not always keep the OS error (a rollback after the failed
        // write may have cleared it): opening the file for writing says why.
        let reason = match reason {
            Reason::Io => std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .err()
                .and_then(|e| e.raw_os_error())
                .map_or(Reason::Io, Reason::of_errno),
            r => r,
        };
        StorageFault {
            reason,
            detail: format!("{path}: {e}"),
        }
    }
}

/// Device and inode of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub dev: u64,
    pub ino: u64,
}

impl Identity {
    pub(crate) fn of(m: &std::fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// The directory and the lock file as locked at start-up; `None` for a store
    /// opened without a lock (unit tests).
    locked: Option<(Identity, Identity)>,
    faults: Mutex<BTreeMap<&'static str, StorageFault>>,
}

/// The shared storage verdict; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    inner: Arc<Inner>,
}

/// The writer name of the directory check.
pub(crate) const DATA_DIR: &str = "data_dir";

impl Storage {
    /// The verdict for the directory `lock` holds.
    pub(crate) fn of_lock(lock: &super::DataDirLock) -> Storage {
        Storage::new(lock.dir(), Some(lock.identities()))
    }

    /// A verdict with no directory check (tests, a store opened without its lock).
    #[cfg(test)]
    pub(crate) fn unlocked(dir: &Path) -> Storage {
        Storage::new(dir, None)
    }

    fn new(dir: &Path, locked: Option<(Identity, Identity)>) -> Storage {
        Storage {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                locked,
                faults: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Compares the directory and its lock file with what was locked; a mismatch is a
    /// standing fault, logged once.
    pub(crate) fn check_directory(&self) -> Result<(), StorageFault> {
        let Some((dir_id, lock_id)) = self.inner.locked else {
            return Ok(());
        };
        let dir = &self.inner.dir;
        let lock = dir.join(super::LOCK_FILE);
        let fault = |reason, what: String| StorageFault {
            reason,
            detail: format!(
                "{}: {what}; refusing writes until m4watch is restarted on a directory it can lock",
                dir.display()
            ),
        };
        let found = match (std::fs::metadata(dir), std::fs::metadata(&lock)) {
            (Err(_), _) => Err(fault(
                Reason::DirectoryMissing,
                "the data directory was moved or deleted".into(),
            )),
            (Ok(d), _) if Identity::of(&d) != dir_id => Err(fault(
                Reason::DirectoryReplaced,
                "the data directory was replaced by another one".into(),
            )),
            (Ok(_), Err(_)) => Err(fault(
                Reason::DirectoryMissing,
                format!("the lock file {} was deleted", super::LOCK_FILE),
            )),
            (Ok(_), Ok(l)) if Identity::of(&l) != lock_id => Err(fault(
                Reason::DirectoryReplaced,
                format!("the lock file {} was replaced", super::LOCK_FILE),
            )),
            _ => Ok(()),
        };
        // Once lost, the claim stays lost: a directory moved back may have had a
        // second owner meanwhile.
        if found.is_ok()
            && let Some(f) = self.faults().get(DATA_DIR)
        {
            return Err(f.clone());
        }
        self.report(DATA_DIR, found.clone());
        found
    }

    /// Records the outcome of one write by `writer`.
    pub(crate) fn report(&self, writer: &'static str, outcome: Result<(), StorageFault>) {
        let mut faults = self.inner.faults.lock().expect("storage faults");
        match outcome {
            Ok(()) => {
                if let Some(f) = faults.remove(writer) {
                    tracing::info!(writer, was = %f, "storage writes commit again");
                }
            }
            Err(f) => {
                if faults.get(writer) != Some(&f) {
                    tracing::error!(writer, reason = f.reason.as_str(), error = %f.detail,
                        "storage fault: writes are not durable; write requests are refused with 503");
                }
                faults.insert(writer, f);
            }
        }
    }

    fn faults(&self) -> BTreeMap<&'static str, StorageFault> {
        self.inner.faults.lock().expect("storage faults").clone()
    }

    /// Whether `writer`'s last write failed.
    pub(crate) fn failing(&self, writer: &str) -> bool {
        self.inner
            .faults
            .lock()
            .expect("storage faults")
            .contains_key(writer)
    }

    /// The first standing fault, the directory check's before any writer's.
    pub(crate) fn fault(&self) -> Option<StorageFault> {
        let faults = self.faults();
        faults
            .get(DATA_DIR)
            .or_else(|| faults.values().next())
            .cloned()
    }

    /// Checks the directory, then whether any fault stands: what a write request asks
    /// before it changes anything.
    pub(crate) fn guard(&self) -> Result<(), StorageFault> {
        self.check_directory()?;
        self.fault().map_or(Ok(()), Err)
    }

    /// `m4watch_storage_healthy` and one `m4watch_storage_fault_info` per fault.
    pub(crate) fn families(&self) -> Vec<Family> {
        let faults = self.faults();
        let mut healthy = Family::new(&STORAGE_HEALTHY);
        healthy.push_value(f64::from(u8::from(faults.is_empty())));
        let mut info = Family::new(&STORAGE_FAULT_INFO);
        for (writer, f) in &faults {
            info.push([("writer", *writer), ("reason", f.reason.as_str())], 1.0);
        }
        vec![healthy, info]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_recovering_does_not_hide_another_that_still_fails() {
        let s = Storage::unlocked(Path::new("/nowhere"));
        let full = StorageFault {
            reason: Reason::NoSpace,
            detail: "x".into(),
        };
        s.report("alerts", Err(full.clone()));
        s.report("outbox", Err(full.clone()));
        s.report("alerts", Ok(()));
        assert_eq!(s.fault(), Some(full));
        assert_eq!(s.families()[0].samples[0].value, 0.0);
        s.report("outbox", Ok(()));
        assert_eq!(s.fault(), None);
        assert_eq!(s.families()[0].samples[0].value, 1.0);
        assert!(
            s.families()[1].samples.is_empty(),
            "no fault, no info series"
        );
    }

    #[test]
    fn a_renamed_directory_or_replaced_lock_file_is_a_fault_that_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let lock = super::super::DataDirLock::acquire(&dir).unwrap();
        let s = Storage::of_lock(&lock);
        assert_eq!(s.guard(), Ok(()));
        std::fs::rename(&dir, tmp.path().join("moved")).unwrap();
        assert_eq!(s.guard().unwrap_err().reason, Reason::DirectoryMissing);
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(s.guard().unwrap_err().reason, Reason::DirectoryReplaced);
        std::fs::remove_dir(&dir).unwrap();
        std::fs::rename(tmp.path().join("moved"), &dir).unwrap();
        assert!(s.guard().is_err(), "moved back, still refused");

        let dir2 = tmp.path().join("data2");
        let lock2 = super::super::DataDirLock::acquire(&dir2).unwrap();
        let s2 = Storage::of_lock(&lock2);
        std::fs::remove_file(dir2.join(super::super::LOCK_FILE)).unwrap();
        std::fs::write(dir2.join(super::super::LOCK_FILE), b"").unwrap();
        assert_eq!(s2.guard().unwrap_err().reason, Reason::DirectoryReplaced);
    }
}
