//! What a StatsD timer series costs in memory, measured deterministically: this test
//! binary's global allocator counts the bytes live on the heap, 1000 single-sample timer
//! series go through the real parsing and ingest path (`Trading::ingest_packet`, as the
//! UDP listener calls it) and the trading collector, and the collector's clock (an
//! `Instant` it is handed) and the sample ring's (a timestamp) are driven past the
//! longest window and the ring's retention, one step per second as shipped.
//!
//! The figures the README's sizing note states come from here; the limits below leave
//! about 50% of margin over what was measured.
//!
//! One test function only: the allocator counts every thread, so nothing else may run
//! beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use m4watch::config::{RulesConfig, TradingConfig};
use m4watch::internals::alerts::ring_filter;
use m4watch::internals::collect::trading::Baselines;
use m4watch::internals::collect::trading::{Trading, TradingCollector};
use m4watch::internals::rules::Engine;
use m4watch::internals::rules::LOOKBACK_MS;
use m4watch::internals::store::Ring;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter only
// records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const SERIES: usize = 1000;
/// Most heap bytes a single-sample timer series may hold at any time: the interval
/// accumulator, a slot and a total per window, the day's baseline histogram, its
/// published families and what the rule engine's sample ring keeps of them
/// (measured: 17.1 KB with the default windows, the shipped rules and a 1.5 ms sample,
/// before the windows' count and mean gauges of issue 29 (0.7 KB more) were merged;
/// 13.0 KB before issue 29; 69 KB while histograms were dense HdrHistograms).
const PEAK_PER_SERIES: isize = 26 * 1024;
/// Most heap bytes it may still hold once its windows have expired and the ring's
/// retention has passed: its identity, its since-start classic histogram and the
/// published families of that histogram, the day's baseline histogram, and its two
/// `m4watch_trading_operations_total` series (success, error), which the shipped
/// error-rate and throughput rules read, with the last minute of them in the ring
/// (measured: 13.5 KB; 7.8 KB before those counts; 18 KB with dense histograms, 9 KB
/// of it the baseline's).
const EXPIRED_PER_SERIES: isize = 20 * 1024;
/// Least that expiry must give back per series: its window histograms, its quantile
/// families and its samples in the ring (measured: 5.2 KB).
const FREED_PER_SERIES: isize = 3 * 1024;

#[test]
fn a_thousand_one_sample_timer_series_stay_small_and_give_memory_back_when_windows_expire() {
    let config = TradingConfig {
        max_series: SERIES,
        ..TradingConfig::default()
    };
    let longest = config.windows.iter().map(|w| w.get()).max().unwrap();
    let registry = prometheus::Registry::new();
    let trading = Trading::new(&config, &registry).unwrap();
    // A day-long baseline period, as shipped, without a database behind it.
    let mut collector = TradingCollector::new(Arc::clone(&trading)).with_baselines(Baselines::new(
        86_400_000,
        7,
        None,
        Vec::new(),
    ));
    // The sample ring as the daemon sets it up for the shipped rules.
    let rules = RulesConfig::default();
    let step = rules.evaluation_interval.get();
    let retention = rules
        .max_range
        .get()
        .max(Duration::from_millis(LOOKBACK_MS as u64))
        + step;
    let engine = Engine::new(
        m4watch::internals::rules::load_embedded().unwrap(),
        step.as_millis() as i64,
    );
    let mut ring = Ring::new(retention.as_millis() as i64);
    let readers = m4watch::internals::advise::ring_reads(&Default::default());
    ring.set_filter(Some(
        ring_filter(&engine, &readers, step).expect("the shipped rules name their metrics"),
    ));
    let mut batch = trading.batch();
    let t0 = Instant::now();
    let mut tick = |at: Duration, ring: &mut Ring| {
        let families = collector.run(t0 + at);
        ring.append_families(&families, 1_000_000 + at.as_millis() as i64);
        families
    };
    drop(tick(Duration::ZERO, &mut ring));
    let before = live();

    for i in 0..SERIES {
        let packet = format!("burst_{i:04}:1.5|ms|#venue:xnys");
        trading.ingest_packet(packet.as_bytes(), &mut batch);
    }
    let ingested = live() - before;
    // One collector run and ring append per second, as shipped, until the windows
    // have expired and then the ring's retention has passed; the families of the
    // latest run stay alive, as the store keeps them.
    let mut families = Vec::new();
    let mut peak = 0;
    let mut at = Duration::ZERO;
    // The stale markers written as the windows expired age out a second later.
    let end = longest + retention + Duration::from_secs(3);
    while at < end {
        // Every second while the windows hold data (the ring grows then); after that
        // nothing arrives, so two runs (windows expired, ring retention passed) see
        // what every second would.
        at = if at < longest {
            at + step
        } else if at < longest + Duration::from_secs(2) {
            longest + Duration::from_secs(2)
        } else {
            end
        };
        drop(families);
        families = tick(at, &mut ring);
        peak = peak.max(live() - before);
        if at == Duration::from_secs(1) {
            assert!(
                families.iter().any(|f| f.samples.len() >= SERIES),
                "every series is published"
            );
        }
    }
    let expired = live() - before;
    let quantile_series = families
        .iter()
        .find(|f| f.name == "m4watch_trading_latency_quantile_seconds")
        .map_or(0, |f| f.samples.len());
    let per = |b: isize| b / SERIES as isize;
    eprintln!(
        "statsd memory per series: {} B after ingest, {} B at most, {} B after expiry (live heap {} B before)",
        per(ingested),
        per(peak),
        per(expired),
        before
    );
    assert_eq!(quantile_series, 0, "no window holds data any more");
    // The operation counts are cumulative and the last sample's time is the series'
    // own: they stay, and so do their recent samples in the ring (the error-rate,
    // throughput and silence rules read them), while the series lives
    // (trading.series_ttl); nothing else does.
    let lives_with_the_series = [
        "m4watch_trading_operations_total",
        "m4watch_trading_last_sample_timestamp_seconds",
    ];
    let left: Vec<_> = ring
        .all()
        .filter(|s| s.label("operation").starts_with("burst_"))
        .filter(|s| !lives_with_the_series.contains(&s.label("__name__")))
        .map(|s| (s.labels.clone(), s.samples.len(), s.samples.last().copied()))
        .take(2)
        .collect();
    assert!(
        left.is_empty(),
        "the ring keeps no series of them past its retention: {left:?}"
    );
    assert!(
        per(peak) < PEAK_PER_SERIES,
        "{} bytes per series at the peak",
        per(peak)
    );
    assert!(
        per(expired) < EXPIRED_PER_SERIES,
        "{} bytes per series after the windows expired",
        per(expired)
    );
    assert!(
        per(peak) - per(expired) >= FREED_PER_SERIES,
        "expiry gives memory back: {expired} B live after, {peak} B at the peak"
    );
}
