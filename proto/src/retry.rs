//! The one retry policy of the workspace: exponential backoff with jitter,
//! from backon. Callers retry only errors whose `retryable()` says so, and
//! take each pause from [`RetryPolicy::delays`].

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How a caller retries: the first pause, the longest, and how many
/// retries at most (`None`: until the caller's own deadline).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
    pub retries: Option<usize>,
}

impl RetryPolicy {
    /// Reconnecting to a peer or the coordinator: 50 ms doubling to 1 s,
    /// for as long as the caller keeps going.
    pub const RECONNECT: RetryPolicy = RetryPolicy {
        first: Duration::from_millis(50),
        max: Duration::from_secs(1),
        retries: None,
    };

    /// The pauses before each retry, doubling from `first` up to `max`,
    /// each with a random jitter of up to its own length so that callers
    /// that failed together do not retry together. Ends after `retries`.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        let b = ExponentialBuilder::new()
            .with_min_delay(self.first)
            .with_max_delay(self.max)
            .with_jitter();
        match self.retries {
            Some(n) => b.with_max_times(n),
            None => b.without_max_times(),
        }
        .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap_and_end_after_the_retries() {
        let p = RetryPolicy {
            first: Duration::from_millis(100),
            max: Duration::from_millis(400),
            retries: Some(5),
        };
        let d: Vec<Duration> = p.delays().collect();
        assert_eq!(d.len(), 5);
        // Each pause is its exponential step plus a jitter below that step.
        for (got, step) in d.iter().zip([100u64, 200, 400, 400, 400]) {
            let step = Duration::from_millis(step);
            assert!(*got >= step && *got <= step * 2, "{got:?} vs {step:?}");
        }
        assert!(RetryPolicy::RECONNECT.delays().take(1000).count() == 1000);
    }
}
