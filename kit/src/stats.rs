//! Order statistics of timing samples: min, median, p99, max.
//!
//! Percentiles use the nearest-rank method on the sorted samples, so every
//! reported figure is a time that was actually measured, never an
//! interpolation between two.
//!
//! The sort is a heap sort written out: the bare-metal test guest uses this
//! code, and `sort_unstable` compiles to bit-count instructions (TZCNT/LZCNT)
//! its build rejects (docs/test-guest.md). Integer only, for the same guest.

/// Summary of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Smallest sample.
    pub min: u64,
    /// 50th percentile (nearest rank).
    pub median: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
    /// Sum of all samples.
    pub sum: u128,
}

impl Summary {
    /// The arithmetic mean.
    pub fn mean(&self) -> f64 {
        self.sum as f64 / self.count as f64
    }

    /// The arithmetic mean rounded down, for code without floating point.
    pub fn mean_floor(&self) -> u64 {
        // The mean lies between min and max, so it fits.
        (self.sum / self.count as u128) as u64
    }
}

/// The sample at percentile `p` (1..=100) of sorted `s`, nearest rank: the
/// smallest sample such that at least `p`% of samples are <= it.
pub fn nearest_rank(sorted: &[u64], p: u32) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (n as u128 * u128::from(p)).div_ceil(100) as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Sorts `samples` and summarises them; `None` when there are none.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    heap_sort(samples);
    let (&min, &max) = (samples.first()?, samples.last()?);
    Some(Summary {
        count: samples.len(),
        min,
        median: nearest_rank(samples, 50)?,
        p99: nearest_rank(samples, 99)?,
        max,
        sum: samples.iter().map(|&s| u128::from(s)).sum(),
    })
}

/// In-place heap sort (see the module docs for why not `sort_unstable`).
fn heap_sort(v: &mut [u64]) {
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift_down(v, start, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

fn sift_down(v: &mut [u64], mut root: usize, end: usize) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && v[child] < v[child + 1] {
            child += 1;
        }
        if v[root] >= v[child] {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(summarize(&mut []), None);
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn one_sample_is_every_statistic() {
        let s = summarize(&mut [7]).expect("one");
        assert_eq!((s.min, s.median, s.p99, s.max, s.count), (7, 7, 7, 7, 1));
        assert_eq!((s.mean(), s.mean_floor()), (7.0, 7));
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let mut v = [0u64; 100];
        for (i, x) in v.iter_mut().enumerate() {
            *x = 100 - i as u64;
        }
        let s = summarize(&mut v).expect("100");
        assert_eq!((s.min, s.median, s.p99, s.max), (1, 50, 99, 100));
        assert_eq!((s.mean(), s.mean_floor()), (50.5, 50));
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "sorted in place");
    }

    #[test]
    fn p99_of_few_samples_is_the_max() {
        let mut v = [5, 1, 3];
        let s = summarize(&mut v).expect("3");
        assert_eq!((s.median, s.p99), (3, 5));
        // Even sample count: the lower middle sample is the nearest rank.
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
    }

    #[test]
    fn heap_sort_sorts_everything() {
        let mut rng = crate::stream::Rng::new(3);
        for n in 0..64 {
            let mut v = [0u64; 64];
            for x in v[..n].iter_mut() {
                *x = rng.below(10);
            }
            heap_sort(&mut v[..n]);
            assert!(v[..n].windows(2).all(|w| w[0] <= w[1]), "n={n}");
        }
    }
}
