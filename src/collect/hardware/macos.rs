//! The native macOS source: thin FFI that returns plain data ([`RawSample`],
//! [`MachineInfo`]); every formula lives in [`super::apple`], tested on Linux.
//!
//! NOTE: this file is compiled only for macOS. Every `scripts/test.sh` run type-checks
//! it (clippy, `-D warnings`) for aarch64-apple-darwin and x86_64-apple-darwin with
//! `../shared/darwin/check.sh`; it has never run on a Mac here. See docs/macos.md.
//!
//! Sources, all without sudo:
//! - IOReport and SMC (power per rail, residency, frequencies, temperatures, fans) via
//!   the `macmon` library, on its own thread because each sample blocks for a window;
//!   its windows are merged until read ([`PendingWindows`]) so no energy is lost;
//! - `host_processor_info` ticks (libc + mach2);
//! - `hw.perflevel*` sysctls and the IORegistry `cpuN` `cluster-type` for the tiers;
//! - IOAccelerator `PerformanceStatistics` (io-kit-sys + core-foundation), of the GPU
//!   [`apple::choose_accelerator`] picks;
//! - `notify_get_state("com.apple.system.thermalpressurelevel")`;
//! - `host_statistics64` with an oversized buffer; `vm.swapusage`;
//!   `kern.memorystatus_vm_pressure_level`.
//!
//! No subprocess fallbacks: `sysctl -n`, `vm_stat` and `ioreg` make the same kernel
//! calls as the functions they would stand in for, so they cannot succeed where those
//! failed.

use std::collections::BTreeMap;
use std::ffi::{CString, c_char, c_int, c_void};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use core_foundation::base::{CFType, TCFType};
use core_foundation::data::CFData;
use core_foundation::dictionary::CFDictionary;
use core_foundation::number::CFNumber;
use core_foundation::string::CFString;
use io_kit_sys::types::{io_iterator_t, io_registry_entry_t};
use io_kit_sys::{
    IOIteratorNext, IOObjectGetClass, IOObjectRelease, IORegistryEntryCreateCFProperty,
    IORegistryEntryGetName, IOServiceGetMatchingServices, IOServiceMatching,
};

use super::apple::{
    self, Accelerator, AppleState, CpuNode, DUMP_FORMAT, DUMP_VERSION, DumpHeader, MachineInfo,
    PendingWindows, PerfLevel, RawSample, Swap, VmCounters, WindowClock,
};
use super::macmon_window::{self, Soc, SocTier, Window};
use super::{DumpError, Reading, Source, Topology};

/// The notify name of macOS thermal pressure.
const THERMAL_NOTIFY: &std::ffi::CStr = c"com.apple.system.thermalpressurelevel";

unsafe extern "C" {
    // libSystem (notify.h); not bound by libc.
    fn notify_register_check(name: *const c_char, out_token: *mut c_int) -> u32;
    fn notify_get_state(token: c_int, state: *mut u64) -> u32;
}

/// Windows from macmon's sampler thread (the IOReport/SMC part of a [`RawSample`]) not
/// yet read.
type Pending = Arc<Mutex<PendingWindows>>;

/// The live macOS source.
pub(crate) struct MacSource {
    machine: MachineInfo,
    ncpu: u32,
    host: libc::mach_port_t,
    thermal_token: Option<c_int>,
    pending: Pending,
    /// The last macmon window, reused (with no elapsed time, so no energy) when none
    /// finished since the last read.
    last_macmon: RawSample,
    state: AppleState,
    topology: Topology,
}

impl MacSource {
    /// Reads the machine's static description and starts macmon's sampler, which
    /// measures windows of `interval`.
    pub(crate) fn new(interval: Duration) -> std::io::Result<Self> {
        // SAFETY: no preconditions; the port is kept for the source's lifetime.
        let host = unsafe { mach2::mach_init::mach_host_self() };
        let ncpu = sysctl_int("hw.logicalcpu")
            .or_else(|| sysctl_int("hw.ncpu"))
            .ok_or_else(|| std::io::Error::other("sysctl hw.logicalcpu is unreadable"))?
            as u32;
        let machine = machine_info();
        let mut token: c_int = 0;
        // SAFETY: a valid C string and out-pointer.
        let thermal_token = (unsafe { notify_register_check(THERMAL_NOTIFY.as_ptr(), &mut token) }
            == 0)
            .then_some(token);
        if thermal_token.is_none() {
            tracing::warn!("notify_register_check failed: no thermal pressure");
        }
        let pending: Pending = Arc::new(Mutex::new(PendingWindows::default()));
        spawn_macmon(Arc::clone(&pending), interval);
        Ok(MacSource {
            machine,
            ncpu,
            host,
            thermal_token,
            pending,
            last_macmon: RawSample::default(),
            state: AppleState::default(),
            topology: Topology::default(),
        })
    }

    pub(crate) fn machine(&self) -> &MachineInfo {
        &self.machine
    }

    pub(crate) fn cpu_count(&self) -> u32 {
        self.ncpu
    }

    pub(crate) fn set_topology(&mut self, t: Topology) {
        self.topology = t;
    }

    /// One raw sample: macmon's latest window plus this moment's counters.
    pub(crate) fn raw_sample(&mut self) -> RawSample {
        let fresh = self.pending.lock().ok().and_then(|mut p| p.take());
        let mut raw = match fresh {
            Some(s) => {
                self.last_macmon = s.clone();
                s
            }
            None => RawSample {
                // The last window's readings, but no new energy: no window finished, and
                // the next one carries its whole time.
                elapsed_s: 0.0,
                energy_j: BTreeMap::new(),
                ..self.last_macmon.clone()
            },
        };
        match cpu_ticks(self.host) {
            Ok(t) => raw.ticks = t,
            Err(e) => tracing::warn!(error = %e, "host_processor_info failed"),
        }
        raw.gpu_stats = apple::choose_accelerator(&accelerators())
            .map(|a| a.stats.clone())
            .unwrap_or_default();
        raw.thermal_state = self.thermal_token.and_then(|t| {
            let mut v: u64 = 0;
            // SAFETY: a token from notify_register_check and a valid out-pointer.
            (unsafe { notify_get_state(t, &mut v) } == 0).then_some(v)
        });
        raw.vm = vm_counters(self.host);
        raw.swap = swap_usage();
        raw.memory_pressure_level = sysctl_int("kern.memorystatus_vm_pressure_level");
        raw
    }
}

impl Source for MacSource {
    fn read(&mut self) -> std::io::Result<Reading> {
        let raw = self.raw_sample();
        if raw.ticks.is_empty() {
            return Err(std::io::Error::other(
                "host_processor_info returned no CPUs",
            ));
        }
        Ok(self.state.reading(&self.machine, &self.topology, &raw))
    }
}

/// `m4watch dump-raw`: the header, then `samples` raw samples `interval` apart.
pub(crate) fn dump_raw(
    samples: u32,
    interval: Duration,
    out: &mut dyn std::io::Write,
) -> Result<(), DumpError> {
    let mut src = MacSource::new(interval).map_err(DumpError::Source)?;
    let os = sysctl_string("kern.osproductversion").unwrap_or_default();
    let header = DumpHeader {
        format: DUMP_FORMAT.into(),
        version: DUMP_VERSION,
        synthetic: false,
        note: Some(format!(
            "captured by m4watch dump-raw {} on macOS {os}",
            env!("CARGO_PKG_VERSION")
        )),
        machine: src.machine.clone(),
    };
    let header = serde_json::to_string(&header)?;
    writeln!(out, "{header}").map_err(DumpError::Write)?;
    // The first macmon window needs one interval to fill.
    std::thread::sleep(interval + Duration::from_millis(200));
    for _ in 0..samples {
        let started = Instant::now();
        let raw = serde_json::to_string(&src.raw_sample())?;
        writeln!(out, "{raw}").map_err(DumpError::Write)?;
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
    out.flush().map_err(DumpError::Write)
}

/// Runs macmon's sampler on its own thread: `get_metrics` blocks for the whole window.
fn spawn_macmon(pending: Pending, interval: Duration) {
    let ms = interval.as_millis().clamp(100, u128::from(u32::MAX)) as u32;
    let spawned = std::thread::Builder::new()
        .name("m4watch-macmon".into())
        .spawn(move || {
            let mut sampler = match ::macmon::Sampler::new() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "macmon unavailable: no power, frequency, temperature or fan readings");
                    return;
                }
            };
            let soc = soc_of(sampler.get_soc_info());
            let mut clock = WindowClock::default();
            // Stop when the source (the other Arc holder) is gone.
            while Arc::strong_count(&pending) > 1 {
                let started = Instant::now();
                let result = sampler.get_metrics(ms);
                let elapsed_s = clock.window(started, Instant::now());
                match result {
                    Ok(m) => {
                        let w = window_of(&m).raw_sample(Some(&soc), elapsed_s);
                        if let Ok(mut p) = pending.lock() {
                            p.push(w);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "macmon sample failed");
                        std::thread::sleep(interval);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the macmon sampler thread");
    }
}

/// macmon's metrics as plain data, in the shape its `pipe` writes (what the replay reads).
fn window_of(m: &::macmon::Metrics) -> Window {
    let core = |c: &::macmon::CpuCoreMetrics| macmon_window::Core {
        freq_mhz: f64::from(c.freq_mhz),
        active_ratio: f64::from(c.active_ratio),
    };
    Window {
        temp: macmon_window::Temps {
            cpu_temp_avg: m.temp.cpu_temp_avg.map(f64::from),
            gpu_temp_avg: m.temp.gpu_temp_avg.map(f64::from),
        },
        fans: m
            .fans
            .iter()
            .map(|f| macmon_window::Fan {
                name: f.name.clone(),
                rpm: f64::from(f.rpm),
            })
            .collect(),
        cpu_tiers: m
            .cpu_tiers
            .iter()
            .map(|t| macmon_window::Tier {
                label: t.label.clone(),
                freq_mhz: f64::from(t.freq_mhz),
                active_ratio: Some(f64::from(t.active_ratio)),
                cores: t.cores.iter().map(core).collect(),
            })
            .collect(),
        gpu_freq_mhz: Some(f64::from(m.gpu_freq_mhz)),
        gpu_active_ratio: Some(f64::from(m.gpu_active_ratio)),
        cpu_power: Some(f64::from(m.cpu_power)),
        gpu_power: Some(f64::from(m.gpu_power)),
        ane_power: Some(f64::from(m.ane_power)),
        ram_power: Some(f64::from(m.ram_power)),
        sys_power: Some(f64::from(m.sys_power)),
        ..Default::default()
    }
}

/// macmon's SoC description (tier labels and DVFS tables) as plain data.
fn soc_of(s: &::macmon::SocInfo) -> Soc {
    let mhz = |v: &[u32]| v.iter().map(|&f| f64::from(f)).collect();
    Soc {
        chip_name: Some(s.chip_name.clone()),
        memory_gb: Some(u64::from(s.memory_gb)),
        gpu_cores: Some(u32::from(s.gpu_cores)),
        cpu_tiers: s
            .cpu_tiers
            .iter()
            .map(|t| SocTier {
                label: t.label.clone(),
                cores: u32::from(t.cores),
                freqs: mhz(&t.freqs),
            })
            .collect(),
        gpu_freqs: mhz(&s.gpu_freqs),
        vm: s.vm,
        ..Default::default()
    }
}

/// What does not change while m4watch runs.
fn machine_info() -> MachineInfo {
    let levels = sysctl_int("hw.nperflevels").unwrap_or(0);
    let perflevels = (0..levels)
        .filter_map(|n| {
            Some(PerfLevel {
                name: sysctl_string(&format!("hw.perflevel{n}.name")),
                logical_cpus: sysctl_int(&format!("hw.perflevel{n}.logicalcpu"))? as u32,
            })
        })
        .collect();
    // SAFETY: a plain extern static the kernel sets before main.
    let page = unsafe { mach2::vm_page_size::vm_kernel_page_size } as u64;
    // Apple Silicon (also under Rosetta) says 1; an Intel Mac has no such key or 0. A VM
    // has no IOReport energy or residency either.
    let apple_silicon = sysctl_int("hw.optional.arm64") == Some(1);
    let vm = sysctl_int("kern.hv_vmm_present").is_some_and(|v| v != 0);
    MachineInfo {
        chip: sysctl_string("machdep.cpu.brand_string"),
        perflevels,
        cpu_nodes: cpu_nodes(),
        gpu_cores: apple::choose_accelerator(&accelerators()).and_then(|a| a.gpu_cores),
        memory_bytes: sysctl_int("hw.memsize").map(|v| v as u64),
        page_size: (page > 0).then_some(page),
        ioreport_counters: Some(apple_silicon && !vm),
    }
}

// --- sysctl -------------------------------------------------------------------

pub(crate) fn sysctl_raw(name: &str) -> Option<Vec<u8>> {
    let c = CString::new(name).ok()?;
    let mut len: libc::size_t = 0;
    // SAFETY: a valid name; a null buffer asks for the length.
    let rc = unsafe {
        libc::sysctlbyname(
            c.as_ptr(),
            std::ptr::null_mut(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 || len == 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` holds `len` bytes, and `len` says so.
    let rc = unsafe {
        libc::sysctlbyname(
            c.as_ptr(),
            buf.as_mut_ptr().cast::<c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    buf.truncate(len);
    Some(buf)
}

/// `sysctl(mib)` into `buf` (a null `buf` asks for the length); the bytes it gave.
pub(crate) fn sysctl_mib(mib: &mut [c_int], buf: Option<&mut [u8]>) -> std::io::Result<usize> {
    let (ptr, mut len) = match buf {
        Some(b) => (b.as_mut_ptr().cast::<c_void>(), b.len()),
        None => (std::ptr::null_mut(), 0),
    };
    let names = libc::c_uint::try_from(mib.len()).map_err(std::io::Error::other)?;
    // SAFETY: `mib` holds `names` names; `ptr` is null or holds `len` bytes.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            names,
            ptr,
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(len)
}

pub(crate) fn sysctl_int(name: &str) -> Option<i64> {
    let b = sysctl_raw(name)?;
    match b.len() {
        4 => Some(i64::from(i32::from_ne_bytes(b[..4].try_into().ok()?))),
        8 => Some(i64::from_ne_bytes(b[..8].try_into().ok()?)),
        _ => None,
    }
}

fn sysctl_string(name: &str) -> Option<String> {
    let b = sysctl_raw(name)?;
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn swap_usage() -> Option<Swap> {
    let b = sysctl_raw("vm.swapusage")?;
    if b.len() < std::mem::size_of::<libc::xsw_usage>() {
        return None;
    }
    // SAFETY: the buffer holds at least one xsw_usage; read_unaligned copes with Vec<u8>.
    let x: libc::xsw_usage = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
    Some(Swap {
        total: x.xsu_total,
        used: x.xsu_used,
    })
}

// --- mach -----------------------------------------------------------------------

fn cpu_ticks(host: libc::mach_port_t) -> std::io::Result<Vec<[u32; 4]>> {
    let mut ncpu: libc::natural_t = 0;
    let mut info: libc::processor_info_array_t = std::ptr::null_mut();
    let mut count: libc::mach_msg_type_number_t = 0;
    // SAFETY: valid out-pointers; on success the kernel allocates `count` integer_t at
    // `info`, which are copied and deallocated below.
    let kr = unsafe {
        libc::host_processor_info(
            host,
            libc::PROCESSOR_CPU_LOAD_INFO,
            &mut ncpu,
            &mut info,
            &mut count,
        )
    };
    if kr != 0 || info.is_null() {
        return Err(std::io::Error::other(format!(
            "host_processor_info: kern_return_t {kr}"
        )));
    }
    // SAFETY: the kernel returned `count` integers at `info`.
    let rows =
        apple::decode_cpu_load_info(unsafe { std::slice::from_raw_parts(info, count as usize) });
    // SAFETY: frees exactly what host_processor_info allocated; without it every sample leaks.
    unsafe {
        libc::vm_deallocate(
            mach2::traps::mach_task_self(),
            info as libc::vm_address_t,
            count as libc::vm_size_t * std::mem::size_of::<libc::integer_t>(),
        );
    }
    Ok(rows)
}

/// A zeroed buffer larger than any `vm_statistics64` yet: newer kernels refuse a
/// count smaller than their struct ("(ipc/mig) array not large enough").
#[repr(C, align(8))]
struct VmBuf([libc::integer_t; 256]);

fn vm_counters(host: libc::mach_port_t) -> Option<VmCounters> {
    let mut buf = VmBuf([0; 256]);
    let mut count = buf.0.len() as libc::mach_msg_type_number_t;
    // SAFETY: `buf` holds `count` integer_t and is 8-aligned.
    let kr = unsafe {
        libc::host_statistics64(host, libc::HOST_VM_INFO64, buf.0.as_mut_ptr(), &mut count)
    };
    if kr != 0 {
        tracing::debug!(kr, "host_statistics64 failed; trying vm_stat");
        return None;
    }
    // SAFETY: the buffer is larger than libc's vm_statistics64; only known fields are read.
    let v: libc::vm_statistics64 = unsafe { std::ptr::read_unaligned(buf.0.as_ptr().cast()) };
    Some(VmCounters {
        // vm_stat's "Pages free" excludes speculative pages, which are counted apart.
        free: u64::from(v.free_count.saturating_sub(v.speculative_count)),
        active: u64::from(v.active_count),
        inactive: u64::from(v.inactive_count),
        speculative: u64::from(v.speculative_count),
        wired: u64::from(v.wire_count),
        compressor: u64::from(v.compressor_page_count),
        internal: u64::from(v.internal_page_count),
        external: u64::from(v.external_page_count),
        purgeable: u64::from(v.purgeable_count),
    })
}

// --- IORegistry -------------------------------------------------------------------

/// Registry entries of a class, each released after `f` saw it; false when the
/// registry could not be asked.
pub(crate) fn for_each_service(
    class: &std::ffi::CStr,
    mut f: impl FnMut(io_registry_entry_t),
) -> bool {
    // SAFETY: a valid C string; the dictionary is consumed by the next call.
    let matching = unsafe { IOServiceMatching(class.as_ptr()) };
    if matching.is_null() {
        return false;
    }
    let mut iter: io_iterator_t = 0;
    // SAFETY: port 0 is the default main port; the call consumes `matching`.
    let kr = unsafe { IOServiceGetMatchingServices(0, matching as _, &mut iter) };
    if kr != 0 {
        return false;
    }
    loop {
        // SAFETY: a live iterator.
        let entry = unsafe { IOIteratorNext(iter) };
        if entry == 0 {
            break;
        }
        f(entry);
        // SAFETY: the entry came from IOIteratorNext and is released once.
        unsafe { IOObjectRelease(entry) };
    }
    // SAFETY: released once.
    unsafe { IOObjectRelease(iter) };
    true
}

/// A property of a registry entry, owned.
pub(crate) fn property(entry: io_registry_entry_t, key: &str) -> Option<CFType> {
    let key = CFString::new(key);
    // SAFETY: a live entry; a null allocator is the default one. The result follows
    // the Create rule, so the wrapper owns it.
    let r = unsafe {
        IORegistryEntryCreateCFProperty(entry, key.as_concrete_TypeRef(), std::ptr::null(), 0)
    };
    (!r.is_null()).then(|| unsafe { CFType::wrap_under_create_rule(r) })
}

/// The integer entries of a dictionary property (`PerformanceStatistics` of a GPU,
/// `Statistics` of a block storage driver); empty when there is none.
pub(crate) fn integer_dictionary(entry: io_registry_entry_t, key: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    if let Some(dict) = property(entry, key).and_then(|p| p.downcast::<CFDictionary>()) {
        let (keys, values) = dict.get_keys_and_values();
        for (k, v) in keys.into_iter().zip(values) {
            // SAFETY: the dictionary holds both for as long as `dict` lives.
            let key = unsafe { CFType::wrap_under_get_rule(k) }.downcast::<CFString>();
            let val = unsafe { CFType::wrap_under_get_rule(v) }.downcast::<CFNumber>();
            if let (Some(key), Some(n)) = (key, val.and_then(|n| n.to_i64())) {
                out.insert(key.to_string(), n);
            }
        }
    }
    out
}

/// Every IOAccelerator with its class, integer `PerformanceStatistics` and
/// `gpu-core-count`.
fn accelerators() -> Vec<Accelerator> {
    let mut found = Vec::new();
    for_each_service(c"IOAccelerator", |entry| {
        let mut class = [0 as c_char; 128];
        // SAFETY: io_name_t is 128 bytes; the kernel NUL-terminates it.
        let class = if unsafe { IOObjectGetClass(entry, class.as_mut_ptr()) } == 0 {
            unsafe { std::ffi::CStr::from_ptr(class.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        };
        let stats = integer_dictionary(entry, "PerformanceStatistics");
        let gpu_cores = property(entry, "gpu-core-count")
            .and_then(|p| p.downcast::<CFNumber>())
            .and_then(|n| n.to_i64())
            .map(|n| n as u32);
        found.push(Accelerator {
            class,
            stats,
            gpu_cores,
        });
    });
    found
}

/// IORegistry `cpuN` nodes and their `cluster-type` (`E`/`P`/`M`) and
/// `logical-cluster-id`, as exelban/stats and SiliconScope read them.
fn cpu_nodes() -> Vec<CpuNode> {
    let mut out = Vec::new();
    for_each_service(c"IOPlatformDevice", |entry| {
        let mut name = [0 as c_char; 128];
        // SAFETY: io_name_t is 128 bytes.
        if unsafe { IORegistryEntryGetName(entry, name.as_mut_ptr()) } != 0 {
            return;
        }
        // SAFETY: the kernel NUL-terminates io_name_t.
        let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy();
        let Some(cpu) = name.strip_prefix("cpu").and_then(|n| n.parse::<u32>().ok()) else {
            return;
        };
        let data = |key: &str| property(entry, key).and_then(|p| p.downcast::<CFData>());
        let Some(kind) = data("cluster-type") else {
            return;
        };
        let cluster_type = String::from_utf8_lossy(kind.bytes())
            .trim_end_matches('\0')
            .to_string();
        let cluster_id = data("logical-cluster-id").and_then(|d| {
            let b = d.bytes();
            (b.len() >= 4).then(|| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        });
        out.push(CpuNode {
            cpu,
            cluster_type,
            cluster_id,
        });
    });
    out.sort_by_key(|n| n.cpu);
    out
}
