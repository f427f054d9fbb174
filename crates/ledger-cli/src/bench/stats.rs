//! Latency histograms, percentiles and the process's peak memory.

use std::time::Duration;

/// Sub-buckets per power of two: values are kept to within 1/128 (< 0.8 %).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

/// A log-linear histogram of durations in microseconds with constant memory (~35 KiB),
/// so a long benchmark records every sample without growing.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        // Row 0 holds the values below SUB one to one; row r > 0 holds SUB buckets for the
        // values whose leading bit is at position SUB_BITS + r - 1.
        Self {
            counts: vec![0; ((64 - SUB_BITS as usize) + 1) * SUB as usize],
            total: 0,
        }
    }

    /// Records one duration.
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(micros)] += 1;
        self.total += 1;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `p`-th percentile (0 < p <= 100, nearest rank) in milliseconds, `None` when empty.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = nearest_rank(p, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_value(i) as f64 / 1000.0);
            }
        }
        None
    }
}

/// The 1-based nearest rank of percentile `p` among `n` sorted samples.
pub fn nearest_rank(p: f64, n: u64) -> u64 {
    let rank = (p / 100.0 * n as f64).ceil() as u64;
    rank.clamp(1, n.max(1))
}

/// The bucket of a value: exact below `SUB`, then `SUB` buckets per power of two.
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let top = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = top - SUB_BITS;
    let row = (shift + 1) as u64;
    let col = (v >> shift) - SUB; // 0..SUB
    (row * SUB + col) as usize
}

/// A representative value of a bucket: the midpoint of the values it holds.
fn bucket_value(i: usize) -> u64 {
    let (row, col) = ((i as u64) / SUB, (i as u64) % SUB);
    if row == 0 {
        return col;
    }
    let shift = row - 1;
    let low = (SUB + col) << shift;
    low + ((1u64 << shift) >> 1)
}

/// The median of some figures (the upper middle one of an even count; 0 for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The process's peak resident set size (VmHWM of /proc/self/status), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` 5), so the peak of a measured
/// phase does not include earlier phases; returns false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The `VmHWM:` line of a /proc status text, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(50.0, 100), 50);
        assert_eq!(nearest_rank(99.0, 100), 99);
        assert_eq!(nearest_rank(99.0, 1000), 990);
        assert_eq!(nearest_rank(50.0, 1), 1);
        assert_eq!(nearest_rank(100.0, 7), 7);
        assert_eq!(nearest_rank(0.0, 7), 1);
        assert_eq!(nearest_rank(50.0, 3), 2);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for us in 1..=100 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.total, 100);
        assert_eq!(h.percentile_ms(50.0), Some(0.050));
        assert_eq!(h.percentile_ms(99.0), Some(0.099));
        assert_eq!(h.percentile_ms(100.0), Some(0.100));
    }

    #[test]
    fn large_values_are_within_one_percent() {
        let mut h = Histogram::new();
        // 1 ms .. 1000 ms in 1 ms steps.
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let within = |got: f64, want: f64| (got - want).abs() / want < 0.01;
        let p50 = h.percentile_ms(50.0).unwrap();
        let p99 = h.percentile_ms(99.0).unwrap();
        assert!(within(p50, 500.0), "p50 {p50}");
        assert!(within(p99, 990.0), "p99 {p99}");
        for v in [128u64, 129, 255, 256, 1_000_000, 123_456_789, u64::MAX / 2] {
            let b = bucket_value(bucket(v));
            assert!(
                (b as f64 - v as f64).abs() / (v as f64) < 0.01,
                "{v} -> {b}"
            );
        }
        assert!(bucket(u64::MAX) < h.counts.len());
    }

    #[test]
    fn empty_and_merged() {
        let mut a = Histogram::new();
        assert_eq!(a.total, 0);
        assert_eq!(a.percentile_ms(50.0), None);
        let mut b = Histogram::new();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(30));
        b.record(Duration::from_micros(20));
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert_eq!(a.percentile_ms(50.0), Some(0.020));
    }

    #[test]
    fn reads_vm_hwm() {
        let status = "Name:\tledger\nVmPeak:\t  2000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(1234 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
