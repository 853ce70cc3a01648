//! Latency samples, percentiles, shared counters for the progress line, and the final JSON
//! line of `bench run` (SPEC §14).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Counters every connection task bumps and the progress printer reads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    pub connected: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Latency samples in microseconds (a `u32` holds over an hour).
#[derive(Debug, Default)]
pub(crate) struct Samples {
    micros: Vec<u32>,
}

impl Samples {
    pub(crate) fn record(&mut self, latency: Duration) {
        self.micros.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    pub(crate) fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.micros.len()
    }

    /// Sorts once; then [`Sorted::percentile_ms`] answers in constant time.
    pub(crate) fn into_sorted(mut self) -> Sorted {
        self.micros.sort_unstable();
        Sorted { micros: self.micros }
    }
}

pub(crate) struct Sorted {
    micros: Vec<u32>,
}

impl Sorted {
    /// The nearest-rank percentile (`quantile` in 0..=1) in milliseconds, `None` without samples.
    pub(crate) fn percentile_ms(&self, quantile: f64) -> Option<f64> {
        if self.micros.is_empty() {
            return None;
        }
        let count = self.micros.len();
        let rank = (quantile.clamp(0.0, 1.0) * count as f64).ceil() as usize;
        let index = rank.clamp(1, count) - 1;
        Some(round3(f64::from(self.micros[index]) / 1000.0))
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The final line of `bench run`; field names and order as in SPEC §14.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct RunSummary {
    pub sent: u64,
    pub acked: u64,
    pub received: u64,
    pub msgs_per_s: f64,
    pub ack_p50_ms: Option<f64>,
    pub ack_p99_ms: Option<f64>,
    pub ack_p999_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub errors: u64,
}

/// The final line of `bench connect`.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct ConnectSummary {
    pub connected: u64,
    pub failed: u64,
    pub held_s: f64,
}

/// Messages per second, rounded to one decimal; zero for an empty interval.
pub(crate) fn rate(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    (count as f64 / seconds * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(micros: &[u32]) -> Sorted {
        let mut samples = Samples::default();
        for &value in micros {
            samples.record(Duration::from_micros(u64::from(value)));
        }
        samples.into_sorted()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let table = [(0.5, 50.0), (0.99, 99.0), (0.999, 100.0), (0.0, 1.0), (1.0, 100.0)];
        let samples = sorted(&hundred);
        for (quantile, expected) in table {
            assert_eq!(samples.percentile_ms(quantile), Some(expected), "p{quantile}");
        }
        assert_eq!(sorted(&[1500]).percentile_ms(0.999), Some(1.5));
        assert_eq!(sorted(&[]).percentile_ms(0.5), None);
        assert_eq!(sorted(&[3000, 1000, 2000]).percentile_ms(0.5), Some(2.0));
    }

    #[test]
    fn merge_keeps_every_sample() {
        let mut first = Samples::default();
        first.record(Duration::from_millis(1));
        let mut second = Samples::default();
        second.record(Duration::from_millis(3));
        second.record(Duration::from_secs(100_000)); // saturates rather than wraps
        first.merge(second);
        assert_eq!(first.len(), 3);
        assert_eq!(first.into_sorted().percentile_ms(1.0), Some(f64::from(u32::MAX) / 1000.0));
    }

    #[test]
    fn summary_line_has_the_spec_fields_in_order() {
        let summary = RunSummary {
            sent: 10,
            acked: 9,
            received: 0,
            msgs_per_s: 4.5,
            ack_p50_ms: Some(1.25),
            ack_p99_ms: Some(2.0),
            ack_p999_ms: Some(2.0),
            e2e_p99_ms: None,
            errors: 1,
        };
        assert_eq!(
            serde_json::to_string(&summary).unwrap(),
            r#"{"sent":10,"acked":9,"received":0,"msgs_per_s":4.5,"ack_p50_ms":1.25,"ack_p99_ms":2.0,"ack_p999_ms":2.0,"e2e_p99_ms":null,"errors":1}"#
        );
        assert_eq!(rate(30, Duration::from_secs(4)), 7.5);
        assert_eq!(rate(30, Duration::ZERO), 0.0);
    }
}
