//! A histogram of durations that costs atomic adds to observe.
//!
//! prometheus-client's own histogram takes a lock per observation; the
//! host observes every policy call, so this one keeps its buckets,
//! count and sum as atomics and only implements the encoding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds, in seconds, for policy calls: a call is microseconds,
/// a reopen of a large log seconds.
pub const CALL_BOUNDS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds, in seconds, for HTTP requests: an answer is milliseconds,
/// a followed stream lasts as long as its command.
pub const REQUEST_BOUNDS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// A duration histogram with fixed bounds. Clones share the counts.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum of observations, in nanoseconds: an integer, so that it
    /// adds atomically.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending, in seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            inner: Arc::new(Inner {
                bounds,
                buckets,
                count: AtomicU64::new(0),
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// For policy calls.
    pub fn calls() -> Histogram {
        Histogram::new(CALL_BOUNDS)
    }

    /// For HTTP requests.
    pub fn requests() -> Histogram {
        Histogram::new(REQUEST_BOUNDS)
    }

    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = self
            .inner
            .bounds
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(self.inner.bounds.len());
        self.inner.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How many observations so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// The sum of observations, in seconds.
    pub fn sum_secs(&self) -> f64 {
        self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// `(upper bound, observations in that bucket)`, not cumulative, the
    /// last bound `+Inf`.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let inner = &self.inner;
        inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum_secs(), self.count(), &self.buckets(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        assert_eq!(h.count(), 4);
        let buckets = h.buckets();
        assert_eq!(buckets[0], (0.001, 1));
        assert_eq!(buckets[1], (0.01, 2));
        assert_eq!(buckets[2].1, 1);
        assert!(buckets[2].0.is_infinite());
        assert!((h.sum_secs() - 3.0105).abs() < 1e-9);
    }
}
