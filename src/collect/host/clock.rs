//! Clock synchronisation as the kernel's clock discipline reports it: Linux
//! `adjtimex` with no mode bits set, which only reads (no privilege needed), as
//! node_exporter's timex collector does.
//!
//! [`ClockReading::from_timex`] is the pure conversion of the `struct timex` fields and
//! is unit-tested; [`read`] is the one syscall. What the kernel holds is what a time
//! daemon fed it: ntpd, systemd-timesyncd and PTP daemons keep the offset and error
//! bounds up to date, chrony disciplines the clock itself and leaves the kernel's offset
//! at 0 (its own `chronyc tracking` is the reference there).
//!
//! macOS: XNU has `ntp_adjtime`, but macOS's time daemon (`timed`) sets and slews the
//! clock without the kernel's NTP discipline, so `STA_UNSYNC` stays set and the offset 0
//! on a Mac whose clock is fine. Exporting that would page "unsynchronised" forever, so
//! the clock families are absent on macOS; the clock's offset there comes from the SNTP
//! probe of `host.clock.ntp_servers` ([`super::sntp`]), which runs on every OS.

use crate::model::{Kind, MetricDef, def};
use crate::store::Family;

pub(crate) const CLOCK_SYNCHRONIZED: MetricDef = def(
    "m4watch_clock_synchronized",
    Kind::Gauge,
    &[],
    "1 if the kernel's clock discipline counts the clock as synchronised (adjtimex neither returns TIME_ERROR nor sets STA_UNSYNC), 0 if not; Linux only.",
);

pub(crate) const CLOCK_OFFSET_SECONDS: MetricDef = def(
    "m4watch_clock_offset_seconds",
    Kind::Gauge,
    &[],
    "Offset between the system clock and the reference that the time daemon last gave the kernel's discipline (adjtimex offset); 0 under chrony, which corrects the clock itself; Linux only.",
);

pub(crate) const CLOCK_ESTIMATED_ERROR_SECONDS: MetricDef = def(
    "m4watch_clock_estimated_error_seconds",
    Kind::Gauge,
    &[],
    "The time daemon's estimate of the system clock's error (adjtimex esterror); Linux only.",
);

pub(crate) const CLOCK_MAX_ERROR_SECONDS: MetricDef = def(
    "m4watch_clock_max_error_seconds",
    Kind::Gauge,
    &[],
    "Upper bound of the system clock's error (adjtimex maxerror): the kernel adds 500 microseconds a second until a time daemon resets it, and marks the clock unsynchronised at 16 seconds; Linux only.",
);

pub(crate) const CLOCK_FREQUENCY_ADJUSTMENT_RATIO: MetricDef = def(
    "m4watch_clock_frequency_adjustment_ratio",
    Kind::Gauge,
    &[],
    "How much faster (positive) or slower the kernel runs the system clock to keep it in step, as a ratio (adjtimex freq: 1e-6 is one part per million); Linux only.",
);

pub(crate) const CLOCK_TAI_OFFSET_SECONDS: MetricDef = def(
    "m4watch_clock_tai_offset_seconds",
    Kind::Gauge,
    &[],
    "TAI minus UTC as the time daemon told the kernel (37 since 2017); absent while no daemon has set it; Linux only.",
);

/// The clock section's families, for the catalogue.
pub(crate) const METRICS: &[MetricDef] = &[
    CLOCK_SYNCHRONIZED,
    CLOCK_OFFSET_SECONDS,
    CLOCK_ESTIMATED_ERROR_SECONDS,
    CLOCK_MAX_ERROR_SECONDS,
    CLOCK_FREQUENCY_ADJUSTMENT_RATIO,
    CLOCK_TAI_OFFSET_SECONDS,
];

/// The `struct timex` fields m4watch reads, with the call's return value (the clock
/// state), as plain integers.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timex {
    /// `adjtimex`'s return value: `TIME_OK` .. `TIME_ERROR`.
    pub state: i64,
    pub status: i64,
    /// Microseconds, or nanoseconds when `status` has `STA_NANO`.
    pub offset: i64,
    /// Parts per million, scaled by 2^16.
    pub freq: i64,
    /// Microseconds.
    pub maxerror: i64,
    /// Microseconds.
    pub esterror: i64,
    /// Seconds.
    pub tai: i64,
}

/// `include/uapi/linux/timex.h`; XNU's `sys/timex.h` has the same values.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it
const TIME_ERROR: i64 = 5;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it
const STA_UNSYNC: i64 = 0x0040;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it
const STA_NANO: i64 = 0x2000;

/// One reading in base units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ClockReading {
    pub synchronized: bool,
    pub offset_seconds: f64,
    pub estimated_error_seconds: f64,
    pub max_error_seconds: f64,
    pub frequency_adjustment_ratio: f64,
    /// `None` while no daemon has set it (the kernel starts at 0).
    pub tai_offset_seconds: Option<f64>,
}

impl ClockReading {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it
    pub(crate) fn from_timex(t: &Timex) -> Self {
        let offset_unit = if t.status & STA_NANO != 0 { 1e-9 } else { 1e-6 };
        ClockReading {
            synchronized: t.state != TIME_ERROR && t.status & STA_UNSYNC == 0,
            offset_seconds: t.offset as f64 * offset_unit,
            estimated_error_seconds: t.esterror as f64 * 1e-6,
            max_error_seconds: t.maxerror as f64 * 1e-6,
            frequency_adjustment_ratio: t.freq as f64 / 65536.0 * 1e-6,
            tai_offset_seconds: (t.tai != 0).then_some(t.tai as f64),
        }
    }
}

/// The clock families of `r`; every one empty (absent) when the platform has no
/// reading.
pub(crate) fn families(r: Option<&ClockReading>) -> Vec<Family> {
    let value = |d: &MetricDef, v: Option<f64>| {
        let mut f = Family::new(d);
        if let Some(v) = v {
            f.push_value(v);
        }
        f
    };
    vec![
        value(
            &CLOCK_SYNCHRONIZED,
            r.map(|r| if r.synchronized { 1.0 } else { 0.0 }),
        ),
        value(&CLOCK_OFFSET_SECONDS, r.map(|r| r.offset_seconds)),
        value(
            &CLOCK_ESTIMATED_ERROR_SECONDS,
            r.map(|r| r.estimated_error_seconds),
        ),
        value(&CLOCK_MAX_ERROR_SECONDS, r.map(|r| r.max_error_seconds)),
        value(
            &CLOCK_FREQUENCY_ADJUSTMENT_RATIO,
            r.map(|r| r.frequency_adjustment_ratio),
        ),
        value(
            &CLOCK_TAI_OFFSET_SECONDS,
            r.and_then(|r| r.tai_offset_seconds),
        ),
    ]
}

/// The kernel's clock state, read with `adjtimex` and no mode bits (read-only).
#[cfg(target_os = "linux")]
pub(crate) fn read() -> std::io::Result<Timex> {
    // SAFETY: an all-zero timex is valid input; `modes == 0` asks only to read.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable timex.
    let state = unsafe { libc::adjtimex(&mut t) };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Timex {
        state: state.into(),
        status: t.status.into(),
        offset: t.offset as i64,
        freq: t.freq as i64,
        maxerror: t.maxerror as i64,
        esterror: t.esterror as i64,
        tai: t.tai.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disciplined_clock_in_nanosecond_mode() {
        // ntpd with STA_PLL | STA_NANO: 250 µs ahead, 12.5 ppm fast.
        let r = ClockReading::from_timex(&Timex {
            state: 0,
            status: 0x2001,
            offset: 250_000,
            freq: 12 * 65536 + 32768,
            maxerror: 8_000,
            esterror: 120,
            tai: 37,
        });
        assert!(r.synchronized);
        assert!((r.offset_seconds - 250e-6).abs() < 1e-15);
        assert!((r.frequency_adjustment_ratio - 12.5e-6).abs() < 1e-15);
        assert!((r.max_error_seconds - 0.008).abs() < 1e-15);
        assert!((r.estimated_error_seconds - 120e-6).abs() < 1e-15);
        assert_eq!(r.tai_offset_seconds, Some(37.0));
    }

    #[test]
    fn microsecond_mode_and_a_negative_offset() {
        let r = ClockReading::from_timex(&Timex {
            status: 0x0001,
            offset: -1_500,
            freq: -65536,
            ..Timex::default()
        });
        assert!((r.offset_seconds + 0.0015).abs() < 1e-15);
        assert!((r.frequency_adjustment_ratio + 1e-6).abs() < 1e-18);
        assert_eq!(r.tai_offset_seconds, None);
    }

    #[test]
    fn unsync_flag_or_time_error_is_unsynchronised() {
        // A clock no daemon has touched: TIME_ERROR, STA_UNSYNC, maxerror at 16 s.
        let idle = Timex {
            state: TIME_ERROR,
            status: STA_UNSYNC,
            maxerror: 16_000_000,
            esterror: 16_000_000,
            ..Timex::default()
        };
        let r = ClockReading::from_timex(&idle);
        assert!(!r.synchronized);
        assert_eq!(r.max_error_seconds, 16.0);
        // The flag alone (a daemon that left it set) is enough; so is TIME_ERROR alone
        // (STA_CLOCKERR, a PPS signal lost).
        let flag = Timex { state: 0, ..idle };
        assert!(!ClockReading::from_timex(&flag).synchronized);
        let error = Timex { status: 0, ..idle };
        assert!(!ClockReading::from_timex(&error).synchronized);
    }

    #[test]
    fn without_a_reading_every_family_is_absent() {
        let fams = families(None);
        assert_eq!(fams.len(), METRICS.len());
        assert!(fams.iter().all(|f| f.samples.is_empty()));
        let r = ClockReading::from_timex(&Timex::default());
        let fams = families(Some(&r));
        let synced = fams
            .iter()
            .find(|f| f.name == CLOCK_SYNCHRONIZED.name)
            .unwrap();
        assert_eq!(synced.samples[0].value, 1.0);
        let tai = fams
            .iter()
            .find(|f| f.name == CLOCK_TAI_OFFSET_SECONDS.name)
            .unwrap();
        assert!(tai.samples.is_empty(), "a TAI offset of 0 is unset");
    }
}
