//! A log-linear histogram for latencies: exact below 128, then 64 buckets per power of two
//! (under 1.6% relative error), fixed size (30 KiB), no allocation when recording.

/// Values below this are counted exactly.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above `LINEAR`: 2^SUB_BITS.
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// 128 exact buckets, then 64 per exponent 7..=63.
const BUCKETS: usize = LINEAR as usize + (64 - 7) * SUB;

/// Counts of `u64` values (we record nanoseconds).
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish_non_exhaustive()
    }
}

fn index(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= 7
    let mantissa = (value >> (exponent - SUB_BITS)) as usize; // in [SUB, 2 * SUB)
    LINEAR as usize + (exponent as usize - 7) * SUB + (mantissa - SUB)
}

/// The lowest value of bucket `index` and the bucket's width.
fn bucket(index: usize) -> (u64, u64) {
    if index < LINEAR as usize {
        return (index as u64, 1);
    }
    let above = index - LINEAR as usize;
    let exponent = (above / SUB) as u32 + 7;
    let mantissa = (SUB + above % SUB) as u64;
    let shift = exponent - SUB_BITS;
    (mantissa << shift, 1 << shift)
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, value: u64) {
        // `index` is below BUCKETS for every u64; `get_mut` keeps this panic-free regardless.
        if let Some(slot) = self.counts.get_mut(index(value)) {
            *slot += 1;
        }
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.count = 0;
        self.min = u64::MAX;
        self.max = 0;
        self.sum = 0;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value at percentile `p` (0–100): the bucket holding the ⌈p% · count⌉-th smallest
    /// value, reported as its midpoint (exact below 128) and clamped to the recorded min/max.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.count as f64).ceil() as u64;
        let rank = rank.clamp(1, self.count);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bucket(index);
                return Some((low + width / 2).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn empty() {
        let h = Histogram::new();
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.min(), None);
        assert_eq!(h.mean(), None);
    }

    #[test]
    fn exact_below_linear() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(95.0), Some(95));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        assert_eq!(h.percentile(0.0), Some(1));
        assert_eq!(h.mean(), Some(50.5));
    }

    #[test]
    fn buckets_tile_the_range() {
        // Every bucket starts where the previous one ended, up to u64::MAX.
        let mut next = 0u64;
        for i in 0..BUCKETS {
            let (low, width) = bucket(i);
            assert_eq!(low, next, "bucket {i}");
            assert_eq!(index(low), i);
            assert_eq!(index(low + (width - 1)), i);
            next = low.wrapping_add(width);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn merge_and_clear() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(1_000);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!((a.min(), a.max()), (Some(1_000), Some(1_000_000)));
        a.clear();
        assert_eq!(a.count(), 0);
        assert_eq!(a.percentile(50.0), None);
    }

    proptest! {
        #[test]
        fn percentiles_are_within_two_percent(mut values in prop::collection::vec(1u64..10_000_000_000, 1..500), p in 0.0f64..=100.0) {
            let mut h = Histogram::new();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
            let exact = values[rank.min(values.len()) - 1] as f64;
            let got = h.percentile(p).unwrap() as f64;
            prop_assert!((got - exact).abs() <= exact / 60.0 + 1.0, "p{p}: got {got}, exact {exact}");
        }
    }
}
