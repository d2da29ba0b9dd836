//! The crate's error enum: a message on the wire that does not convert to
//! a domain value, and TLS or token material that cannot be used.

use lockstep_model::ModelError;

/// A message or a setting that cannot be turned into what it names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtoError {
    /// The message converts, but to an invalid domain value.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("corrupt stored record: {0}")]
    Corrupt(String),
    #[error("{0}")]
    BadParam(String),
    #[error("{0}")]
    Tls(String),
}

impl ProtoError {
    /// Never: a message or a file that is wrong stays wrong.
    pub fn retryable(&self) -> bool {
        false
    }
}
