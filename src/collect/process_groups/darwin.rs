//! What macOS returns for a process, decoded from bytes: `proc_pid_rusage` with
//! `RUSAGE_INFO_V6` (XNU `bsd/sys/resource.h`, `struct rusage_info_v6`) and the
//! `KERN_PROCARGS2` sysctl's argument block. Platform-free so the layouts are tested on
//! Linux with captured-shape bytes.
//!
//! `rusage_info_v6` is a 16-byte UUID followed by `uint64_t` fields that XNU only
//! appends to (each version is the previous one plus fields, with reserved space at
//! the end), so a field's offset is `16 + 8 * index`. Its times are in Mach absolute
//! time units, which are nanoseconds on Intel but 1/24 MHz ticks on Apple Silicon
//! (timebase 125/3): they go through `mach_timebase_info`.

use super::{CoreTime, Counters};

/// `RUSAGE_INFO_V6` (macOS 14+ headers; the first version with per-core-type times
/// and `ri_energy_nj`).
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS source passes it
pub(crate) const RUSAGE_INFO_V6: i32 = 6;
/// `sizeof(struct rusage_info_v6)`: the UUID and 56 `uint64_t` (reserved included).
pub(crate) const RUSAGE_INFO_V6_LEN: usize = 16 + 8 * 56;

/// Field indexes after the UUID.
const RI_USER_TIME: usize = 0;
const RI_SYSTEM_TIME: usize = 1;
const RI_RESIDENT_SIZE: usize = 6;
const RI_PROC_START_ABSTIME: usize = 8;
const RI_RUNNABLE_TIME: usize = 34;
const RI_USER_PTIME: usize = 36;
const RI_SYSTEM_PTIME: usize = 37;
const RI_ENERGY_NJ: usize = 40;

/// `mach_timebase_info`: absolute time units are `numer / denom` nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timebase {
    pub numer: u32,
    pub denom: u32,
}

impl Timebase {
    pub(crate) fn seconds(self, ticks: u64) -> f64 {
        ticks as f64 * f64::from(self.numer) / f64::from(self.denom.max(1)) / 1e9
    }
}

/// One process's `rusage_info_v6`, in base units.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rusage {
    /// Start, in seconds of Mach absolute time (the clock of `mach_absolute_time`).
    pub started: f64,
    pub resident_bytes: u64,
    pub counters: Counters,
}

/// `uint64_t` field `index` after the 16-byte UUID.
fn field(bytes: &[u8], index: usize) -> u64 {
    crate::collect::host::darwin::u64_at(bytes, 16 + index * 8)
}

/// A `rusage_info_v6` buffer shorter than the struct: the kernel filled less than asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rusage_info_v6: {len} bytes, expected {RUSAGE_INFO_V6_LEN}")]
pub(crate) struct ShortRusage {
    pub len: usize,
}

/// Decodes the bytes `proc_pid_rusage(pid, RUSAGE_INFO_V6, ..)` filled.
/// `efficiency_cores`: whether the machine has any (`hw.nperflevels` > 1); an Intel Mac
/// has none and counts no performance-core time either, so all of its time is put on
/// performance cores.
pub(crate) fn decode_rusage_v6(
    bytes: &[u8],
    tb: Timebase,
    efficiency_cores: bool,
) -> Result<Rusage, ShortRusage> {
    if bytes.len() < RUSAGE_INFO_V6_LEN {
        return Err(ShortRusage { len: bytes.len() });
    }
    let s = |i| tb.seconds(field(bytes, i));
    let (user, system) = (s(RI_USER_TIME), s(RI_SYSTEM_TIME));
    let performance = if efficiency_cores {
        // Rounding per field can put the P share a tick above the total.
        (s(RI_USER_PTIME) + s(RI_SYSTEM_PTIME)).min(user + system)
    } else {
        user + system
    };
    Ok(Rusage {
        started: s(RI_PROC_START_ABSTIME),
        resident_bytes: field(bytes, RI_RESIDENT_SIZE),
        counters: Counters {
            user_seconds: Some(user),
            system_seconds: Some(system),
            core: Some(CoreTime::Measured {
                performance,
                efficiency: user + system - performance,
            }),
            scheduling_delay_seconds: Some(s(RI_RUNNABLE_TIME)),
            energy_joules: Some(field(bytes, RI_ENERGY_NJ) as f64 / 1e9),
            ..Counters::default()
        },
    })
}

/// The command line from a `KERN_PROCARGS2` buffer: a native-endian `int argc`, the
/// executable path, NUL padding, then `argc` NUL-terminated arguments (then the
/// environment, which is not read).
pub(crate) fn parse_procargs2(bytes: &[u8]) -> Option<String> {
    let argc = i32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    let rest = &bytes[4..];
    let path_end = rest.iter().position(|&b| b == 0)?;
    let mut at = path_end;
    while rest.get(at) == Some(&0) {
        at += 1;
    }
    let args: Vec<String> = rest[at..]
        .split(|&b| b == 0)
        .take(usize::try_from(argc).ok()?)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPLE_SILICON: Timebase = Timebase {
        numer: 125,
        denom: 3,
    };

    /// A `rusage_info_v6` as an M4 Max fills it: 2.4 s user and 0.6 s system, 2.7 s of
    /// it on P-cores, 0.2 s waiting for a core, 1.5 J.
    fn v6() -> Vec<u8> {
        let mut b = vec![0u8; RUSAGE_INFO_V6_LEN];
        b[..16].copy_from_slice(&[0xab; 16]); // ri_uuid
        let ticks = |secs: f64| (secs * 24_000_000.0) as u64;
        let mut put =
            |i: usize, v: u64| b[16 + i * 8..24 + i * 8].copy_from_slice(&v.to_le_bytes());
        put(RI_USER_TIME, ticks(2.4));
        put(RI_SYSTEM_TIME, ticks(0.6));
        put(RI_RESIDENT_SIZE, 52_428_800);
        put(RI_PROC_START_ABSTIME, ticks(1000.0));
        put(RI_RUNNABLE_TIME, ticks(0.2));
        put(RI_USER_PTIME, ticks(2.2));
        put(RI_SYSTEM_PTIME, ticks(0.5));
        put(RI_ENERGY_NJ, 1_500_000_000);
        put(55, u64::MAX); // the last reserved word: never read
        b
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn v6_times_are_mach_ticks_split_by_core_type() {
        let r = decode_rusage_v6(&v6(), APPLE_SILICON, true).unwrap();
        let c = &r.counters;
        assert!(close(c.user_seconds.unwrap(), 2.4) && close(c.system_seconds.unwrap(), 0.6));
        let Some(CoreTime::Measured {
            performance,
            efficiency,
        }) = c.core
        else {
            panic!("{:?}", c.core)
        };
        assert!(
            close(performance, 2.7) && close(efficiency, 0.3),
            "{performance} {efficiency}"
        );
        assert!(close(c.scheduling_delay_seconds.unwrap(), 0.2));
        assert_eq!(c.energy_joules, Some(1.5));
        assert!(close(r.started, 1000.0));
        assert_eq!(r.resident_bytes, 52_428_800);
    }

    #[test]
    fn an_intel_mac_puts_everything_on_performance_cores() {
        let r = decode_rusage_v6(&v6(), Timebase { numer: 1, denom: 1 }, false).unwrap();
        let Some(CoreTime::Measured { efficiency, .. }) = r.counters.core else {
            panic!()
        };
        assert_eq!(efficiency, 0.0);
    }

    #[test]
    fn a_short_buffer_is_refused() {
        let e = decode_rusage_v6(&v6()[..300], APPLE_SILICON, true).unwrap_err();
        assert_eq!(e, ShortRusage { len: 300 });
        assert_eq!(e.to_string(), "rusage_info_v6: 300 bytes, expected 464");
    }

    #[test]
    fn procargs2_gives_the_arguments_not_the_environment() {
        let mut b = 3i32.to_ne_bytes().to_vec();
        b.extend_from_slice(
            b"/opt/engine/bin/engine\0\0\0\0engine\0--venue=XNAS\0-v\0HOME=/Users/t\0",
        );
        assert_eq!(
            parse_procargs2(&b).as_deref(),
            Some("engine --venue=XNAS -v")
        );
        assert_eq!(parse_procargs2(&[1, 0]), None);
    }
}
