//! How typed errors travel in a gRPC `Status`.
//!
//! A status carries the machine-readable kind in the `lockstep-error`
//! metadata key and, for epoch errors, the server's current epoch in
//! `lockstep-epoch`, so that a client can refresh its topology without parsing
//! the message.

use tonic::{Code, Status};

use crate::Epoch;

const KIND_KEY: &str = "lockstep-error";
const EPOCH_KEY: &str = "lockstep-epoch";

/// The kinds of error a client reacts to by kind rather than by message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireKind {
    /// The request's epoch is older than the server's.
    WrongEpoch,
    /// A key in the request is not owned by this shard at its epoch.
    NotOwner,
    /// The server's epoch is behind the request's; retry shortly.
    EpochAhead,
}

impl WireKind {
    fn as_str(self) -> &'static str {
        match self {
            WireKind::WrongEpoch => "wrong-epoch",
            WireKind::NotOwner => "not-owner",
            WireKind::EpochAhead => "epoch-ahead",
        }
    }

    fn parse(s: &str) -> Option<WireKind> {
        match s {
            "wrong-epoch" => Some(WireKind::WrongEpoch),
            "not-owner" => Some(WireKind::NotOwner),
            "epoch-ahead" => Some(WireKind::EpochAhead),
            _ => None,
        }
    }
}

/// A status for an epoch error, carrying the server's current epoch.
pub fn epoch_status(kind: WireKind, current: Epoch, message: String) -> Status {
    let code = match kind {
        WireKind::EpochAhead => Code::Unavailable,
        WireKind::WrongEpoch | WireKind::NotOwner => Code::FailedPrecondition,
    };
    let mut st = Status::new(code, message);
    let md = st.metadata_mut();
    md.insert(KIND_KEY, kind.as_str().parse().expect("ascii"));
    md.insert(
        EPOCH_KEY,
        current.0.to_string().parse().expect("digits are ascii"),
    );
    st
}

/// The epoch error a status carries, if any.
pub fn epoch_error(status: &Status) -> Option<(WireKind, Epoch)> {
    let md = status.metadata();
    let kind = WireKind::parse(md.get(KIND_KEY)?.to_str().ok()?)?;
    let epoch = md.get(EPOCH_KEY)?.to_str().ok()?.parse().ok()?;
    Some((kind, Epoch(epoch)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_errors_round_trip() {
        let st = epoch_status(WireKind::WrongEpoch, Epoch(7), "stale".into());
        assert_eq!(st.code(), Code::FailedPrecondition);
        assert_eq!(epoch_error(&st), Some((WireKind::WrongEpoch, Epoch(7))));
        assert_eq!(epoch_error(&Status::internal("x")), None);
    }
}
