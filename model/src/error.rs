//! The crate's error enum: everything that can be wrong with an atom, a
//! value or a workload's parameters.

/// A value that is not a valid domain value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("unknown atom type {0:?}")]
    UnknownType(String),
    #[error("more than {max} new atom types")]
    TooManyTypes { max: usize },
    #[error("atom type registry conflict: {0}")]
    TypeConflict(String),
    #[error("unknown atom type {0:?} (--strict-types accepts only the AtomSpace's built-in types)")]
    StrictType(String),
    #[error("unknown atom type id {0}")]
    UnknownTypeId(u32),
    #[error("{ty} needs a non-empty name")]
    EmptyName { ty: &'static str },
    #[error("{ty} name is {len} bytes, over the limit of {max}")]
    NameTooLong {
        ty: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{ty} is a link type and cannot have a name")]
    NameOnLink { ty: &'static str },
    #[error("{ty} is a node type and cannot have outgoing atoms")]
    OutgoingOnNode { ty: &'static str },
    #[error("{ty} has {arity} outgoing atoms, over the limit of {max}")]
    ArityTooLarge {
        ty: &'static str,
        arity: usize,
        max: usize,
    },
    #[error("a handle must be 16 bytes, got {0}")]
    BadHandleLength(usize),
    #[error("malformed handle {0:?}: expected 32 hex digits")]
    BadHandleText(String),
    #[error("{field} must be a finite number in [{min}, {max}], got {value}")]
    OutOfRange {
        field: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("incoming entry target {target} is not in the link's outgoing set")]
    TargetNotInLink { target: String },
    #[error("{0}")]
    BadParam(String),
}

impl ModelError {
    /// Never: a value that is wrong stays wrong.
    pub fn retryable(&self) -> bool {
        false
    }
}
