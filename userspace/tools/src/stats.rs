//! Order statistics of timing samples (nanoseconds): min, median, p99, max.
//!
//! Percentiles use the nearest-rank method on the sorted samples, so every
//! reported figure is a time that was actually measured, never an
//! interpolation between two.

/// Summary of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
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
    /// Arithmetic mean.
    pub mean: f64,
}

/// The sample at percentile `p` (0 < p <= 100) of sorted `s`, nearest rank:
/// the smallest sample such that at least `p`% of samples are <= it.
pub fn nearest_rank(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarises `samples` (reorders them); `None` when there are none.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    samples.sort_unstable();
    let (&min, &max) = (samples.first()?, samples.last()?);
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    Some(Summary {
        count: samples.len(),
        min,
        median: nearest_rank(samples, 50.0)?,
        p99: nearest_rank(samples, 99.0)?,
        max,
        mean: sum as f64 / samples.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(summarize(&mut []), None);
        assert_eq!(nearest_rank(&[], 50.0), None);
    }

    #[test]
    fn one_sample_is_every_statistic() {
        let s = summarize(&mut [7]).expect("one");
        assert_eq!((s.min, s.median, s.p99, s.max, s.count), (7, 7, 7, 7, 1));
        assert_eq!(s.mean, 7.0);
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = summarize(&mut v).expect("100");
        assert_eq!((s.min, s.median, s.p99, s.max), (1, 50, 99, 100));
        assert_eq!(s.mean, 50.5);
    }

    #[test]
    fn p99_of_few_samples_is_the_max() {
        let mut v = vec![5, 1, 3];
        let s = summarize(&mut v).expect("3");
        assert_eq!((s.median, s.p99), (3, 5));
        // Even sample count: the lower middle sample is the nearest rank.
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50.0), Some(2));
    }
}
