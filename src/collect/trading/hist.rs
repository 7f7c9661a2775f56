//! The latency histogram: HdrHistogram's log-linear buckets (nanoseconds, 64 ns
//! resolution at the bottom, 256 sub-buckets per power of two, so every quantile is
//! within 1% of the exact value), stored for only the range of buckets it holds.
//!
//! A dense HdrHistogram keeps a counter for every bucket from 0 up to its largest
//! value: 1408 counters (11 KiB) for latencies up to 5 ms, of which a series of
//! 0.2–5 ms latencies uses 768. A trading series keeps sixteen of these (the interval
//! accumulator, six slots and a total per window, the baseline), and the windows of
//! ten operations were a third of the daemon's heap (issue 17). Here the counters span
//! the first to the last bucket ever recorded, as `u32` until a count would pass
//! `u32::MAX` (then the whole histogram widens to `u64`, so nothing saturates): 3 KiB
//! for the same series. Index arithmetic, quantiles, min, max and mean follow
//! HdrHistogram's definitions, so the figures are the ones it reported.

/// Latencies below this are recorded with the unit's resolution.
pub(crate) const LOWEST_NS: u64 = 100;
/// Significant digits kept: 2 means a relative error under 1%.
pub(crate) const SIGFIG: u8 = 2;
/// The unit, the largest power of two at or below [`LOWEST_NS`]: 2^6 = 64 ns steps.
const UNIT_MAGNITUDE: u32 = 6;
/// 2^8 = 256 sub-buckets per bucket: unit resolution up to 200 units (two digits).
const SUB_BUCKET_MAGNITUDE: u32 = 8;
const SUB_HALF_MAGNITUDE: u32 = SUB_BUCKET_MAGNITUDE - 1;
const SUB_HALF: u32 = 1 << SUB_HALF_MAGNITUDE;
const SUB_MASK: u64 = ((1u64 << SUB_BUCKET_MAGNITUDE) - 1) << UNIT_MAGNITUDE;
const LEADING_ZERO_BASE: u32 = 64 - UNIT_MAGNITUDE - SUB_BUCKET_MAGNITUDE;
const _: () = assert!(
    1 << UNIT_MAGNITUDE <= LOWEST_NS && LOWEST_NS < 1 << (UNIT_MAGNITUDE + 1),
    "the unit is the largest power of two at or below LOWEST_NS"
);
const _: () = assert!(
    2 * 10u32.pow(SIGFIG as u32) <= 1 << SUB_BUCKET_MAGNITUDE,
    "enough sub-buckets for SIGFIG digits"
);
/// Bucket of `v`: how many powers of two it lies above what bucket 0 holds.
fn bucket_of(v: u64) -> u32 {
    LEADING_ZERO_BASE - (v | SUB_MASK).leading_zeros()
}

/// The counter index `v` is counted in.
fn index_of(v: u64) -> u32 {
    let b = bucket_of(v);
    let sub = (v >> (b + UNIT_MAGNITUDE)) as u32;
    ((b + 1) << SUB_HALF_MAGNITUDE) + sub - SUB_HALF
}

/// The lowest value counted at `index`.
fn value_of(index: u32) -> u64 {
    let mut b = (index >> SUB_HALF_MAGNITUDE) as i64 - 1;
    let mut sub = (index & (SUB_HALF - 1)) + SUB_HALF;
    if b < 0 {
        sub -= SUB_HALF;
        b = 0;
    }
    u64::from(sub) << (b as u32 + UNIT_MAGNITUDE)
}

/// Width of the range of values counted together with `v`.
fn range_of(v: u64) -> u64 {
    1u64 << (UNIT_MAGNITUDE + bucket_of(v))
}

#[derive(Debug, Clone)]
enum Counts {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Counts {
    fn len(&self) -> usize {
        match self {
            Counts::Narrow(c) => c.len(),
            Counts::Wide(c) => c.len(),
        }
    }

    fn get(&self, i: usize) -> u64 {
        match self {
            Counts::Narrow(c) => u64::from(c[i]),
            Counts::Wide(c) => c[i],
        }
    }

    /// Non-zero counters, as (offset, count).
    fn nonzero(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (0..self.len())
            .map(|i| (i, self.get(i)))
            .filter(|(_, c)| *c != 0)
    }

    fn add(&mut self, i: usize, n: u64) {
        if let Counts::Narrow(c) = self {
            match u32::try_from(u64::from(c[i]) + n) {
                Ok(v) => {
                    c[i] = v;
                    return;
                }
                Err(_) => *self = Counts::Wide(c.iter().map(|&x| u64::from(x)).collect()),
            }
        }
        if let Counts::Wide(c) = self {
            c[i] = c[i].saturating_add(n);
        }
    }

    /// Lowers counter `i` by `n` (to no less than 0); returns what was taken.
    fn take(&mut self, i: usize, n: u64) -> u64 {
        match self {
            Counts::Narrow(c) => {
                let t = n.min(u64::from(c[i]));
                c[i] -= t as u32;
                t
            }
            Counts::Wide(c) => {
                let t = n.min(c[i]);
                c[i] -= t;
                t
            }
        }
    }

    /// Counters `from..to` as a new, exactly sized store of the same width, with `pad`
    /// zeros before and `tail` zeros after.
    fn resized(&self, from: usize, to: usize, pad: usize, tail: usize) -> Counts {
        fn build<T: Copy + Default>(src: &[T], pad: usize, tail: usize) -> Vec<T> {
            let mut v = Vec::with_capacity(pad + src.len() + tail);
            v.resize(pad, T::default());
            v.extend_from_slice(src);
            v.resize(pad + src.len() + tail, T::default());
            v
        }
        match self {
            Counts::Narrow(c) => Counts::Narrow(build(&c[from..to], pad, tail)),
            Counts::Wide(c) => Counts::Wide(build(&c[from..to], pad, tail)),
        }
    }
}

/// A latency histogram in nanoseconds (see the module docs).
#[derive(Debug, Clone)]
pub struct Hist {
    /// Counter index of `counts[0]`.
    first: u32,
    counts: Counts,
    total: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            first: 0,
            counts: Counts::Narrow(Vec::new()),
            total: 0,
        }
    }
}

impl Hist {
    /// Counts `ns` `n` times.
    pub fn record(&mut self, ns: u64, n: u64) {
        if n == 0 {
            return;
        }
        let i = index_of(ns);
        self.cover(i, i);
        self.counts.add((i - self.first) as usize, n);
        self.total = self.total.saturating_add(n);
    }

    /// Grows the counters to span indexes `lo..=hi` as well.
    fn cover(&mut self, lo: u32, hi: u32) {
        let len = self.counts.len() as u32;
        if len == 0 {
            self.first = lo;
            self.counts = match self.counts {
                Counts::Narrow(_) => Counts::Narrow(vec![0; (hi - lo + 1) as usize]),
                Counts::Wide(_) => Counts::Wide(vec![0; (hi - lo + 1) as usize]),
            };
            return;
        }
        let last = self.first + len - 1;
        if lo >= self.first && hi <= last {
            return;
        }
        let pad = self.first.saturating_sub(lo) as usize;
        let tail = hi.saturating_sub(last) as usize;
        self.counts = self.counts.resized(0, len as usize, pad, tail);
        self.first = self.first.min(lo);
    }

    /// Adds every count of `other`.
    pub fn add(&mut self, other: &Hist) {
        if other.total == 0 {
            return;
        }
        let (lo, hi) = other.span();
        self.cover(lo, hi);
        for (i, c) in other.counts.nonzero() {
            self.counts
                .add((other.first + i as u32 - self.first) as usize, c);
        }
        self.total = self.total.saturating_add(other.total);
    }

    /// Takes away the counts of `other` (which were added before), then drops the
    /// counters left empty at either end.
    pub fn subtract(&mut self, other: &Hist) {
        let len = self.counts.len() as u32;
        for (i, c) in other.counts.nonzero() {
            let at = other.first + i as u32;
            if at >= self.first && at < self.first + len {
                let t = self.counts.take((at - self.first) as usize, c);
                self.total -= t;
            }
        }
        self.trim();
    }

    /// Drops the zero counters at either end (all of them when the histogram is empty).
    fn trim(&mut self) {
        let len = self.counts.len();
        let Some(a) = (0..len).find(|&i| self.counts.get(i) != 0) else {
            self.counts = match self.counts {
                Counts::Narrow(_) => Counts::Narrow(Vec::new()),
                Counts::Wide(_) => Counts::Wide(Vec::new()),
            };
            self.first = 0;
            return;
        };
        let b = (0..len)
            .rev()
            .find(|&i| self.counts.get(i) != 0)
            .unwrap_or(a)
            + 1;
        if a > 0 || b < len {
            self.counts = self.counts.resized(a, b, 0, 0);
            self.first += a as u32;
        }
    }

    /// Indexes of the first and last counter that may hold counts.
    fn span(&self) -> (u32, u32) {
        (self.first, self.first + self.counts.len() as u32 - 1)
    }

    /// Zeroes every count, keeping the counters (a busy accumulator allocates nothing
    /// for the next interval).
    pub fn reset(&mut self) {
        match &mut self.counts {
            Counts::Narrow(c) => c.fill(0),
            Counts::Wide(c) => c.fill(0),
        }
        self.total = 0;
    }

    /// Number of observations.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The value at quantile `q`: the highest value equivalent to the smallest
    /// recorded one with at least `q` of the observations at or below it (the lowest
    /// equivalent for `q == 0`); 0 when empty. HdrHistogram's definition.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        let q = q.min(1.0);
        let want = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for i in 0..self.counts.len() {
            seen += self.counts.get(i);
            if seen >= want {
                let v = value_of(self.first + i as u32);
                return if q == 0.0 { v } else { highest(v) };
            }
        }
        0
    }

    /// The lowest value equivalent to the smallest observation (0 when empty).
    pub fn min(&self) -> u64 {
        self.counts
            .nonzero()
            .next()
            .map_or(0, |(i, _)| value_of(self.first + i as u32))
    }

    /// The highest value equivalent to the largest observation (0 when empty).
    pub fn max(&self) -> u64 {
        (0..self.counts.len())
            .rev()
            .find(|&i| self.counts.get(i) != 0)
            .map_or(0, |i| highest(value_of(self.first + i as u32)))
    }

    /// Mean of the observations, each taken at the middle of its range (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let total = self.total as f64;
        self.counts.nonzero().fold(0.0, |acc, (i, c)| {
            let v = value_of(self.first + i as u32);
            acc + (v + range_of(v) / 2) as f64 * c as f64 / total
        })
    }

    /// Heap bytes held by the counters.
    pub fn heap_bytes(&self) -> usize {
        match &self.counts {
            Counts::Narrow(c) => c.capacity() * 4,
            Counts::Wide(c) => c.capacity() * 8,
        }
    }
}

/// The highest value counted together with `v`.
fn highest(v: u64) -> u64 {
    (v - v % range_of(v)).saturating_add(range_of(v)) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same observations in the dense HdrHistogram m4watch used before: every
    /// figure must come out the same.
    fn reference(values: &[(u64, u64)]) -> hdrhistogram::Histogram<u64> {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(100, 200, 2).unwrap();
        h.auto(true);
        for &(v, n) in values {
            h.record_n(v, n).unwrap();
        }
        h
    }

    fn ours(values: &[(u64, u64)]) -> Hist {
        let mut h = Hist::default();
        for &(v, n) in values {
            h.record(v, n);
        }
        h
    }

    fn assert_same(values: &[(u64, u64)]) {
        let (r, h) = (reference(values), ours(values));
        assert_eq!(h.len(), r.len());
        for q in [0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(h.value_at_quantile(q), r.value_at_quantile(q), "q={q}");
        }
        assert_eq!(h.min(), r.min());
        assert_eq!(h.max(), r.max());
        assert!(
            (h.mean() - r.mean()).abs() <= r.mean() * 1e-12,
            "{} {}",
            h.mean(),
            r.mean()
        );
    }

    #[test]
    fn index_and_value_arithmetic_agree_with_hdrhistogram() {
        let r = reference(&[]);
        for v in (0..5000u64)
            .chain((0..60).map(|s| 1u64 << s))
            .chain((1..60).map(|s| (1u64 << s) - 1))
            .chain([99, 100, 16_383, 16_384, 1_000_000, 100_000_000_000])
        {
            let i = index_of(v);
            assert_eq!(value_of(i), r.lowest_equivalent(v), "lowest of {v}");
            assert_eq!(highest(v), r.highest_equivalent(v), "highest of {v}");
            assert_eq!(range_of(v), r.equivalent_range(v), "range of {v}");
            assert!(value_of(i) <= v && v <= highest(v), "{v} in its own range");
        }
    }

    #[test]
    fn figures_match_hdrhistogram() {
        assert_same(&[(1_000_000, 1)]);
        assert_same(&[(0, 3), (63, 1), (64, 1)]);
        // 0.2 to 5 ms, as the benchmarks send; microseconds; seconds; a wide spread.
        let mut rng = fastrand::Rng::with_seed(7);
        let ms: Vec<_> = (0..5000)
            .map(|_| (rng.u64(200_000..5_000_000), 1))
            .collect();
        assert_same(&ms);
        let us: Vec<_> = (0..5000)
            .map(|_| (rng.u64(5_000..80_000), rng.u64(1..4)))
            .collect();
        assert_same(&us);
        let wide: Vec<_> = (0..5000)
            .map(|_| (1u64 << rng.u32(0..37), rng.u64(1..1000)))
            .collect();
        assert_same(&wide);
    }

    #[test]
    fn add_and_subtract_give_back_the_same_histogram() {
        let a = ours(&[(300_000, 5), (4_000_000, 2)]);
        let b = ours(&[(20_000, 7), (2_000_000, 1), (90_000_000, 3)]);
        let mut t = Hist::default();
        t.add(&a);
        t.add(&b);
        assert_eq!(t.len(), 18);
        assert_eq!(t.value_at_quantile(1.0), ours(&[(90_000_000, 1)]).max());
        t.subtract(&b);
        assert_eq!(t.len(), 7);
        for q in [0.0, 0.5, 0.99, 1.0] {
            assert_eq!(t.value_at_quantile(q), a.value_at_quantile(q));
        }
        // The counters shrank back to a's span.
        assert_eq!(t.span(), a.span());
        t.subtract(&a);
        assert!(t.is_empty());
        assert_eq!(
            (t.heap_bytes(), t.min(), t.max(), t.value_at_quantile(0.5)),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn counters_span_only_the_recorded_range() {
        // 0.2–5 ms: 768 counters of 4 bytes, where the dense form holds 1408 of 8.
        let mut rng = fastrand::Rng::with_seed(1);
        let mut h = Hist::default();
        for _ in 0..10_000 {
            h.record(rng.u64(200_000..5_000_000), 1);
        }
        let dense = reference(&[(5_000_000, 1)]).distinct_values() * 8;
        assert!(h.heap_bytes() <= 3 * 1024 + 64, "{}", h.heap_bytes());
        assert!(
            h.heap_bytes() * 3 < dense,
            "{} vs dense {dense}",
            h.heap_bytes()
        );
    }

    #[test]
    fn a_count_past_u32_widens_instead_of_saturating() {
        let mut h = Hist::default();
        h.record(1_000, u64::from(u32::MAX));
        h.record(1_000, 10);
        h.record(2_000, 1);
        assert_eq!(h.len(), u64::from(u32::MAX) + 11);
        assert_eq!(h.value_at_quantile(1.0), highest(2_000));
        let mut t = Hist::default();
        t.add(&h);
        t.add(&h);
        assert_eq!(t.len(), 2 * h.len());
        t.subtract(&h);
        assert_eq!(t.len(), h.len());
        assert!(matches!(t.counts, Counts::Wide(_)));
    }
}
