//! Topology, shard entries and liveness.

use crate::pb;
use lockstep_model::atom::{Liveness, ShardEntry, Topology};
use lockstep_model::{Epoch, ShardId};

impl From<Liveness> for pb::Liveness {
    fn from(l: Liveness) -> Self {
        match l {
            Liveness::Up => pb::Liveness::Up,
            Liveness::Suspect => pb::Liveness::Suspect,
            Liveness::Down => pb::Liveness::Down,
        }
    }
}

impl From<pb::Liveness> for Liveness {
    fn from(l: pb::Liveness) -> Self {
        match l {
            pb::Liveness::Up => Liveness::Up,
            pb::Liveness::Suspect => Liveness::Suspect,
            // An unspecified liveness is treated as the safe choice.
            pb::Liveness::Down | pb::Liveness::Unspecified => Liveness::Down,
        }
    }
}

impl From<&ShardEntry> for pb::ShardEntry {
    fn from(s: &ShardEntry) -> Self {
        pb::ShardEntry {
            id: s.id.0,
            address: s.address.clone(),
            weight: s.weight,
            in_ring: s.in_ring,
            liveness: pb::Liveness::from(s.liveness) as i32,
            tokens: s.tokens.clone(),
        }
    }
}

impl From<pb::ShardEntry> for ShardEntry {
    fn from(s: pb::ShardEntry) -> Self {
        ShardEntry {
            id: ShardId(s.id),
            liveness: pb::Liveness::try_from(s.liveness)
                .unwrap_or(pb::Liveness::Unspecified)
                .into(),
            address: s.address,
            weight: s.weight,
            in_ring: s.in_ring,
            tokens: s.tokens,
        }
    }
}

impl From<&Topology> for pb::Topology {
    fn from(t: &Topology) -> Self {
        pb::Topology {
            epoch: t.epoch.0,
            vnodes: t.vnodes,
            shards: t.shards.iter().map(Into::into).collect(),
            cluster_id: t.cluster_id.clone(),
            max_batch: t.max_batch,
            types: t
                .types
                .iter()
                .map(|(id, name)| pb::RegisteredType {
                    id: u32::from(*id),
                    name: name.clone(),
                })
                .collect(),
        }
    }
}

impl From<pb::Topology> for Topology {
    fn from(t: pb::Topology) -> Self {
        Topology {
            epoch: Epoch(t.epoch),
            vnodes: t.vnodes,
            shards: t.shards.into_iter().map(Into::into).collect(),
            cluster_id: t.cluster_id,
            max_batch: t.max_batch,
            // An id outside u16 is no type a store could hold.
            types: t
                .types
                .into_iter()
                .filter_map(|r| u16::try_from(r.id).ok().map(|id| (id, r.name)))
                .collect(),
        }
    }
}
