//! Replica-group records: the Raft log entries, votes and memberships a
//! replica keeps on disk, and the commands of a replica group's log.
//!
//! The log store and state machine live in the shard crate; they store
//! these encodings and nothing else. Decoding validates: a record that
//! decodes holds atoms the model accepts, and every field openraft needs.

use std::collections::{BTreeMap, BTreeSet};

use lockstep_model::{FlatAtom, IncomingRef, ReplicaCommand};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LeaderId, LogId, Membership, RaftTypeConfig,
    SnapshotMeta, StoredMembership, Vote,
};
use prost::Message;

use crate::ProtoError;
use crate::pb;

pub fn log_id_to_pb(l: &LogId<u64>) -> pb::RaftLogId {
    pb::RaftLogId {
        term: l.leader_id.term,
        node_id: l.leader_id.node_id,
        index: l.index,
    }
}

pub fn log_id_from_pb(l: &pb::RaftLogId) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(l.term, l.node_id), l.index)
}

pub fn vote_to_pb(v: &Vote<u64>) -> pb::RaftVote {
    pb::RaftVote {
        term: v.leader_id.term,
        node_id: v.leader_id.node_id,
        committed: v.committed,
    }
}

pub fn vote_from_pb(v: &pb::RaftVote) -> Vote<u64> {
    Vote {
        leader_id: LeaderId::new(v.term, v.node_id),
        committed: v.committed,
    }
}

pub fn membership_to_pb(m: &Membership<u64, BasicNode>) -> pb::RaftMembership {
    pb::RaftMembership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|c| pb::RaftVoters {
                ids: c.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, n)| pb::RaftNode {
                id: *id,
                address: n.addr.clone(),
            })
            .collect(),
    }
}

/// A membership as stored or sent. A node listed twice is refused: the
/// record was not written by [`membership_to_pb`].
pub fn membership_from_pb(
    m: &pb::RaftMembership,
) -> Result<Membership<u64, BasicNode>, ProtoError> {
    let configs: Vec<BTreeSet<u64>> = m
        .configs
        .iter()
        .map(|c| c.ids.iter().copied().collect())
        .collect();
    let mut nodes = BTreeMap::new();
    for n in &m.nodes {
        if nodes
            .insert(n.id, BasicNode::new(n.address.clone()))
            .is_some()
        {
            return Err(ProtoError::Corrupt(format!(
                "membership lists node {} twice",
                n.id
            )));
        }
    }
    Ok(Membership::new(configs, nodes))
}

pub fn stored_membership_to_pb(m: &StoredMembership<u64, BasicNode>) -> pb::RaftStoredMembership {
    pb::RaftStoredMembership {
        log_id: m.log_id().as_ref().map(log_id_to_pb),
        membership: Some(membership_to_pb(m.membership())),
    }
}

pub fn stored_membership_from_pb(
    m: &pb::RaftStoredMembership,
) -> Result<StoredMembership<u64, BasicNode>, ProtoError> {
    let membership = m
        .membership
        .as_ref()
        .ok_or(ProtoError::Missing("membership"))?;
    Ok(StoredMembership::new(
        m.log_id.as_ref().map(log_id_from_pb),
        membership_from_pb(membership)?,
    ))
}

impl From<&ReplicaCommand> for pb::ReplicaCommand {
    fn from(c: &ReplicaCommand) -> Self {
        let command = match c {
            ReplicaCommand::Put { atoms, incoming } => {
                pb::replica_command::Command::Put(pb::ReplicaPut {
                    atoms: atoms.iter().map(Into::into).collect(),
                    incoming: incoming.iter().map(Into::into).collect(),
                })
            }
            ReplicaCommand::AddTypes { types } => {
                pb::replica_command::Command::AddTypes(pb::ReplicaTypes {
                    types: types
                        .iter()
                        .map(|(id, name)| pb::RegisteredType {
                            id: u32::from(*id),
                            name: name.clone(),
                        })
                        .collect(),
                })
            }
        };
        pb::ReplicaCommand {
            command: Some(command),
        }
    }
}

impl TryFrom<pb::ReplicaCommand> for ReplicaCommand {
    type Error = ProtoError;
    fn try_from(c: pb::ReplicaCommand) -> Result<Self, ProtoError> {
        match c.command.ok_or(ProtoError::Missing("command"))? {
            pb::replica_command::Command::Put(p) => Ok(ReplicaCommand::Put {
                atoms: p
                    .atoms
                    .into_iter()
                    .map(FlatAtom::try_from)
                    .collect::<Result<_, _>>()?,
                incoming: p
                    .incoming
                    .into_iter()
                    .map(IncomingRef::try_from)
                    .collect::<Result<_, _>>()?,
            }),
            pb::replica_command::Command::AddTypes(t) => Ok(ReplicaCommand::AddTypes {
                types: t
                    .types
                    .into_iter()
                    .map(|t| {
                        u16::try_from(t.id).map(|id| (id, t.name)).map_err(|_| {
                            ProtoError::BadParam(format!("type id {} out of range", t.id))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            }),
        }
    }
}

/// The bound every conversion of a replica group's messages takes.
pub trait ReplicaConfig:
    RaftTypeConfig<D = ReplicaCommand, NodeId = u64, Node = BasicNode, Entry = Entry<Self>>
{
}

impl<C> ReplicaConfig for C where
    C: RaftTypeConfig<D = ReplicaCommand, NodeId = u64, Node = BasicNode, Entry = Entry<C>>
{
}

pub fn entry_to_pb<C: ReplicaConfig>(e: &Entry<C>) -> pb::RaftEntry {
    use pb::raft_entry::Payload;
    pb::RaftEntry {
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: Some(match &e.payload {
            EntryPayload::Blank => Payload::Blank(pb::RaftBlank {}),
            EntryPayload::Normal(c) => Payload::Normal(c.into()),
            EntryPayload::Membership(m) => Payload::Membership(membership_to_pb(m)),
        }),
    }
}

pub fn entry_from_pb<C: ReplicaConfig>(e: pb::RaftEntry) -> Result<Entry<C>, ProtoError> {
    use pb::raft_entry::Payload;
    let log_id = log_id_from_pb(e.log_id.as_ref().ok_or(ProtoError::Missing("log_id"))?);
    let payload = match e.payload.ok_or(ProtoError::Missing("payload"))? {
        Payload::Blank(_) => EntryPayload::Blank,
        Payload::Normal(c) => EntryPayload::Normal(c.try_into()?),
        Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(&m)?),
    };
    Ok(Entry { log_id, payload })
}

/// The stored encoding of a log entry.
pub fn encode_entry<C: ReplicaConfig>(e: &Entry<C>) -> Vec<u8> {
    entry_to_pb(e).encode_to_vec()
}

/// Decodes a stored log entry.
pub fn decode_entry<C: ReplicaConfig>(bytes: &[u8]) -> Result<Entry<C>, ProtoError> {
    entry_from_pb(pb::RaftEntry::decode(bytes).map_err(|e| ProtoError::Corrupt(e.to_string()))?)
}

fn vote_of(v: Option<&pb::RaftVote>) -> Result<Vote<u64>, ProtoError> {
    Ok(vote_from_pb(v.ok_or(ProtoError::Missing("vote"))?))
}

pub fn append_request_to_pb<C: ReplicaConfig>(
    group: u32,
    r: &AppendEntriesRequest<C>,
) -> pb::RaftAppendRequest {
    pb::RaftAppendRequest {
        group,
        vote: Some(vote_to_pb(&r.vote)),
        prev_log_id: r.prev_log_id.as_ref().map(log_id_to_pb),
        entries: r.entries.iter().map(entry_to_pb).collect(),
        leader_commit: r.leader_commit.as_ref().map(log_id_to_pb),
    }
}

/// A request and the group it is for.
pub fn append_request_from_pb<C: ReplicaConfig>(
    r: pb::RaftAppendRequest,
) -> Result<(u32, AppendEntriesRequest<C>), ProtoError> {
    Ok((
        r.group,
        AppendEntriesRequest {
            vote: vote_of(r.vote.as_ref())?,
            prev_log_id: r.prev_log_id.as_ref().map(log_id_from_pb),
            entries: r
                .entries
                .into_iter()
                .map(entry_from_pb)
                .collect::<Result<_, _>>()?,
            leader_commit: r.leader_commit.as_ref().map(log_id_from_pb),
        },
    ))
}

pub fn append_response_to_pb(r: &AppendEntriesResponse<u64>) -> pb::RaftAppendResponse {
    let (result, matching, vote) = match r {
        AppendEntriesResponse::Success => (0, None, None),
        AppendEntriesResponse::PartialSuccess(m) => (1, m.as_ref().map(log_id_to_pb), None),
        AppendEntriesResponse::Conflict => (2, None, None),
        AppendEntriesResponse::HigherVote(v) => (3, None, Some(vote_to_pb(v))),
    };
    pb::RaftAppendResponse {
        result,
        matching,
        vote,
    }
}

pub fn append_response_from_pb(
    r: &pb::RaftAppendResponse,
) -> Result<AppendEntriesResponse<u64>, ProtoError> {
    Ok(match r.result {
        0 => AppendEntriesResponse::Success,
        1 => AppendEntriesResponse::PartialSuccess(r.matching.as_ref().map(log_id_from_pb)),
        2 => AppendEntriesResponse::Conflict,
        3 => AppendEntriesResponse::HigherVote(vote_of(r.vote.as_ref())?),
        n => {
            return Err(ProtoError::BadParam(format!("unknown append result {n}")));
        }
    })
}

pub fn vote_request_to_pb(group: u32, r: &VoteRequest<u64>) -> pb::RaftVoteRequest {
    pb::RaftVoteRequest {
        group,
        vote: Some(vote_to_pb(&r.vote)),
        last_log_id: r.last_log_id.as_ref().map(log_id_to_pb),
    }
}

pub fn vote_request_from_pb(
    r: &pb::RaftVoteRequest,
) -> Result<(u32, VoteRequest<u64>), ProtoError> {
    Ok((
        r.group,
        VoteRequest {
            vote: vote_of(r.vote.as_ref())?,
            last_log_id: r.last_log_id.as_ref().map(log_id_from_pb),
        },
    ))
}

pub fn vote_response_to_pb(r: &VoteResponse<u64>) -> pb::RaftVoteResponse {
    pb::RaftVoteResponse {
        vote: Some(vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: r.last_log_id.as_ref().map(log_id_to_pb),
    }
}

pub fn vote_response_from_pb(r: &pb::RaftVoteResponse) -> Result<VoteResponse<u64>, ProtoError> {
    Ok(VoteResponse {
        vote: vote_of(r.vote.as_ref())?,
        vote_granted: r.vote_granted,
        last_log_id: r.last_log_id.as_ref().map(log_id_from_pb),
    })
}

/// A snapshot's description; `file` and `size` say where a replica keeps
/// its bytes, or how many a transfer carries.
pub fn snapshot_meta_to_pb(
    m: &SnapshotMeta<u64, BasicNode>,
    file: String,
    size: u64,
) -> pb::RaftSnapshotMeta {
    pb::RaftSnapshotMeta {
        last_log_id: m.last_log_id.as_ref().map(log_id_to_pb),
        membership: Some(stored_membership_to_pb(&m.last_membership)),
        snapshot_id: m.snapshot_id.clone(),
        file,
        size,
    }
}

pub fn snapshot_meta_from_pb(
    m: &pb::RaftSnapshotMeta,
) -> Result<SnapshotMeta<u64, BasicNode>, ProtoError> {
    Ok(SnapshotMeta {
        last_log_id: m.last_log_id.as_ref().map(log_id_from_pb),
        last_membership: match &m.membership {
            Some(sm) => stored_membership_from_pb(sm)?,
            None => StoredMembership::default(),
        },
        snapshot_id: m.snapshot_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_model::AtomType;
    use std::io::Cursor;

    openraft::declare_raft_types!(T: D = ReplicaCommand, R = ());

    #[test]
    fn entries_round_trip() {
        let c = AtomType::by_name("ConceptNode").unwrap();
        let l = AtomType::by_name("SetLink").unwrap();
        let a = FlatAtom::new(c, "a".into(), vec![]).unwrap();
        let b = FlatAtom::new(c, "b".into(), vec![]).unwrap();
        let link = FlatAtom::new(l, String::new(), vec![b.handle, a.handle]).unwrap();
        let incoming = link.incoming_refs();
        let id = LogId::new(CommittedLeaderId::new(3, 7), 42);
        let entries: Vec<Entry<T>> = vec![
            Entry {
                log_id: id,
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id,
                payload: EntryPayload::Normal(ReplicaCommand::Put {
                    atoms: vec![a, b, link],
                    incoming,
                }),
            },
            Entry {
                log_id: id,
                payload: EntryPayload::Normal(ReplicaCommand::AddTypes {
                    types: vec![(4000, "GoalLink".into())],
                }),
            },
            Entry {
                log_id: id,
                payload: EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([1, 2]), BTreeSet::from([2, 3])],
                    BTreeMap::from([
                        (1, BasicNode::new("a:1")),
                        (2, BasicNode::new("b:2")),
                        (3, BasicNode::new("c:3")),
                        (4, BasicNode::new("learner:4")),
                    ]),
                )),
            },
        ];
        for e in entries {
            let back: Entry<T> = decode_entry(&encode_entry(&e)).unwrap();
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for bytes in [
            &b"\xff\xff\xff"[..],
            &[],
            &pb::RaftEntry::default().encode_to_vec(),
        ] {
            assert!(decode_entry::<T>(bytes).is_err(), "{bytes:?}");
        }
        // A command whose atom names a type no process could take.
        let bad = pb::RaftEntry {
            log_id: Some(pb::RaftLogId::default()),
            payload: Some(pb::raft_entry::Payload::Normal(pb::ReplicaCommand {
                command: Some(pb::replica_command::Command::Put(pb::ReplicaPut {
                    atoms: vec![pb::AtomWrite {
                        r#type: "not a type".into(),
                        ..Default::default()
                    }],
                    incoming: vec![],
                })),
            })),
        };
        assert!(decode_entry::<T>(&bad.encode_to_vec()).is_err());
        let twice = pb::RaftMembership {
            configs: vec![],
            nodes: vec![
                pb::RaftNode {
                    id: 1,
                    address: "a".into(),
                },
                pb::RaftNode {
                    id: 1,
                    address: "b".into(),
                },
            ],
        };
        assert!(membership_from_pb(&twice).is_err());
        let votes = vote_from_pb(&vote_to_pb(&Vote::new_committed(4, 2)));
        assert_eq!(votes, Vote::new_committed(4, 2));
    }
}
