//! The durable outbox: every notification is a row in `<data_dir>/m4watch.db` before
//! its first send, and stays there with its delivery result.
//!
//! The notifier's tables (`notify_*`) are part of the file's one schema, created and
//! migrated by [`crate::persist`] with the alert tables. One connection of its own
//! (rollback journal, no memory mapping: [`crate::persist::open_sqlite`]); every call
//! runs on the blocking pool, never on the async workers.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{AlertEvent, Notification};
use crate::clock::unix_now;
use crate::persist::storage::{Reason, Storage, StorageFault};

/// Why the outbox could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("notification outbox: {0}")]
    Open(#[from] crate::persist::DbError),
    #[error("notification outbox: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("notification outbox: stored payload is not valid: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("notification outbox: the blocking task failed")]
    Join,
    #[error("notification secrets file {0}: {1}")]
    Secrets(String, std::io::Error),
    /// The data directory does not take writes (or is no longer the one locked).
    #[error("notification outbox: {0}")]
    Storage(String),
}

/// A pending row, ready to send.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub receiver: String,
    pub integration: String,
    pub attempts: i64,
    pub created_at: f64,
    pub next_attempt_at: f64,
    pub notification: Notification,
    /// Moved aside from the head of its lane after failing its first attempts.
    pub aside: bool,
    /// Waits behind an older notification of its group that was moved aside: it
    /// is moved aside too, so a group's notifications keep their order.
    pub behind_aside: bool,
}

/// A delivery record as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub receiver: String,
    pub integration: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub created_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub kind: String,
    pub title: String,
}

/// Handle to the outbox tables; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    conn: Arc<Mutex<Connection>>,
    /// Where secrets set through the configure API live, beside the database.
    secrets: Arc<std::path::PathBuf>,
    /// Where each write's outcome goes; every call first checks that the data
    /// directory is still the one locked, so an instance that lost it delivers nothing.
    storage: Option<Storage>,
}

/// The secret keys of a configure request, as JSON pointers into it. They are kept
/// out of `m4watch.db` in a 0600 `secrets.json` beside it, so a copy of the database
/// (a backup, a support bundle) alone reveals none.
const SECRET_KEYS: &[&str] = &[
    "/slack_webhook",
    "/pagerduty_routing_key",
    "/email/password",
];

type SecretMap =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>>;

fn read_secrets(path: &Path) -> Result<SecretMap, OutboxError> {
    match std::fs::read(path) {
        Ok(b) => Ok(serde_json::from_slice(&b)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecretMap::new()),
        Err(e) => Err(OutboxError::Secrets(path.display().to_string(), e)),
    }
}

/// Writes the whole secrets file: a 0600 temporary file, synced, renamed over it.
fn write_secrets(path: &Path, map: &SecretMap) -> Result<(), OutboxError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| OutboxError::Secrets(path.display().to_string(), e);
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(&serde_json::to_vec(map)?).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Moves the secret values out of `settings` into `into`.
fn split_secrets(
    settings: &mut serde_json::Value,
    into: &mut std::collections::BTreeMap<String, serde_json::Value>,
) {
    for key in SECRET_KEYS {
        let (parent, leaf) = key.rsplit_once('/').expect("pointer");
        if let Some(obj) = settings
            .pointer_mut(if parent.is_empty() { "" } else { parent })
            .and_then(|v| v.as_object_mut())
            && let Some(v) = obj.remove(leaf)
        {
            into.insert((*key).to_string(), v);
        }
    }
}

/// Puts the secret values of `from` back into `settings`.
fn join_secrets(
    settings: &mut serde_json::Value,
    from: &std::collections::BTreeMap<String, serde_json::Value>,
) {
    for (key, v) in from {
        let Some((parent, leaf)) = key.rsplit_once('/') else {
            continue;
        };
        if let Some(obj) = settings.pointer_mut(parent).and_then(|p| p.as_object_mut()) {
            obj.insert(leaf.to_string(), v.clone());
        }
    }
}

impl Outbox {
    /// Opens the outbox tables in the `m4watch.db` at `path`, creating or migrating the
    /// file's one schema ([`crate::persist::open_main`]). A commit is synced to disk
    /// (`synchronous = FULL`): it survives a process crash and a power loss.
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        let conn = crate::persist::open_main(path)?;
        let secrets = path.with_file_name("secrets.json");
        // Settings stored by a release that kept secrets in the database move out.
        let mut map = read_secrets(&secrets)?;
        let mut moved = Vec::new();
        {
            let mut st = conn.prepare("SELECT receiver, settings FROM notify_settings")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (receiver, text) = row?;
                let mut v: serde_json::Value = serde_json::from_str(&text)?;
                let mut found = std::collections::BTreeMap::new();
                split_secrets(&mut v, &mut found);
                if !found.is_empty() {
                    map.entry(receiver.clone()).or_default().extend(found);
                    moved.push((receiver, v.to_string()));
                }
            }
        }
        if !moved.is_empty() {
            write_secrets(&secrets, &map)?;
            for (receiver, text) in moved {
                conn.execute(
                    "UPDATE notify_settings SET settings = ?2 WHERE receiver = ?1",
                    params![receiver, text],
                )?;
            }
        }
        Ok(Outbox {
            conn: Arc::new(Mutex::new(conn)),
            secrets: Arc::new(secrets),
            storage: None,
        })
    }

    /// Reports every write's outcome to `storage`, and refuses every call once the
    /// data directory is no longer the one locked.
    pub(crate) fn with_storage(mut self, storage: Storage) -> Outbox {
        self.storage = Some(storage);
        self
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        self.run(false, f).await
    }

    /// As [`Outbox::with`], for a call that writes: its outcome goes to the storage
    /// verdict.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        self.run(true, f).await
    }

    async fn run<T: Send + 'static>(
        &self,
        writes: bool,
        f: impl FnOnce(&mut Connection) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let conn = Arc::clone(&self.conn);
        let storage = self.storage.clone();
        let db = self.secrets.with_file_name("m4watch.db");
        tokio::task::spawn_blocking(move || {
            if let Some(st) = &storage {
                st.check_directory()
                    .map_err(|e| OutboxError::Storage(e.to_string()))?;
            }
            let mut c = conn.lock().expect("outbox lock");
            let r = f(&mut c);
            if let (true, Some(st)) = (writes, &storage) {
                let fault = match &r {
                    Ok(_) => Ok(()),
                    Err(OutboxError::Sql(e)) => {
                        Err(StorageFault::of_sqlite(&c, &db.display().to_string(), e))
                    }
                    Err(OutboxError::Secrets(file, e)) => Err(StorageFault {
                        reason: e.raw_os_error().map_or(Reason::Io, Reason::of_errno),
                        detail: format!("{file}: {e}"),
                    }),
                    // Not the disk's fault (a payload that does not serialise).
                    Err(_) => return r,
                };
                st.report("outbox", fault);
            }
            r
        })
        .await
        .map_err(|_| OutboxError::Join)?
    }

    /// Holds the outbox's connection until the guard drops: every outbox call waits
    /// meanwhile, as behind a disk that stopped answering.
    #[cfg(test)]
    pub(crate) fn wedge(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("outbox lock")
    }

    /// Stores notifications, one row per (receiver, integration), in one transaction.
    pub async fn enqueue(
        &self,
        rows: Vec<(String, &'static str, Notification)>,
    ) -> Result<Vec<i64>, OutboxError> {
        self.enqueue_with_groups(rows, Vec::new()).await
    }

    /// Stores notifications and the state of the groups they came from in one
    /// transaction: a crash leaves either both (the notification is owed by the outbox
    /// and the group knows it was announced) or neither (the group still owes it), so
    /// a restart neither loses nor repeats it.
    pub async fn enqueue_with_groups(
        &self,
        rows: Vec<(String, &'static str, Notification)>,
        groups: Vec<StoredGroup>,
    ) -> Result<Vec<i64>, OutboxError> {
        self.write(move |c| {
            let now = unix_now();
            let tx = c.transaction()?;
            let mut ids = Vec::with_capacity(rows.len());
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO notify_outbox
                     (receiver, integration, payload, status, attempts, created_at, next_attempt_at)
                     VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
                )?;
                for (receiver, integration, n) in rows {
                    let payload = serde_json::to_string(&n)?;
                    st.execute(params![receiver, integration, payload, now])?;
                    ids.push(tx.last_insert_rowid());
                }
            }
            for g in &groups {
                save_group(&tx, g)?;
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// After a failed write, and only then: one write that changes nothing, so the
    /// storage verdict learns when the outbox takes writes again even while nothing
    /// is being notified.
    pub(crate) async fn probe(&self) {
        if self.storage.as_ref().is_some_and(|s| s.failing("outbox")) {
            let _ = self.write(|c| Ok(crate::persist::probe_write(c)?)).await;
        }
    }

    /// The oldest pending row of each (receiver, integration) lane, and the oldest of
    /// the rows moved aside from it: each delivers in order, so a resolve never
    /// overtakes its trigger, and a stuck head moved aside no longer holds back the
    /// notifications behind it.
    pub async fn heads(&self) -> Result<Vec<Pending>, OutboxError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT o.id, o.receiver, o.integration, o.attempts, o.created_at,
                        o.next_attempt_at, o.payload, o.aside,
                        o.aside = 0 AND EXISTS (SELECT 1 FROM notify_outbox a
                          WHERE a.status = 'pending' AND a.aside = 1 AND a.id < o.id
                            AND a.receiver = o.receiver AND a.integration = o.integration
                            AND json_extract(a.payload, '$.group_key')
                              = json_extract(o.payload, '$.group_key'))
                 FROM notify_outbox o WHERE o.id IN (
                   SELECT MIN(id) FROM notify_outbox WHERE status = 'pending'
                   GROUP BY receiver, integration, aside)
                 ORDER BY o.next_attempt_at",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    (
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ),
                    (
                        r.get::<_, f64>(4)?,
                        r.get::<_, f64>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, bool>(7)?,
                        r.get::<_, bool>(8)?,
                    ),
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (
                    (id, receiver, integration, attempts),
                    (created_at, next_attempt_at, payload, aside, behind_aside),
                ) = row?;
                out.push(Pending {
                    id,
                    receiver,
                    integration,
                    attempts,
                    created_at,
                    next_attempt_at,
                    notification: serde_json::from_str(&payload)?,
                    aside,
                    behind_aside,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Moves a pending row aside from the head of its lane (it stays pending).
    pub async fn move_aside(&self, id: i64) -> Result<(), OutboxError> {
        self.write(move |c| {
            c.execute("UPDATE notify_outbox SET aside = 1 WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    /// Records a successful delivery.
    pub async fn delivered(&self, id: i64, attempts: i64) -> Result<(), OutboxError> {
        self.write(move |c| {
            c.execute(
                "UPDATE notify_outbox SET status = 'delivered', attempts = ?2, finished_at = ?3
                 WHERE id = ?1",
                params![id, attempts, unix_now()],
            )?;
            Ok(())
        })
        .await
    }

    /// Records a failed attempt: `next_attempt_at` for a retry, `None` to give up.
    pub async fn failed(
        &self,
        id: i64,
        attempts: i64,
        next_attempt_at: Option<f64>,
        reason: &'static str,
        error: String,
    ) -> Result<(), OutboxError> {
        self.write(move |c| {
            match next_attempt_at {
                Some(at) => c.execute(
                    "UPDATE notify_outbox SET attempts = ?2, next_attempt_at = ?3,
                     last_reason = ?4, last_error = ?5 WHERE id = ?1",
                    params![id, attempts, at, reason, error],
                )?,
                None => c.execute(
                    "UPDATE notify_outbox SET status = 'failed', attempts = ?2, finished_at = ?3,
                     last_reason = ?4, last_error = ?5 WHERE id = ?1",
                    params![id, attempts, unix_now(), reason, error],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// How many notifications wait for delivery.
    pub async fn pending_count(&self) -> Result<i64, OutboxError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM notify_outbox WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// The latest `limit` deliveries, newest first.
    pub async fn recent(&self, limit: i64) -> Result<Vec<Delivery>, OutboxError> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, receiver, integration, status, attempts, created_at, finished_at,
                        last_reason, last_error, payload
                 FROM notify_outbox ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st.query_map([limit], |r| {
                let payload: String = r.get(9)?;
                Ok((
                    Delivery {
                        id: r.get(0)?,
                        receiver: r.get(1)?,
                        integration: r.get(2)?,
                        status: r.get(3)?,
                        attempts: r.get(4)?,
                        created_at: r.get(5)?,
                        finished_at: r.get(6)?,
                        last_reason: r.get(7)?,
                        last_error: r.get(8)?,
                        kind: String::new(),
                        title: String::new(),
                    },
                    payload,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (mut d, payload) = row?;
                if let Ok(n) = serde_json::from_str::<Notification>(&payload) {
                    d.kind = serde_json::to_value(n.kind)?
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    d.title = n.title();
                }
                out.push(d);
            }
            Ok(out)
        })
        .await
    }

    /// Drops finished rows older than `keep_seconds`.
    pub async fn prune(&self, keep_seconds: f64) -> Result<usize, OutboxError> {
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM notify_outbox WHERE status != 'pending' AND finished_at < ?1",
                [unix_now() - keep_seconds],
            )?)
        })
        .await
    }

    /// Settings stored through the configure API, per receiver (JSON).
    pub async fn settings(&self) -> Result<Vec<(String, String)>, OutboxError> {
        let secrets = Arc::clone(&self.secrets);
        self.with(move |c| {
            let map = read_secrets(&secrets)?;
            let mut st = c.prepare_cached("SELECT receiver, settings FROM notify_settings")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (receiver, text) = row?;
                let mut v: serde_json::Value = serde_json::from_str(&text)?;
                if let Some(s) = map.get(&receiver) {
                    join_secrets(&mut v, s);
                }
                out.push((receiver, v.to_string()));
            }
            Ok(out)
        })
        .await
    }

    /// Replaces one receiver's stored settings: the secrets go to `secrets.json`
    /// (0600), the rest to the database.
    pub async fn put_settings(&self, receiver: String, json: String) -> Result<(), OutboxError> {
        let secrets = Arc::clone(&self.secrets);
        self.write(move |c| {
            let mut v: serde_json::Value = serde_json::from_str(&json)?;
            let mut found = std::collections::BTreeMap::new();
            split_secrets(&mut v, &mut found);
            let mut map = read_secrets(&secrets)?;
            if found.is_empty() {
                if map.remove(&receiver).is_some() {
                    write_secrets(&secrets, &map)?;
                }
            } else {
                map.insert(receiver.clone(), found);
                write_secrets(&secrets, &map)?;
            }
            c.execute(
                "INSERT INTO notify_settings (receiver, settings, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(receiver) DO UPDATE SET settings = ?2, updated_at = ?3",
                params![receiver, v.to_string(), unix_now()],
            )?;
            Ok(())
        })
        .await
    }
}

/// A group's notified alerts as stored.
#[derive(Debug, Clone)]
pub struct StoredGroup {
    pub key: String,
    pub route: usize,
    pub receiver: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Every alert the group holds: firing, acknowledged, and resolved ones whose
    /// resolve waits for the next flush.
    pub alerts: Vec<AlertEvent>,
    /// Fingerprints already notified as firing; `None` (a group saved by an older
    /// release) means every alert.
    pub notified: Option<Vec<String>>,
}

/// Replaces a group's state inside a transaction; an empty list forgets the group.
fn save_group(c: &Connection, g: &StoredGroup) -> Result<(), OutboxError> {
    if g.alerts.is_empty() {
        c.execute("DELETE FROM notify_groups WHERE group_key = ?1", [&g.key])?;
    } else {
        c.prepare_cached(
            "INSERT INTO notify_groups (group_key, route, receiver, labels, alerts, updated_at, notified)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(group_key) DO UPDATE SET route = ?2, receiver = ?3,
               labels = ?4, alerts = ?5, updated_at = ?6, notified = ?7",
        )?
        .execute(params![
            g.key,
            g.route as i64,
            g.receiver,
            serde_json::to_string(&g.labels)?,
            serde_json::to_string(&g.alerts)?,
            unix_now(),
            g.notified.as_ref().map(serde_json::to_string).transpose()?,
        ])?;
    }
    Ok(())
}

impl Outbox {
    /// Every stored group.
    pub async fn groups(&self) -> Result<Vec<StoredGroup>, OutboxError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT group_key, route, receiver, labels, alerts, notified FROM notify_groups",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (key, route, receiver, labels, alerts, notified) = row?;
                out.push(StoredGroup {
                    key,
                    route: route as usize,
                    receiver,
                    labels: serde_json::from_str(&labels)?,
                    alerts: serde_json::from_str(&alerts)?,
                    notified: notified.map(|n| serde_json::from_str(&n)).transpose()?,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::test_event;
    use crate::notify::{AlertState, Kind};

    fn n(name: &str) -> Notification {
        Notification {
            receiver: "r".into(),
            kind: Kind::Alert,
            group_key: name.into(),
            group_labels: Default::default(),
            alerts: vec![test_event(name, AlertState::Firing)],
        }
    }

    #[tokio::test]
    async fn rows_survive_reopening_and_lanes_deliver_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m4watch.db");
        {
            let o = Outbox::open(&path).unwrap();
            o.enqueue(vec![
                ("r".into(), "slack", n("A")),
                ("r".into(), "slack", n("B")),
                ("r".into(), "email", n("A")),
            ])
            .await
            .unwrap();
        }
        let o = Outbox::open(&path).unwrap();
        assert_eq!(o.pending_count().await.unwrap(), 3);
        let heads = o.heads().await.unwrap();
        assert_eq!(heads.len(), 2, "one head per lane");
        let slack = heads.iter().find(|h| h.integration == "slack").unwrap();
        assert_eq!(slack.notification.group_key, "A");
        o.delivered(slack.id, 1).await.unwrap();
        let heads = o.heads().await.unwrap();
        let slack = heads.iter().find(|h| h.integration == "slack").unwrap();
        assert_eq!(slack.notification.group_key, "B");
        o.failed(slack.id, 1, None, "client_error", "HTTP 400".into())
            .await
            .unwrap();
        assert_eq!(o.pending_count().await.unwrap(), 1);
        let recent = o.recent(10).await.unwrap();
        assert_eq!(recent[0].status, "pending");
        assert_eq!(recent[1].status, "failed");
        assert_eq!(recent[1].last_reason.as_deref(), Some("client_error"));
        assert_eq!(recent[2].status, "delivered");
        assert_eq!(recent[2].title, "[FIRING:1] A");
    }

    /// Issue 25: a head moved aside stops holding its lane; it stays pending at the
    /// head of the lane's aside queue, and a later notification of its group follows
    /// it there rather than overtaking it.
    #[tokio::test]
    async fn a_head_moved_aside_frees_its_lane_and_keeps_its_groups_order() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(&dir.path().join("m4watch.db")).unwrap();
        let ids = o
            .enqueue(vec![
                ("r".into(), "slack", n("X")),
                ("r".into(), "slack", n("Y")),
                ("r".into(), "slack", n("X")),
            ])
            .await
            .unwrap();
        o.move_aside(ids[0]).await.unwrap();
        let heads = o.heads().await.unwrap();
        let main = heads.iter().find(|h| !h.aside).unwrap();
        let aside = heads.iter().find(|h| h.aside).unwrap();
        assert_eq!((main.id, main.behind_aside), (ids[1], false));
        assert_eq!(aside.id, ids[0]);
        o.delivered(ids[1], 1).await.unwrap();
        let heads = o.heads().await.unwrap();
        let main = heads.iter().find(|h| !h.aside).unwrap();
        assert_eq!(main.id, ids[2]);
        assert!(
            main.behind_aside,
            "X's later notification waits behind the first"
        );
        assert_eq!(o.pending_count().await.unwrap(), 2, "nothing dropped");
    }

    #[test]
    fn a_file_from_when_the_outbox_had_its_own_version_keeps_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m4watch.db");
        // The alert tables at user_version 1, the notifier's at notify_schema 2, one
        // notification queued: a data directory of the release before one schema.
        let legacy = Connection::open(&path).unwrap();
        legacy
            .execute_batch(
                "CREATE TABLE alerts (id TEXT PRIMARY KEY);
                 CREATE TABLE alert_transitions (seq INTEGER PRIMARY KEY);
                 CREATE TABLE silences (id TEXT PRIMARY KEY);
                 PRAGMA user_version = 1;
                 CREATE TABLE notify_schema (version INTEGER NOT NULL);
                 INSERT INTO notify_schema VALUES (2);
                 CREATE TABLE notify_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,
                   receiver TEXT NOT NULL, integration TEXT NOT NULL, payload TEXT NOT NULL,
                   status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                   created_at REAL NOT NULL, next_attempt_at REAL NOT NULL,
                   finished_at REAL, last_reason TEXT, last_error TEXT);
                 CREATE TABLE notify_settings (receiver TEXT PRIMARY KEY,
                   settings TEXT NOT NULL, updated_at REAL NOT NULL);
                 CREATE TABLE notify_groups (group_key TEXT PRIMARY KEY, route INTEGER NOT NULL,
                   receiver TEXT NOT NULL, labels TEXT NOT NULL, alerts TEXT NOT NULL,
                   updated_at REAL NOT NULL);",
            )
            .unwrap();
        let n = Notification {
            receiver: "ops".into(),
            kind: Kind::Alert,
            group_key: "A".into(),
            group_labels: Default::default(),
            alerts: vec![test_event("A", AlertState::Firing)],
        };
        legacy
            .execute(
                "INSERT INTO notify_outbox (receiver, integration, payload, status, created_at, next_attempt_at)
                 VALUES ('ops', 'slack', ?1, 'pending', 0, 0)",
                params![serde_json::to_string(&n).unwrap()],
            )
            .unwrap();
        drop(legacy);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let o = Outbox::open(&path).unwrap();
        assert_eq!(
            rt.block_on(o.pending_count()).unwrap(),
            1,
            "the queue survives"
        );
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 6, "one version for the whole file");
        let old: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'notify_schema'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "the outbox's own version table is gone");
    }

    /// Secrets set through the configure API are not in `m4watch.db`: a copy of the
    /// database alone reveals none. They live in a 0600 `secrets.json` beside it, and
    /// settings an older release stored whole are split on open.
    #[test]
    fn api_secrets_stay_out_of_the_database() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m4watch.db");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let settings = r##"{"slack_webhook":"https://hooks.example/T0/B0/SLACKSECRET","slack_channel":"#desk","pagerduty_routing_key":"PDSECRET","email":{"smarthost":"smtp:587","from":"a@b","to":["c@d"],"username":"u","password":"SMTPSECRET"}}"##;
        let o = Outbox::open(&db).unwrap();
        rt.block_on(o.put_settings("desk".into(), settings.into()))
            .unwrap();
        let raw: String = Connection::open(&db)
            .unwrap()
            .query_row("SELECT settings FROM notify_settings", [], |r| r.get(0))
            .unwrap();
        for secret in ["SLACKSECRET", "PDSECRET", "SMTPSECRET"] {
            assert!(!raw.contains(secret), "{secret} in the database: {raw}");
        }
        assert!(raw.contains("#desk") && raw.contains("smtp:587"), "{raw}");
        let file = dir.path().join("secrets.json");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = rt.block_on(o.settings()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&back[0].1).unwrap();
        let want: serde_json::Value = serde_json::from_str(settings).unwrap();
        assert_eq!(v, want, "read back whole");
        drop(o);

        // A database from before: the secrets sit in the settings row.
        std::fs::remove_file(&file).unwrap();
        Connection::open(&db)
            .unwrap()
            .execute("UPDATE notify_settings SET settings = ?1", [settings])
            .unwrap();
        let o = Outbox::open(&db).unwrap();
        let raw: String = Connection::open(&db)
            .unwrap()
            .query_row("SELECT settings FROM notify_settings", [], |r| r.get(0))
            .unwrap();
        assert!(!raw.contains("SLACKSECRET"), "moved out on open: {raw}");
        let back = rt.block_on(o.settings()).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&back[0].1).unwrap(),
            want
        );
    }
}
