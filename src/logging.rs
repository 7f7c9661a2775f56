//! The daemon's log: level, format, colour only on a terminal, and identical
//! consecutive warnings collapsed into one line plus a count.
//!
//! An unattended host with Docker stopped used to log the same collector warning every
//! second. [`Collapse`] wraps the event formatter: a WARN or ERROR event identical to
//! the one before it (same level, target, message and fields) is not written; the run
//! is summarised as "… repeated N times in the last M s" when a different event
//! arrives, and at least every [`SUMMARY_EVERY`] while the run goes on. It keeps one
//! event's hash and a bounded copy of its text, nothing more.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// A run of identical warnings is summarised at least this often.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Longest event text kept for the summary line, in bytes.
const MAX_TEXT: usize = 1024;

/// The log's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// tracing's human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process-wide subscriber writing to standard error. `filter` is an
/// `EnvFilter` directive (`info`, `warn,m4watch=debug`); colour only when `ansi`.
pub fn init(filter: &str, format: Format, ansi: bool) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let done = match format {
        Format::Text => builder
            .event_format(Collapse::new(
                tracing_subscriber::fmt::format(),
                Format::Text,
                SUMMARY_EVERY,
            ))
            .try_init(),
        Format::Json => builder
            .json()
            .event_format(Collapse::new(
                tracing_subscriber::fmt::format().json(),
                Format::Json,
                SUMMARY_EVERY,
            ))
            .try_init(),
    };
    done.map_err(|e| e.to_string())
}

/// True when standard error is a terminal and `NO_COLOR` is unset or empty.
pub fn stderr_wants_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How often [`log_to_file`] checks whether its file was rotated away.
pub const REOPEN_CHECK: Duration = Duration::from_secs(1);

/// Sends standard output and standard error to `path` (appended, created mode 0640)
/// and keeps them there across rotation: a thread checks every [`REOPEN_CHECK`]
/// whether `path` still names the open file and, once newsyslog (or anyone) has moved
/// or removed it, opens `path` afresh onto both. launchd opens a daemon's log once;
/// without this, the daemon would write into the rotated file for ever.
#[cfg(unix)]
pub fn log_to_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    fn open_onto_stdio(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)?;
        for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            // SAFETY: both descriptors are valid; dup2 replaces fd atomically.
            if unsafe { libc::dup2(f.as_raw_fd(), fd) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let m = f.metadata()?;
        Ok((m.dev(), m.ino()))
    }
    let mut open = open_onto_stdio(path)?;
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("log-reopen".into())
        .spawn(move || {
            // Said once per failing stretch, not every second.
            let mut failing = false;
            loop {
                std::thread::sleep(REOPEN_CHECK);
                let now = std::fs::metadata(&path).map(|m| (m.dev(), m.ino())).ok();
                if now != Some(open) {
                    match open_onto_stdio(&path) {
                        Ok(id) => (open, failing) = (id, false),
                        // Kept on the old file; tried again next round.
                        Err(e) if !failing => {
                            failing = true;
                            eprintln!("m4watch: cannot reopen {}: {e}", path.display());
                        }
                        Err(_) => {}
                    }
                }
            }
        })?;
    Ok(())
}

/// An event formatter that drops identical consecutive WARN/ERROR events and writes
/// the count instead.
pub struct Collapse<F> {
    inner: F,
    format: Format,
    every: Duration,
    last: Mutex<Option<Run>>,
}

/// The warning that was written last and how often it came again since.
struct Run {
    key: u64,
    level: Level,
    target: String,
    text: String,
    /// When the count below started.
    since: Instant,
    repeated: u64,
}

impl<F> Collapse<F> {
    /// Wraps `inner`; a run is summarised at least every `every`.
    pub fn new(inner: F, format: Format, every: Duration) -> Self {
        Collapse {
            inner,
            format,
            every,
            last: Mutex::new(None),
        }
    }

    /// Writes "… repeated N times in the last M s" for `run` and restarts its count.
    fn summarise(&self, run: &mut Run, w: &mut Writer<'_>, now: Instant) -> std::fmt::Result {
        let secs = now.duration_since(run.since).as_secs_f64();
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
        let note = format!("… repeated {} times in the last {secs:.0} s", run.repeated);
        match self.format {
            Format::Text => writeln!(
                w,
                "{ts} {:>5} {}: {} {note}",
                run.level, run.target, run.text
            )?,
            Format::Json => {
                let line = serde_json::json!({
                    "timestamp": ts.to_string(),
                    "level": run.level.as_str(),
                    "fields": {
                        "message": format!("{} {note}", run.text),
                        "repeated": run.repeated,
                        "window_seconds": secs.round(),
                    },
                    "target": run.target,
                });
                writeln!(w, "{line}")?;
            }
        }
        run.repeated = 0;
        run.since = now;
        Ok(())
    }
}

impl<S, N, F> FormatEvent<S, N> for Collapse<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut seen = Seen::default();
        event.record(&mut seen);
        let mut h = std::hash::DefaultHasher::new();
        meta.level().hash(&mut h);
        meta.target().hash(&mut h);
        seen.text.hash(&mut h);
        let key = h.finish();
        let now = Instant::now();
        let collapsible = *meta.level() <= Level::WARN;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if collapsible && let Some(run) = last.as_mut().filter(|r| r.key == key) {
            run.repeated += 1;
            if now.duration_since(run.since) >= self.every {
                self.summarise(run, &mut writer, now)?;
            }
            return Ok(());
        }
        if let Some(mut run) = last.take()
            && run.repeated > 0
        {
            self.summarise(&mut run, &mut writer, now)?;
        }
        if collapsible {
            *last = Some(Run {
                key,
                level: *meta.level(),
                target: meta.target().to_string(),
                text: seen.text,
                since: now,
                repeated: 0,
            });
        }
        drop(last);
        self.inner.format_event(ctx, writer, event)
    }
}

/// An event's message and fields as `message k=v …`, at most [`MAX_TEXT`] bytes.
#[derive(Default)]
struct Seen {
    text: String,
}

impl Visit for Seen {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.text.len() >= MAX_TEXT {
            return;
        }
        let _ = if field.name() == "message" {
            write!(
                self.text,
                "{}{value:?}",
                if self.text.is_empty() { "" } else { " " }
            )
        } else {
            write!(self.text, " {}={value:?}", field.name())
        };
        if self.text.len() > MAX_TEXT {
            let mut end = MAX_TEXT;
            while !self.text.is_char_boundary(end) {
                end -= 1;
            }
            self.text.truncate(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(buf: &Buf) -> Vec<String> {
        String::from_utf8(buf.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn text_logger(buf: &Buf, every: Duration) -> impl Subscriber + Send + Sync {
        let buf = buf.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || buf.clone())
            .event_format(Collapse::new(
                tracing_subscriber::fmt::format(),
                Format::Text,
                every,
            ))
            .finish()
    }

    #[test]
    fn identical_warnings_are_written_once_then_counted() {
        let buf = Buf::default();
        tracing::subscriber::with_default(text_logger(&buf, SUMMARY_EVERY), || {
            for _ in 0..96 {
                tracing::warn!(
                    collector = "containers",
                    error = "no socket",
                    "collector failed"
                );
            }
            tracing::info!("shutting down");
        });
        let l = lines(&buf);
        assert_eq!(l.len(), 3, "{l:#?}");
        assert!(
            l[0].contains("WARN") && l[0].contains("collector failed"),
            "{l:#?}"
        );
        assert!(
            l[1].contains(
                "collector failed collector=\"containers\" error=\"no socket\" … repeated 95 times in the last 0 s"
            ),
            "{l:#?}"
        );
        assert!(l[1].contains(" WARN m4watch::logging::tests: "), "{l:#?}");
        assert!(
            l[2].contains("INFO") && l[2].contains("shutting down"),
            "{l:#?}"
        );
    }

    #[test]
    fn different_fields_levels_and_info_lines_are_not_collapsed() {
        let buf = Buf::default();
        tracing::subscriber::with_default(text_logger(&buf, SUMMARY_EVERY), || {
            tracing::warn!(n = 1, "x");
            tracing::warn!(n = 2, "x");
            tracing::error!(n = 2, "x");
            tracing::info!("same");
            tracing::info!("same");
            // A single warning between two identical ones breaks the run.
            tracing::warn!("a");
            tracing::warn!("b");
            tracing::warn!("a");
        });
        let l = lines(&buf);
        assert_eq!(l.len(), 8, "{l:#?}");
        assert!(!l.iter().any(|l| l.contains("repeated")), "{l:#?}");
    }

    #[test]
    fn a_long_run_is_summarised_every_window_and_memory_stays_bounded() {
        let buf = Buf::default();
        let every = Duration::from_millis(100);
        tracing::subscriber::with_default(text_logger(&buf, every), || {
            let long = "y".repeat(100_000);
            for _ in 0..6 {
                tracing::warn!(long = %long, "big");
                std::thread::sleep(Duration::from_millis(60));
            }
        });
        let l = lines(&buf);
        let summaries: Vec<_> = l.iter().filter(|l| l.contains("repeated")).collect();
        // The original line, then a summary once per elapsed window, with no different
        // event to end the run (events 60 ms apart, windows of 100 ms: at least two).
        assert!(summaries.len() >= 2, "{l:#?}");
        assert_eq!(l.len(), 1 + summaries.len(), "{l:#?}");
        for s in summaries {
            assert!(s.contains(" big long=yyy"), "{s}");
            assert!(s.len() < MAX_TEXT + 200, "{}", s.len());
        }
    }

    #[test]
    fn json_summaries_are_json() {
        let buf = Buf::default();
        let b = buf.clone();
        let sub = tracing_subscriber::fmt()
            .json()
            .with_writer(move || b.clone())
            .event_format(Collapse::new(
                tracing_subscriber::fmt::format().json(),
                Format::Json,
                SUMMARY_EVERY,
            ))
            .finish();
        tracing::subscriber::with_default(sub, || {
            for _ in 0..4 {
                tracing::warn!(error = "down", "collector failed");
            }
            tracing::info!("done");
        });
        let l = lines(&buf);
        assert_eq!(l.len(), 3, "{l:#?}");
        let v: Vec<serde_json::Value> =
            l.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(v[0]["fields"]["message"], "collector failed");
        assert_eq!(v[1]["level"], "WARN");
        assert_eq!(v[1]["fields"]["repeated"], 3);
        assert_eq!(
            v[1]["fields"]["message"],
            "collector failed error=\"down\" … repeated 3 times in the last 0 s"
        );
        assert_eq!(v[2]["fields"]["message"], "done");
    }
}
