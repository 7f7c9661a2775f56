//! The macOS launchd jobs: `m4watch install-launchd` / `uninstall-launchd` for the
//! per-user agent (a laptop: runs while someone is logged in), and with `--system` the
//! daemon (an unattended host: runs from boot, as a named user).
//!
//! Rendering the plists and the newsyslog entry, choosing the user, and laying the
//! files out under a root directory are platform-free (and tested here, the layout
//! into a temporary root); loading needs `launchctl`, so installing is macOS-only and
//! says so elsewhere.

use std::path::{Path, PathBuf};

/// launchd label, also the plist's file name.
pub const LABEL: &str = "com.m4watch.agent";

/// The shipped template (`packaging/macos/com.m4watch.agent.plist`).
pub const TEMPLATE: &str = include_str!("../packaging/macos/com.m4watch.agent.plist");

/// The daemon's launchd label, also its plist's file name.
pub const DAEMON_LABEL: &str = "com.m4watch.daemon";

/// The shipped daemon template (`packaging/macos/com.m4watch.daemon.plist`).
pub const DAEMON_TEMPLATE: &str = include_str!("../packaging/macos/com.m4watch.daemon.plist");

/// The shipped newsyslog entry (`packaging/macos/m4watch.newsyslog.conf`).
pub const NEWSYSLOG_TEMPLATE: &str = include_str!("../packaging/macos/m4watch.newsyslog.conf");

/// Why installing or removing the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchdError {
    #[error("{0} manages a macOS launchd agent; this system is {1}")]
    NotMacos(&'static str, &'static str),
    #[error("{0} manages a macOS launchd daemon; this system is {1}")]
    NotMacosDaemon(&'static str, &'static str),
    #[error("HOME is not set, so there is no ~/Library/LaunchAgents")]
    NoHome,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("launchctl {args}: {detail}")]
    Launchctl { args: String, detail: String },
    #[error("{0} writes to /Library and /etc: run it with sudo")]
    NeedsRoot(&'static str),
    #[error(
        "the daemon would run as root: pass --user NAME (the account whose processes it \
         should read), or --user root to run it as root on purpose"
    )]
    WouldBeRoot,
    #[error("no user named {0:?} on this system")]
    NoSuchUser(String),
}

/// Escapes text for a plist `<string>`.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The agent's plist for this binary, optional config file, working and log directory.
pub fn render_plist(
    binary: &Path,
    config: Option<&Path>,
    working_dir: &Path,
    log_dir: &Path,
) -> String {
    TEMPLATE
        .replace("@BINARY@", &xml_escape(&binary.display().to_string()))
        .replace("@CONFIG_ARGS@", &config_args(config))
        .replace(
            "@WORKING_DIR@",
            &xml_escape(&working_dir.display().to_string()),
        )
        .replace("@LOG_DIR@", &xml_escape(&log_dir.display().to_string()))
}

/// The `--config.file FILE` arguments, as plist `<string>`s, or nothing.
fn config_args(config: Option<&Path>) -> String {
    match config {
        Some(c) => format!(
            "\t\t<string>--config.file</string>\n\t\t<string>{}</string>\n",
            xml_escape(&c.display().to_string())
        ),
        None => String::new(),
    }
}

/// The daemon's plist: this binary, optional config file, the user it runs as (and
/// that user's home, for HOME), its working and log directory.
pub fn render_daemon_plist(
    binary: &Path,
    config: Option<&Path>,
    user: (&str, &Path),
    working_dir: &Path,
    log_dir: &Path,
) -> String {
    DAEMON_TEMPLATE
        .replace("@BINARY@", &xml_escape(&binary.display().to_string()))
        .replace("@CONFIG_ARGS@", &config_args(config))
        .replace("@USER@", &xml_escape(user.0))
        .replace("@HOME@", &xml_escape(&user.1.display().to_string()))
        .replace(
            "@WORKING_DIR@",
            &xml_escape(&working_dir.display().to_string()),
        )
        .replace("@LOG_DIR@", &xml_escape(&log_dir.display().to_string()))
}

/// The newsyslog entry for the daemon's log in `log_dir`, owned by `uid:gid`.
pub fn render_newsyslog(log_dir: &Path, uid: u32, gid: u32) -> String {
    NEWSYSLOG_TEMPLATE
        .replace("@LOG_DIR@", &log_dir.display().to_string())
        .replace("@OWNER@", &format!("{uid}:{gid}"))
}

/// Who the daemon runs as: the `--user` given (root included, on purpose); else the
/// user who ran sudo; else the current user; never root by default.
pub fn daemon_user(
    explicit: Option<&str>,
    sudo_user: Option<&str>,
    current: Option<&str>,
) -> Result<String, LaunchdError> {
    if let Some(u) = explicit {
        return Ok(u.to_string());
    }
    [sudo_user, current]
        .into_iter()
        .flatten()
        .find(|u| !u.is_empty() && *u != "root")
        .map(str::to_string)
        .ok_or(LaunchdError::WouldBeRoot)
}

/// A Homebrew install's binary by its stable `opt` link rather than its versioned
/// Cellar path (`…/Cellar/m4watch/0.1.0/bin/m4watch` -> `…/opt/m4watch/bin/m4watch`),
/// so the daemon survives `brew upgrade`; anything else unchanged.
pub fn stable_binary(binary: &Path) -> PathBuf {
    let parts: Vec<_> = binary.components().collect();
    let cellar = parts
        .windows(2)
        .position(|w| w[0].as_os_str() == "Cellar" && w[1].as_os_str() == "m4watch");
    match cellar {
        Some(i) if parts.len() > i + 3 => {
            let mut p: PathBuf = parts[..i].iter().collect();
            p.push("opt/m4watch");
            p.extend(&parts[i + 3..]);
            p
        }
        _ => binary.to_path_buf(),
    }
}

/// An account the daemon can run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl Account {
    /// Looks `name` up in the user database.
    #[cfg(unix)]
    pub fn lookup(name: &str) -> Result<Account, LaunchdError> {
        let missing = || LaunchdError::NoSuchUser(name.to_string());
        let c = std::ffi::CString::new(name).map_err(|_| missing())?;
        // SAFETY: passwd is plain data; getpwnam_r writes into it and `buf` only, and
        // `found` points at `pw` or is null.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found)
        };
        if rc != 0 || found.is_null() {
            return Err(missing());
        }
        // SAFETY: pw_dir points into `buf`, NUL-terminated.
        let home = unsafe { std::ffi::CStr::from_ptr(pw.pw_dir) };
        Ok(Account {
            name: name.to_string(),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            home: PathBuf::from(home.to_string_lossy().into_owned()),
        })
    }

    /// The account running this process, by name.
    #[cfg(unix)]
    pub fn current_name() -> Option<String> {
        // SAFETY: as in `lookup`, with getpwuid_r.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                libc::getuid(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return None;
        }
        // SAFETY: pw_name points into `buf`, NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
        name.to_str().ok().map(str::to_string)
    }
}

/// Where the daemon's files go, below `root` (`/` on a Mac; a temporary directory in
/// the tests).
#[derive(Debug, Clone)]
pub struct SystemLayout {
    pub root: PathBuf,
}

impl SystemLayout {
    /// `/Library/LaunchDaemons/com.m4watch.daemon.plist`.
    pub fn plist(&self) -> PathBuf {
        self.root
            .join("Library/LaunchDaemons")
            .join(format!("{DAEMON_LABEL}.plist"))
    }
    /// `/etc/newsyslog.d/m4watch.conf`.
    pub fn newsyslog(&self) -> PathBuf {
        self.root.join("etc/newsyslog.d/m4watch.conf")
    }
    /// The daemon's working directory; a relative `data_dir` (the default `./data`)
    /// lives below it.
    pub fn working_dir(&self) -> PathBuf {
        self.root.join("Library/Application Support/m4watch")
    }
    /// `/Library/Logs/m4watch`: `m4watch.log`, rotated by newsyslog.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("Library/Logs/m4watch")
    }

    /// Writes the daemon's plist (0644, as launchd requires of a daemon's) and the
    /// newsyslog entry, and makes the working, data and log directories and the log
    /// file, owned by `account` (chown needs root unless it is the caller's own).
    /// `data_dir` is the config's, relative to the working directory unless absolute.
    /// Returns the plist's path.
    #[cfg(unix)]
    pub fn write(
        &self,
        binary: &Path,
        config: Option<&Path>,
        data_dir: &Path,
        account: &Account,
    ) -> Result<PathBuf, LaunchdError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LaunchdError::Io { path, source }
        };
        let owned = |p: &Path| {
            std::os::unix::fs::chown(p, Some(account.uid), Some(account.gid)).map_err(io(p))
        };
        let (working, logs) = (self.working_dir(), self.log_dir());
        let data = working.join(data_dir);
        for d in [&working, &data, &logs] {
            std::fs::create_dir_all(d).map_err(io(d))?;
            owned(d)?;
        }
        let log = logs.join("m4watch.log");
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .map_err(io(&log))?;
        owned(&log)?;
        let plist = self.plist();
        let files = [
            (
                plist.clone(),
                render_daemon_plist(
                    binary,
                    config,
                    (&account.name, &account.home),
                    &working,
                    &logs,
                ),
            ),
            (
                self.newsyslog(),
                render_newsyslog(&logs, account.uid, account.gid),
            ),
        ];
        for (path, text) in files {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            std::fs::write(&path, text).map_err(io(&path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .map_err(io(&path))?;
        }
        Ok(plist)
    }

    /// Removes the plist and the newsyslog entry (absent ones are fine); the data and
    /// the logs stay. Returns the removed paths.
    pub fn remove(&self) -> Result<Vec<PathBuf>, LaunchdError> {
        let mut gone = Vec::new();
        for path in [self.plist(), self.newsyslog()] {
            match std::fs::remove_file(&path) {
                Ok(()) => gone.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(LaunchdError::Io { path, source }),
            }
        }
        Ok(gone)
    }
}

/// Installs and starts the daemon: runs as `user` (see [`daemon_user`]), this binary
/// with `--config.file config`, its data in `data_dir` (the config's). Returns the
/// plist's path.
#[cfg(target_os = "macos")]
pub fn install_system(
    config: Option<&Path>,
    data_dir: &Path,
    user: Option<&str>,
) -> Result<PathBuf, LaunchdError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LaunchdError::NeedsRoot("install-launchd --system"));
    }
    let sudo_user = std::env::var("SUDO_USER").ok();
    let name = daemon_user(
        user,
        sudo_user.as_deref(),
        Account::current_name().as_deref(),
    )?;
    let account = Account::lookup(&name)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LaunchdError::Io { path, source }
    };
    let binary = std::env::current_exe().map_err(io(Path::new("current executable")))?;
    let config = match config {
        Some(c) => Some(std::fs::canonicalize(c).map_err(io(c))?),
        None => None,
    };
    let layout = SystemLayout { root: "/".into() };
    let target = format!("system/{DAEMON_LABEL}");
    // Replacing an installed daemon: unload the old one first (it may not be loaded).
    let _ = launchctl(&["bootout", &target]);
    let plist = layout.write(
        &stable_binary(&binary),
        config.as_deref(),
        data_dir,
        &account,
    )?;
    launchctl(&["bootstrap", "system", &plist.display().to_string()])?;
    Ok(plist)
}

/// Elsewhere: says the daemon is macOS's.
#[cfg(not(target_os = "macos"))]
pub fn install_system(
    _config: Option<&Path>,
    _data_dir: &Path,
    _user: Option<&str>,
) -> Result<PathBuf, LaunchdError> {
    Err(LaunchdError::NotMacosDaemon(
        "install-launchd --system",
        std::env::consts::OS,
    ))
}

/// Stops the daemon and removes its plist and newsyslog entry; the data directory and
/// the logs stay. Returns the removed paths.
#[cfg(target_os = "macos")]
pub fn uninstall_system() -> Result<Vec<PathBuf>, LaunchdError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LaunchdError::NeedsRoot("uninstall-launchd --system"));
    }
    let _ = launchctl(&["bootout", &format!("system/{DAEMON_LABEL}")]);
    SystemLayout { root: "/".into() }.remove()
}

/// Elsewhere: says the daemon is macOS's.
#[cfg(not(target_os = "macos"))]
pub fn uninstall_system() -> Result<Vec<PathBuf>, LaunchdError> {
    Err(LaunchdError::NotMacosDaemon(
        "uninstall-launchd --system",
        std::env::consts::OS,
    ))
}

/// `~/Library/LaunchAgents/com.m4watch.agent.plist`.
pub fn plist_path(home: &Path) -> PathBuf {
    home.join("Library/LaunchAgents")
        .join(format!("{LABEL}.plist"))
}

/// Writes the agent for the running binary and loads it with `launchctl bootstrap`.
/// Returns the plist's path.
pub fn install(config: Option<&Path>) -> Result<PathBuf, LaunchdError> {
    if !cfg!(target_os = "macos") {
        return Err(LaunchdError::NotMacos(
            "install-launchd",
            std::env::consts::OS,
        ));
    }
    let home = PathBuf::from(std::env::var_os("HOME").ok_or(LaunchdError::NoHome)?);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LaunchdError::Io { path, source }
    };
    let binary = std::env::current_exe().map_err(io(Path::new("current executable")))?;
    // launchd starts agents in /, so relative paths (data_dir: ./data) need a home.
    let working = home.join("Library/Application Support/m4watch");
    let logs = home.join("Library/Logs/m4watch");
    for d in [&working, &logs] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let config = match config {
        Some(c) => Some(std::fs::canonicalize(c).map_err(io(c))?),
        None => None,
    };
    let plist = plist_path(&home);
    if let Some(dir) = plist.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // Replacing an installed agent: unload the old one first (it may not be loaded).
    let _ = launchctl(&["bootout", &format!("{}/{LABEL}", gui_domain())]);
    std::fs::write(
        &plist,
        render_plist(&binary, config.as_deref(), &working, &logs),
    )
    .map_err(io(&plist))?;
    launchctl(&["bootstrap", &gui_domain(), &plist.display().to_string()])?;
    Ok(plist)
}

/// Unloads the agent and removes its plist. Returns the removed path.
pub fn uninstall() -> Result<PathBuf, LaunchdError> {
    if !cfg!(target_os = "macos") {
        return Err(LaunchdError::NotMacos(
            "uninstall-launchd",
            std::env::consts::OS,
        ));
    }
    let home = PathBuf::from(std::env::var_os("HOME").ok_or(LaunchdError::NoHome)?);
    let plist = plist_path(&home);
    let _ = launchctl(&["bootout", &format!("{}/{LABEL}", gui_domain())]);
    match std::fs::remove_file(&plist) {
        Ok(()) => Ok(plist),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(plist),
        Err(source) => Err(LaunchdError::Io {
            path: plist,
            source,
        }),
    }
}

/// The logged-in user's launchd domain, `gui/<uid>`.
fn gui_domain() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    format!("gui/{}", unsafe { libc::getuid() })
}

fn launchctl(args: &[&str]) -> Result<(), LaunchdError> {
    let out = std::process::Command::new("launchctl")
        .args(args)
        .output()
        .map_err(|e| LaunchdError::Launchctl {
            args: args.join(" "),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LaunchdError::Launchctl {
            args: args.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plist_is_valid_and_names_the_binary_config_and_logs() {
        let text = render_plist(
            Path::new("/opt/m4watch/bin/m4watch"),
            Some(Path::new("/etc/m4watch & co/m4watch.yml")),
            Path::new("/Users/t/Library/Application Support/m4watch"),
            Path::new("/Users/t/Library/Logs/m4watch"),
        );
        for p in ["@BINARY@", "@CONFIG_ARGS@", "@WORKING_DIR@", "@LOG_DIR@"] {
            assert!(TEMPLATE.contains(p) && !text.contains(p), "{p} in {text}");
        }
        let v = plist::Value::from_reader_xml(text.as_bytes()).expect("valid plist");
        let d = v.as_dictionary().unwrap();
        assert_eq!(d["Label"].as_string(), Some(LABEL));
        let args: Vec<&str> = d["ProgramArguments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "/opt/m4watch/bin/m4watch",
                "--config.file",
                "/etc/m4watch & co/m4watch.yml"
            ]
        );
        assert_eq!(d["KeepAlive"].as_boolean(), Some(true));
        assert_eq!(
            d["StandardErrorPath"].as_string(),
            Some("/Users/t/Library/Logs/m4watch/m4watch.err.log")
        );
        let bare = render_plist(
            Path::new("/m4watch"),
            None,
            Path::new("/w"),
            Path::new("/l"),
        );
        let v = plist::Value::from_reader_xml(bare.as_bytes()).unwrap();
        assert_eq!(
            v.as_dictionary().unwrap()["ProgramArguments"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    fn strings(v: &plist::Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_string().unwrap())
            .collect()
    }

    #[test]
    fn daemon_plist_runs_as_the_user_from_boot_with_a_throttle_and_its_paths() {
        let text = render_daemon_plist(
            Path::new("/opt/homebrew/opt/m4watch/bin/m4watch"),
            Some(Path::new("/etc/m4watch/m4 & watch.yml")),
            ("desk", Path::new("/Users/desk")),
            Path::new("/Library/Application Support/m4watch"),
            Path::new("/Library/Logs/m4watch"),
        );
        for p in [
            "@BINARY@",
            "@CONFIG_ARGS@",
            "@USER@",
            "@WORKING_DIR@",
            "@LOG_DIR@",
        ] {
            assert!(
                DAEMON_TEMPLATE.contains(p) && !text.contains(p),
                "{p} in {text}"
            );
        }
        let v = plist::Value::from_reader_xml(text.as_bytes()).expect("valid plist");
        let d = v.as_dictionary().unwrap();
        assert_eq!(d["Label"].as_string(), Some(DAEMON_LABEL));
        assert_eq!(d["UserName"].as_string(), Some("desk"));
        assert_eq!(
            d["EnvironmentVariables"].as_dictionary().unwrap()["HOME"].as_string(),
            Some("/Users/desk")
        );
        assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
        assert_eq!(d["KeepAlive"].as_boolean(), Some(true));
        assert_eq!(
            d["ThrottleInterval"].as_signed_integer(),
            Some(10),
            "{text}"
        );
        assert_eq!(
            strings(&d["ProgramArguments"]),
            [
                "/opt/homebrew/opt/m4watch/bin/m4watch",
                "--config.file",
                "/etc/m4watch/m4 & watch.yml",
                "--log.file",
                "/Library/Logs/m4watch/m4watch.log",
            ]
        );
        assert_eq!(
            d["WorkingDirectory"].as_string(),
            Some("/Library/Application Support/m4watch")
        );
        for k in ["StandardOutPath", "StandardErrorPath"] {
            assert_eq!(
                d[k].as_string(),
                Some("/Library/Logs/m4watch/m4watch.log"),
                "{k}"
            );
        }
        // Only the daemon names a user; the agent runs as whoever loads it.
        let agent = render_plist(Path::new("/m"), None, Path::new("/w"), Path::new("/l"));
        let a = plist::Value::from_reader_xml(agent.as_bytes()).unwrap();
        let a = a.as_dictionary().unwrap();
        assert!(a.get("UserName").is_none());
        assert_eq!(a["RunAtLoad"].as_boolean(), Some(true));
        assert_eq!(a["ThrottleInterval"].as_signed_integer(), Some(10));
        // Without a config the daemon still logs to its file.
        let bare = render_daemon_plist(
            Path::new("/m"),
            None,
            ("u", Path::new("/h")),
            Path::new("/w"),
            Path::new("/l"),
        );
        let b = plist::Value::from_reader_xml(bare.as_bytes()).unwrap();
        assert_eq!(
            strings(&b.as_dictionary().unwrap()["ProgramArguments"]),
            ["/m", "--log.file", "/l/m4watch.log"]
        );
    }

    #[test]
    fn the_daemon_runs_as_the_sudo_user_and_as_root_only_when_named() {
        assert_eq!(
            daemon_user(None, Some("desk"), Some("root")).unwrap(),
            "desk"
        );
        assert_eq!(daemon_user(None, None, Some("ana")).unwrap(), "ana");
        assert_eq!(
            daemon_user(Some("ops"), Some("desk"), Some("root")).unwrap(),
            "ops"
        );
        assert_eq!(
            daemon_user(Some("root"), Some("desk"), None).unwrap(),
            "root"
        );
        // `sudo -i` then the installer, or a root shell: refused, with the way out.
        for (sudo, current) in [
            (Some("root"), Some("root")),
            (None, Some("root")),
            (None, None),
        ] {
            let e = daemon_user(None, sudo, current).unwrap_err();
            assert!(e.to_string().contains("--user root"), "{e}");
        }
    }

    #[test]
    fn a_homebrew_binary_is_named_by_its_opt_link() {
        assert_eq!(
            stable_binary(Path::new("/opt/homebrew/Cellar/m4watch/0.1.0/bin/m4watch")),
            Path::new("/opt/homebrew/opt/m4watch/bin/m4watch")
        );
        assert_eq!(
            stable_binary(Path::new("/usr/local/Cellar/m4watch/0.2.0_1/bin/m4watch")),
            Path::new("/usr/local/opt/m4watch/bin/m4watch")
        );
        for p in ["/usr/local/bin/m4watch", "/x/Cellar/other/1/bin/m4watch"] {
            assert_eq!(stable_binary(Path::new(p)), Path::new(p));
        }
    }

    /// The daemon's files laid out under a temporary root: directories and log owned by
    /// the daemon's account (`nobody` when the test runs as root, as CI does; the
    /// caller otherwise), the plist and newsyslog entry readable and naming the same
    /// log file, and removal leaving data and logs.
    #[cfg(unix)]
    #[test]
    fn the_system_layout_is_owned_by_the_daemon_user_and_rotated() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let layout = SystemLayout {
            root: root.path().to_path_buf(),
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let name = if unsafe { libc::geteuid() } == 0 {
            "nobody".to_string()
        } else {
            Account::current_name().expect("the test user has a name")
        };
        let account = Account::lookup(&name).unwrap();
        assert!(Account::lookup("no-such-user-m4watch").is_err());
        let plist = layout
            .write(
                Path::new("/usr/local/bin/m4watch"),
                None,
                Path::new("./data"),
                &account,
            )
            .unwrap();
        assert_eq!(
            plist,
            root.path()
                .join("Library/LaunchDaemons/com.m4watch.daemon.plist")
        );
        let data = layout.working_dir().join("data");
        let log = layout.log_dir().join("m4watch.log");
        for p in [
            layout.working_dir(),
            data.clone(),
            layout.log_dir(),
            log.clone(),
        ] {
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (account.uid, account.gid), "{p:?}");
        }
        let m = std::fs::metadata(&plist).unwrap();
        assert_eq!(m.mode() & 0o777, 0o644);
        let v = plist::Value::from_file(&plist).unwrap();
        let d = v.as_dictionary().unwrap();
        assert_eq!(d["UserName"].as_string(), Some(name.as_str()));
        let home = account.home.display().to_string();
        assert_eq!(
            d["EnvironmentVariables"].as_dictionary().unwrap()["HOME"].as_string(),
            Some(home.as_str())
        );
        let log_s = log.display().to_string();
        assert_eq!(d["StandardErrorPath"].as_string(), Some(log_s.as_str()));
        assert_eq!(
            d["WorkingDirectory"].as_string(),
            Some(layout.working_dir().display().to_string().as_str())
        );
        // newsyslog: `path owner:group mode count size when flags`, one line, for the
        // plist's log, owned by the daemon's account, no signal (m4watch reopens).
        let conf = std::fs::read_to_string(layout.newsyslog()).unwrap();
        let entries: Vec<Vec<&str>> = conf
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(entries.len(), 1, "{conf}");
        let e = &entries[0];
        assert_eq!(e.len(), 7, "{e:?}");
        assert_eq!(e[0], log_s);
        assert_eq!(e[1], format!("{}:{}", account.uid, account.gid));
        assert_eq!(
            (e[2], e[3], e[4], e[5], e[6]),
            ("640", "7", "10240", "*", "N")
        );
        // An absolute data directory is made the user's too.
        let elsewhere = root.path().join("var/m4watch");
        layout
            .write(Path::new("/m"), None, &elsewhere, &account)
            .unwrap();
        assert_eq!(std::fs::metadata(&elsewhere).unwrap().uid(), account.uid);

        let gone = layout.remove().unwrap();
        assert_eq!(gone, [plist.clone(), layout.newsyslog()]);
        assert!(!plist.exists() && data.exists() && log.exists());
        assert!(layout.remove().unwrap().is_empty());
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn elsewhere_install_says_it_is_for_macos() {
        let e = install(None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "install-launchd manages a macOS launchd agent; this system is {}",
                std::env::consts::OS
            )
        );
        assert!(uninstall().is_err());
        let e = install_system(None, Path::new("data"), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("install-launchd --system manages"),
            "{e}"
        );
        assert!(uninstall_system().is_err());
    }
}
