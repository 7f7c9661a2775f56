//! Stamps what `m4watch --version` and `m4watch_build_info` say into the binary: the
//! git revision, the build date, the rustc version and the target.
//!
//! Nothing else: link flags for a deployment (the position-dependent link the Docker
//! image uses) belong to that deployment's recipe, not to every build.
//!
//! The revision comes from git; in a source archive made by `scripts/release.sh` (no
//! `.git`), from the `REVISION` file `git archive` fills in (`export-subst` in
//! `.gitattributes`); otherwise it is "unknown". The build date honours
//! `SOURCE_DATE_EPOCH` (reproducible builds), else it is the time of the build.
use std::process::Command;

fn main() {
    // Only paths that exist: cargo reruns a script whose watched path is missing on
    // every build, and a new build date would then rebuild the crate every time. A
    // worktree's HEAD lives in its own git dir, its branches in the common one.
    let git_dirs = [
        output("git", &["rev-parse", "--git-dir"]).map(|d| format!("{d}/HEAD")),
        output("git", &["rev-parse", "--git-common-dir"]).map(|d| format!("{d}/refs/heads")),
        Some("REVISION".into()),
    ];
    for p in git_dirs.into_iter().flatten() {
        if std::path::Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rustc-env=M4WATCH_REVISION={}", revision());
    println!("cargo:rustc-env=M4WATCH_BUILD_DATE={}", build_date());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=M4WATCH_RUSTC_VERSION={rustc_version}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=M4WATCH_TARGET={target}");
}

/// Trimmed standard output of a command that succeeded with some output.
fn output(cmd: &str, args: &[&str]) -> Option<String> {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn revision() -> String {
    if std::path::Path::new(".git").exists()
        && let Some(rev) = output("git", &["rev-parse", "--short=12", "HEAD"])
    {
        return rev;
    }
    // `git archive` replaced the placeholder with the commit; in a checkout it is
    // still the placeholder, which says nothing.
    std::fs::read_to_string("REVISION")
        .ok()
        .map(|s| s.trim().chars().take(12).collect::<String>())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".into())
}

/// `YYYY-MM-DDTHH:MM:SSZ` of `SOURCE_DATE_EPOCH` or now.
fn build_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
