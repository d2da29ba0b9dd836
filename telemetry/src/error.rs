//! The telemetry crate's error type.

/// What can go wrong registering, rendering or serving metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A metric's name, labels or buckets are invalid, or the name is taken.
    #[error("metric definition: {0}")]
    Metric(#[from] prometheus::Error),
    #[error("encoding metrics: {0}")]
    Encode(String),
    #[error("metrics endpoint: {0}")]
    Serve(String),
    #[error("cannot listen for metrics on {address}: {reason}")]
    Bind { address: String, reason: String },
}

impl Error {
    /// None of these goes away by trying again.
    pub fn retryable(&self) -> bool {
        false
    }
}
