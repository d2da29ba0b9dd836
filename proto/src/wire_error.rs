//! How typed errors travel in a gRPC `Status`.
//!
//! A status carries the machine-readable kind in the `lockstep-error`
//! metadata key and, for epoch errors, the server's current epoch in
//! `lockstep-epoch`, so that a client can refresh its topology without parsing
//! the message.

use tonic::{Code, Status};

use lockstep_model::Epoch;

const KIND_KEY: &str = "lockstep-error";
const EPOCH_KEY: &str = "lockstep-epoch";
const PEER_KEY: &str = "lockstep-peer";

/// The kinds of error a client reacts to by kind rather than by message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireKind {
    /// The request's epoch is older than the server's.
    WrongEpoch,
    /// A key in the request is not owned by this shard at its epoch.
    NotOwner,
    /// The server's epoch is behind the request's; retry shortly.
    EpochAhead,
    /// The server's disk is full: nothing was written.
    DiskFull,
}

impl WireKind {
    fn as_str(self) -> &'static str {
        match self {
            WireKind::WrongEpoch => "wrong-epoch",
            WireKind::NotOwner => "not-owner",
            WireKind::EpochAhead => "epoch-ahead",
            WireKind::DiskFull => "disk-full",
        }
    }

    fn parse(s: &str) -> Option<WireKind> {
        match s {
            "wrong-epoch" => Some(WireKind::WrongEpoch),
            "not-owner" => Some(WireKind::NotOwner),
            "epoch-ahead" => Some(WireKind::EpochAhead),
            "disk-full" => Some(WireKind::DiskFull),
            _ => None,
        }
    }
}

/// A status with `code` that carries `kind` in its metadata.
pub fn kind_status(kind: WireKind, code: Code, message: String) -> Status {
    let mut st = Status::new(code, message);
    st.metadata_mut().insert(
        KIND_KEY,
        tonic::metadata::MetadataValue::from_static(kind.as_str()),
    );
    st
}

/// The kind a status carries, if any.
pub fn error_kind(status: &Status) -> Option<WireKind> {
    WireKind::parse(status.metadata().get(KIND_KEY)?.to_str().ok()?)
}

/// A status for an epoch error, carrying the server's current epoch.
pub fn epoch_status(kind: WireKind, current: Epoch, message: String) -> Status {
    let code = match kind {
        WireKind::EpochAhead => Code::Unavailable,
        _ => Code::FailedPrecondition,
    };
    let mut st = kind_status(kind, code, message);
    let md = st.metadata_mut();
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

/// A status for a failure caused by another shard: a phase whose messages
/// `peer` (its address) did not take. The coordinator blames the peer.
pub fn peer_status(peer: &str, message: String) -> Status {
    let mut st = Status::unavailable(message);
    if let Ok(v) = peer.parse() {
        st.metadata_mut().insert(PEER_KEY, v);
    }
    st
}

/// The peer a status blames, if any.
pub fn peer_error(status: &Status) -> Option<String> {
    Some(status.metadata().get(PEER_KEY)?.to_str().ok()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_errors_round_trip() {
        let st = peer_status("10.0.0.2:7400", "peer failed".into());
        assert_eq!(st.code(), Code::Unavailable);
        assert_eq!(peer_error(&st).as_deref(), Some("10.0.0.2:7400"));
        assert_eq!(peer_error(&Status::internal("x")), None);
    }

    #[test]
    fn epoch_errors_round_trip() {
        let st = epoch_status(WireKind::WrongEpoch, Epoch(7), "stale".into());
        assert_eq!(st.code(), Code::FailedPrecondition);
        assert_eq!(epoch_error(&st), Some((WireKind::WrongEpoch, Epoch(7))));
        assert_eq!(epoch_error(&Status::internal("x")), None);
    }

    #[test]
    fn a_full_disk_is_a_kind_of_its_own() {
        let st = kind_status(WireKind::DiskFull, Code::ResourceExhausted, "full".into());
        assert_eq!(error_kind(&st), Some(WireKind::DiskFull));
        assert_eq!(epoch_error(&st), None);
        assert_eq!(error_kind(&Status::internal("x")), None);
    }
}
