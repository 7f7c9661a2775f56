//! The macOS launchd agent: `m4watch install-launchd` / `uninstall-launchd`.
//!
//! Rendering the plist is platform-free (and tested here); loading it needs `launchctl`,
//! so installing is macOS-only and says so elsewhere.

use std::path::{Path, PathBuf};

/// launchd label, also the plist's file name.
pub const LABEL: &str = "com.m4watch.agent";

/// The shipped template (`packaging/macos/com.m4watch.agent.plist`).
pub const TEMPLATE: &str = include_str!("../packaging/macos/com.m4watch.agent.plist");

/// Why installing or removing the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchdError {
    #[error("{0} manages a macOS launchd agent; this system is {1}")]
    NotMacos(&'static str, &'static str),
    #[error("HOME is not set, so there is no ~/Library/LaunchAgents")]
    NoHome,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("launchctl {args}: {detail}")]
    Launchctl { args: String, detail: String },
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
    let config_args = match config {
        Some(c) => format!(
            "\t\t<string>--config</string>\n\t\t<string>{}</string>\n",
            xml_escape(&c.display().to_string())
        ),
        None => String::new(),
    };
    TEMPLATE
        .replace("@BINARY@", &xml_escape(&binary.display().to_string()))
        .replace("@CONFIG_ARGS@", &config_args)
        .replace(
            "@WORKING_DIR@",
            &xml_escape(&working_dir.display().to_string()),
        )
        .replace("@LOG_DIR@", &xml_escape(&log_dir.display().to_string()))
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
                "--config",
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
    }
}
