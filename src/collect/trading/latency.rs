//! Sliding windows over latency histograms and event counts.
//!
//! A window of width `w` is a ring of [`SLOTS`] slots of `w / SLOTS` each plus a running
//! total: new data goes into the current slot and the total, and when a slot ages out
//! it is subtracted from the total. So reading a window costs one pass over one
//! histogram, whatever its width, and the window always covers the last
//! `w - w/SLOTS` to `w` of time.
//!
//! Latencies are [`Hist`]s: HdrHistogram's buckets in nanoseconds with two significant
//! digits, so every quantile is within 1% of the exact value (the highest value
//! equivalent to it is reported, so errors lean high). Slot histograms are allocated
//! on first use and freed when they age out, and a window whose slots are all empty
//! frees its total, so an idle series costs almost nothing.
//!
//! Memory: a histogram holds 128 counters of 4 bytes per power of two between the
//! smallest and the largest value it holds (8 bytes once a count passes `u32::MAX`):
//! 0.5 KiB for latencies within a factor of two, 3 KiB for 0.2–5 ms, 16 KiB at most
//! (100 ns to 100 s). A timer series holding data has one histogram in the interval
//! accumulator, a slot and a total per window, and one for the day's baseline; see the
//! README's sizing note.

use std::time::{Duration, Instant};

pub(crate) use super::hist::Hist;

/// Slots per window.
pub(crate) const SLOTS: usize = 6;
/// Latencies above this (100 s) are recorded as this.
pub(crate) const HIGHEST_NS: u64 = 100_000_000_000;

/// The quantiles exported for every window.
pub(crate) const QUANTILES: [(f64, &str); 4] = [
    (0.5, "0.5"),
    (0.95, "0.95"),
    (0.99, "0.99"),
    (0.999, "0.999"),
];

/// An empty latency histogram with m4watch's resolution ([`Hist`]): it holds no
/// memory until something is recorded, and then counters only for the range of
/// values it has seen.
pub(crate) fn histogram() -> Hist {
    Hist::default()
}

/// Records a latency (clamped to [`HIGHEST_NS`]) `n` times.
pub(crate) fn record(h: &mut Hist, ns: u64, n: u64) {
    h.record(ns.min(HIGHEST_NS), n);
}

/// Upper bounds of the classic Prometheus histogram, in seconds: 25 µs to 10 s.
pub(crate) const BUCKETS: [f64; 18] = [
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
    500e-3, 1.0, 2.5, 5.0, 10.0,
];

/// Exact classic-histogram counts (not derived from the HdrHistogram, so bucket
/// edges are exact): one count per bucket plus `+Inf`, and the sum in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Classic {
    /// Non-cumulative counts; the last is above the largest bound.
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum_seconds: f64,
    /// How many of the observations were operations that failed (`outcome:error`);
    /// they are in the counts too: a rejected order's latency is still a latency.
    pub errors: u64,
}

impl Classic {
    pub(crate) fn observe(&mut self, seconds: f64, n: u64) {
        let i = BUCKETS.partition_point(|&b| b < seconds);
        self.counts[i] += n;
        self.sum_seconds += seconds * n as f64;
    }

    pub(crate) fn add(&mut self, other: &Classic) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
        self.errors += other.errors;
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(le, cumulative count)` for every bound, `+Inf` last as `f64::INFINITY`.
    pub(crate) fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().scan(0, |acc, c| {
                *acc += c;
                Some(*acc)
            }))
    }
}

/// The slot bookkeeping both window kinds share.
#[derive(Debug)]
struct Ring<T> {
    slot_width: Duration,
    slots: Vec<T>,
    current: usize,
    slot_started: Instant,
    created: Instant,
}

impl<T: Default> Ring<T> {
    fn new(width: Duration, now: Instant) -> Self {
        Ring {
            slot_width: (width / SLOTS as u32).max(Duration::from_millis(1)),
            slots: (0..SLOTS).map(|_| T::default()).collect(),
            current: 0,
            slot_started: now,
            created: now,
        }
    }

    /// Moves the ring to `now`, handing each slot that ages out to `expire`.
    fn advance(&mut self, now: Instant, mut expire: impl FnMut(&mut T)) {
        let mut steps = 0;
        while now.saturating_duration_since(self.slot_started) >= self.slot_width {
            self.slot_started += self.slot_width;
            self.current = (self.current + 1) % SLOTS;
            expire(&mut self.slots[self.current]);
            steps += 1;
            if steps == SLOTS {
                // Idle for a whole window: every slot is clear; jump to now.
                let behind = now.saturating_duration_since(self.slot_started);
                let whole = behind.as_nanos() / self.slot_width.as_nanos();
                self.slot_started += self.slot_width * whole as u32;
                break;
            }
        }
    }

    /// Time the ring's data spans: the full slots plus the current one so far, but
    /// never more than the time since the window started.
    fn covered(&self, now: Instant) -> Duration {
        let full =
            self.slot_width * (SLOTS as u32 - 1) + now.saturating_duration_since(self.slot_started);
        full.min(now.saturating_duration_since(self.created))
    }
}

/// One slot of a latency window: its histogram (allocated on first use) and the
/// exact sum of its observations in seconds.
#[derive(Debug, Default)]
struct LatencySlot {
    hist: Option<Hist>,
    sum_seconds: f64,
}

/// A sliding window of latencies.
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    ring: Ring<LatencySlot>,
    total: Option<Hist>,
    sum_seconds: f64,
}

impl LatencyWindow {
    pub(crate) fn new(width: Duration, now: Instant) -> Self {
        LatencyWindow {
            ring: Ring::new(width, now),
            total: None,
            sum_seconds: 0.0,
        }
    }

    /// Adds one interval's observations and their exact sum in seconds.
    pub(crate) fn add(&mut self, h: &Hist, sum_seconds: f64, now: Instant) {
        self.advance(now);
        if h.is_empty() {
            return;
        }
        let slot = &mut self.ring.slots[self.ring.current];
        slot.hist.get_or_insert_with(histogram).add(h);
        slot.sum_seconds += sum_seconds;
        self.total.get_or_insert_with(histogram).add(h);
        self.sum_seconds += sum_seconds;
    }

    /// Ages slots out up to `now`.
    pub(crate) fn advance(&mut self, now: Instant) {
        let total = &mut self.total;
        let sum = &mut self.sum_seconds;
        self.ring.advance(now, |slot| {
            *sum -= std::mem::take(&mut slot.sum_seconds);
            if let (Some(old), Some(t)) = (slot.hist.take(), total.as_mut()) {
                t.subtract(&old);
                if t.is_empty() {
                    *total = None;
                    *sum = 0.0;
                }
            }
        });
    }

    /// Every observation in the window; `None` when there is none.
    pub(crate) fn histogram(&self) -> Option<&Hist> {
        self.total.as_ref().filter(|h| !h.is_empty())
    }

    /// Exact sum of the window's observations, in seconds.
    pub(crate) fn sum_seconds(&self) -> f64 {
        self.sum_seconds.max(0.0)
    }

    /// Observations per second over the window.
    pub(crate) fn rate(&self, now: Instant) -> f64 {
        per_second(
            self.histogram().map_or(0, |h| h.len()) as f64,
            self.ring.covered(now),
        )
    }
}

/// A sliding window of event counts.
#[derive(Debug)]
pub(crate) struct CountWindow {
    ring: Ring<f64>,
    total: f64,
}

impl CountWindow {
    pub(crate) fn new(width: Duration, now: Instant) -> Self {
        CountWindow {
            ring: Ring::new(width, now),
            total: 0.0,
        }
    }

    pub(crate) fn add(&mut self, n: f64, now: Instant) {
        self.advance(now);
        self.ring.slots[self.ring.current] += n;
        self.total += n;
    }

    pub(crate) fn advance(&mut self, now: Instant) {
        let total = &mut self.total;
        self.ring.advance(now, |slot| {
            *total -= std::mem::take(slot);
        });
        // Keep float drift from leaving a tiny non-zero total behind.
        if self.ring.slots.iter().all(|s| *s == 0.0) {
            self.total = 0.0;
        }
    }

    /// Events per second over the window.
    pub(crate) fn rate(&self, now: Instant) -> f64 {
        per_second(self.total, self.ring.covered(now))
    }
}

fn per_second(n: f64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        n / over.as_secs_f64()
    }
}

/// Latency quantile `q` of `h` in seconds.
pub(crate) fn quantile_seconds(h: &Hist, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(ns: u64, n: u64) -> Hist {
        let mut h = histogram();
        record(&mut h, ns, n);
        h
    }

    #[test]
    fn quantiles_of_a_known_distribution_are_within_one_percent() {
        // 1..=100_000 µs, uniformly: the exact q-quantile is q * 100 ms.
        let mut h = histogram();
        for us in 1..=100_000u64 {
            record(&mut h, us * 1_000, 1);
        }
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let exact = q * 0.1;
            let got = quantile_seconds(&h, q);
            assert!(
                (got - exact).abs() / exact < 0.01,
                "p{q}: {got} vs exact {exact}"
            );
        }
    }

    #[test]
    fn a_window_forgets_what_ages_out() {
        let t0 = Instant::now();
        let mut w = LatencyWindow::new(Duration::from_secs(60), t0);
        w.add(&one(1_000_000, 10), 0.01, t0);
        w.add(&one(5_000_000, 10), 0.05, t0 + Duration::from_secs(30));
        assert_eq!(w.histogram().unwrap().len(), 20);
        assert!((w.sum_seconds() - 0.06).abs() < 1e-12);
        // 65 s later the first slot (0-10 s) has aged out, the 30 s one has not.
        w.advance(t0 + Duration::from_secs(65));
        let h = w.histogram().unwrap();
        assert_eq!(h.len(), 10);
        assert!((quantile_seconds(h, 0.5) - 0.005).abs() < 0.0001);
        assert!((w.sum_seconds() - 0.05).abs() < 1e-12);
        w.advance(t0 + Duration::from_secs(95));
        assert!(w.histogram().is_none(), "empty windows free their total");
    }

    #[test]
    fn a_long_idle_gap_clears_everything_at_once() {
        let t0 = Instant::now();
        let mut w = CountWindow::new(Duration::from_secs(60), t0);
        w.add(600.0, t0);
        assert!((w.rate(t0 + Duration::from_secs(10)) - 60.0).abs() < 1e-9);
        w.add(5.0, t0 + Duration::from_secs(3600));
        assert_eq!(w.total, 5.0);
    }

    #[test]
    fn rates_span_at_most_the_window() {
        let t0 = Instant::now();
        let mut w = CountWindow::new(Duration::from_secs(60), t0);
        for s in 0..120 {
            w.add(100.0, t0 + Duration::from_secs(s));
        }
        let r = w.rate(t0 + Duration::from_secs(120));
        assert!((r - 100.0).abs() < 2.0, "{r}");
    }

    #[test]
    fn values_beyond_range_are_clamped_not_lost() {
        let mut h = histogram();
        record(&mut h, u64::MAX, 1);
        record(&mut h, 0, 1);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn classic_buckets_are_exact_at_their_edges() {
        let mut c = Classic::default();
        c.observe(25e-6, 1);
        c.observe(26e-6, 2);
        c.observe(11.0, 1);
        let cum: Vec<(f64, u64)> = c.cumulative().collect();
        assert_eq!(cum[0], (25e-6, 1));
        assert_eq!(cum[1], (50e-6, 3));
        assert_eq!(cum[17], (10.0, 3));
        assert_eq!(cum[18], (f64::INFINITY, 4));
        assert_eq!(c.count(), 4);
    }
}
