//! How a stream waits between reconnection attempts: exponential backoff
//! with jitter, and a bound on the total time of one streak of failures.

use std::time::Duration;

use rand::Rng;

/// Reconnection settings of a [`Client`](crate::Client)'s streams.
///
/// After a cut, attempt `n` (from 0) waits a random time between half and
/// all of `min(initial * 2^n, max_delay)`, so that many clients cut at once
/// do not come back in lockstep. A streak of failed attempts ends the
/// stream with [`Error::GaveUp`](crate::Error::GaveUp) once `max_elapsed`
/// has passed; any event received ends the streak.
///
/// ```
/// use std::time::Duration;
/// use execd_client::Backoff;
///
/// let backoff = Backoff::default()
///     .initial(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(2))
///     .max_elapsed(Duration::from_secs(10));
/// assert!(backoff.delay(0) <= Duration::from_millis(50));
/// assert!(backoff.delay(30) <= Duration::from_secs(2));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max_delay: Duration,
    max_elapsed: Duration,
}

impl Backoff {
    /// Default wait before the first reconnection attempt.
    pub const DEFAULT_INITIAL: Duration = Duration::from_millis(100);
    /// Default cap of a single wait.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);
    /// Default bound on one streak of failed attempts.
    pub const DEFAULT_MAX_ELAPSED: Duration = Duration::from_secs(60);

    /// The wait before the first attempt (default
    /// [`DEFAULT_INITIAL`](Self::DEFAULT_INITIAL)); doubled each attempt.
    pub fn initial(mut self, initial: Duration) -> Backoff {
        self.initial = initial;
        self
    }

    /// The cap of a single wait (default
    /// [`DEFAULT_MAX_DELAY`](Self::DEFAULT_MAX_DELAY)).
    pub fn max_delay(mut self, max_delay: Duration) -> Backoff {
        self.max_delay = max_delay;
        self
    }

    /// How long a streak of failures may last before the stream gives up
    /// (default [`DEFAULT_MAX_ELAPSED`](Self::DEFAULT_MAX_ELAPSED)). Zero
    /// means no reconnection at all.
    pub fn max_elapsed(mut self, max_elapsed: Duration) -> Backoff {
        self.max_elapsed = max_elapsed;
        self
    }

    /// The bound on one streak of failures.
    pub fn elapsed_bound(&self) -> Duration {
        self.max_elapsed
    }

    /// The wait before attempt `attempt` (0 is the first), jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max_delay);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_micros() as u64;
        half + Duration::from_micros(rand::rng().random_range(0..=spread))
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Backoff::DEFAULT_INITIAL,
            max_delay: Backoff::DEFAULT_MAX_DELAY,
            max_elapsed: Backoff::DEFAULT_MAX_ELAPSED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_jittered_and_capped() {
        let b = Backoff::default();
        for attempt in 0..40 {
            let ceiling = (Backoff::DEFAULT_INITIAL * 2u32.pow(attempt.min(20)))
                .min(Backoff::DEFAULT_MAX_DELAY);
            let d = b.delay(attempt);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
        // Jitter: 50 draws of the capped delay are not all equal.
        let draws: std::collections::HashSet<_> = (0..50).map(|_| b.delay(10)).collect();
        assert!(draws.len() > 1);
    }
}
