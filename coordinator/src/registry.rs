//! The shard registry as a pure state machine: registration, heartbeats,
//! liveness, ring membership and epochs. No I/O; the [`crate::handle`]
//! module persists and publishes what it decides.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lockstep_model::atom::{Liveness, ShardEntry, Topology};
use lockstep_model::types::FIRST_REGISTERED_ID;
use lockstep_model::{AtomType, Epoch, ShardId};
use lockstep_proto::pb;
use serde::{Deserialize, Serialize};

use crate::Error;

/// When a silent shard becomes Suspect, then Down.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub suspect_after: Duration,
    pub down_after: Duration,
}

impl Thresholds {
    /// The lease a shard is granted per acknowledged heartbeat: halfway
    /// between Suspect and Down, so a cut-off shard has stopped serving
    /// well before the coordinator declares it Down.
    pub fn lease(&self) -> Duration {
        self.suspect_after + (self.down_after.saturating_sub(self.suspect_after)) / 2
    }
}

/// Settings the registry hands out in every topology.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub vnodes: u32,
    pub max_batch: u32,
    pub heartbeat_interval_ms: u64,
    pub thresholds: Thresholds,
    /// The most types [`RegistryState::register_types`] gives ids to.
    pub max_types: u32,
}

/// What survives a coordinator restart.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub cluster_id: String,
    pub epoch: u64,
    pub next_id: u32,
    /// Set once any ring member reported atoms: from then on a new shard
    /// joins as Joining instead of taking a share of the ring.
    pub has_data: bool,
    pub shards: Vec<PersistedShard>,
    /// The last cluster tick decided committed.
    #[serde(default)]
    pub committed_tick: u64,
    /// The registered atom types, by id: never changed or removed, since
    /// stores keep these ids.
    #[serde(default)]
    pub types: BTreeMap<u16, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PersistedShard {
    pub id: u32,
    pub address: String,
    pub weight: f64,
    pub in_ring: bool,
    /// Ring tokens allocated when the shard joined the ring; empty for a
    /// registry written before allocation existed (hashed positions).
    #[serde(default)]
    pub tokens: Vec<u64>,
}

/// One registered shard.
#[derive(Clone, Debug)]
pub struct ShardRecord {
    pub id: ShardId,
    pub address: String,
    pub weight: f64,
    pub in_ring: bool,
    /// Its ring tokens (see [`lockstep_hashing::alloc`]); fixed once given.
    pub tokens: Vec<u64>,
    /// None until the first heartbeat after a coordinator start.
    pub last_seen: Option<Instant>,
    pub liveness: Liveness,
    pub metrics: pb::ShardMetrics,
}

impl ShardRecord {
    pub fn entry(&self) -> ShardEntry {
        ShardEntry {
            id: self.id,
            address: self.address.clone(),
            weight: self.weight,
            in_ring: self.in_ring,
            liveness: self.liveness,
            tokens: self.tokens.clone(),
        }
    }
}

/// The most bytes a shard address may have.
const MAX_ADDRESS_LEN: usize = 255;

/// Checks that `addr` is `host:port` that a client can dial: an IPv4
/// address, a bracketed IPv6 address or a DNS name, and a port in 1..=65535.
/// Anything else would enter the ring and fail every later dial.
pub fn validate_address(addr: &str) -> Result<(), Error> {
    let bad =
        |why: &str| Error::Invalid(format!("shard address {addr:?} {why}; expected host:port"));
    if addr.is_empty() || addr.len() > MAX_ADDRESS_LEN {
        return Err(bad("is empty or too long"));
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("has no valid port")),
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else if host.parse::<std::net::Ipv4Addr>().is_ok() {
        true
    } else {
        // A DNS name: dot-separated labels of letters, digits and '-', none
        // empty, none starting or ending with '-'.
        host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    if !host_ok {
        return Err(bad("has no valid host"));
    }
    Ok(())
}

/// A registration request, in domain terms.
#[derive(Clone, Debug)]
pub struct Registration {
    pub shard_id: Option<ShardId>,
    pub cluster_id: String,
    pub address: String,
    pub weight: f64,
    pub atoms: u64,
}

/// What a state change requires of the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The snapshot changed and must be written before answering.
    pub persist: bool,
    /// The topology changed and must be published.
    pub publish: bool,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.persist |= other.persist;
        self.publish |= other.publish;
    }
}

/// The registry state.
#[derive(Clone, Debug)]
pub struct RegistryState {
    cluster_id: String,
    epoch: Epoch,
    next_id: u32,
    has_data: bool,
    shards: BTreeMap<ShardId, ShardRecord>,
    settings: Settings,
    committed_tick: u64,
    types: BTreeMap<u16, String>,
    type_ids: BTreeMap<String, u16>,
}

impl RegistryState {
    /// A new, empty cluster.
    pub fn new(cluster_id: String, settings: Settings) -> RegistryState {
        RegistryState {
            cluster_id,
            epoch: Epoch(0),
            next_id: 1,
            has_data: false,
            shards: BTreeMap::new(),
            settings,
            committed_tick: 0,
            types: BTreeMap::new(),
            type_ids: BTreeMap::new(),
        }
    }

    /// The registry as persisted; every shard starts Down until it is heard.
    pub fn from_snapshot(s: Snapshot, settings: Settings) -> RegistryState {
        let shards = s
            .shards
            .into_iter()
            .map(|p| {
                let id = ShardId(p.id);
                (
                    id,
                    ShardRecord {
                        id,
                        address: p.address,
                        weight: p.weight,
                        in_ring: p.in_ring,
                        tokens: p.tokens,
                        last_seen: None,
                        liveness: Liveness::Down,
                        metrics: pb::ShardMetrics::default(),
                    },
                )
            })
            .collect();
        RegistryState {
            cluster_id: s.cluster_id,
            epoch: Epoch(s.epoch),
            next_id: s.next_id,
            has_data: s.has_data,
            shards,
            settings,
            committed_tick: s.committed_tick,
            type_ids: s.types.iter().map(|(id, n)| (n.clone(), *id)).collect(),
            types: s.types,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            cluster_id: self.cluster_id.clone(),
            epoch: self.epoch.0,
            next_id: self.next_id,
            has_data: self.has_data,
            shards: self
                .shards
                .values()
                .map(|r| PersistedShard {
                    id: r.id.0,
                    address: r.address.clone(),
                    weight: r.weight,
                    in_ring: r.in_ring,
                    tokens: r.tokens.clone(),
                })
                .collect(),
            committed_tick: self.committed_tick,
            types: self.types.clone(),
        }
    }

    /// Gives each name that is not a built-in type a cluster-wide id, the
    /// next free one from [`FIRST_REGISTERED_ID`], or returns the id it
    /// has. Every name is checked first, so a bad one registers nothing.
    pub fn register_types(
        &mut self,
        names: &[String],
    ) -> Result<(Vec<(u16, String)>, Effects), Error> {
        for n in names {
            if AtomType::builtin(n).is_some() {
                return Err(Error::Invalid(format!("{n} is a built-in type")));
            }
            if lockstep_model::types::new_type_kind(n).is_none() {
                return Err(Error::Invalid(format!(
                    "{n:?} is not a type name: CamelCase letters and digits ending in Node or Link, at most {} bytes",
                    lockstep_model::types::MAX_TYPE_NAME
                )));
            }
        }
        let new: std::collections::BTreeSet<&String> = names
            .iter()
            .filter(|n| !self.type_ids.contains_key(*n))
            .collect();
        if self.types.len() + new.len() > self.settings.max_types as usize {
            return Err(Error::Invalid(format!(
                "registering {} more atom types would pass max_types ({}); {} are registered",
                new.len(),
                self.settings.max_types,
                self.types.len()
            )));
        }
        let mut fx = Effects::default();
        for n in new {
            let id = match self.types.keys().next_back() {
                None => FIRST_REGISTERED_ID,
                Some(last) => last
                    .checked_add(1)
                    .ok_or_else(|| Error::Invalid("no atom type id is free".into()))?,
            };
            self.types.insert(id, n.clone());
            self.type_ids.insert(n.clone(), id);
            fx.persist = true;
            fx.publish = true;
        }
        let out = names
            .iter()
            .filter_map(|n| self.type_ids.get(n).map(|id| (*id, n.clone())))
            .collect();
        Ok((out, fx))
    }

    pub fn committed_tick(&self) -> u64 {
        self.committed_tick
    }

    /// Records the commit decision for `tick`.
    pub fn decide_commit(&mut self, tick: u64) -> Effects {
        if tick <= self.committed_tick {
            return Effects::default();
        }
        self.committed_tick = tick;
        Effects {
            persist: true,
            publish: false,
        }
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn has_data(&self) -> bool {
        self.has_data
    }

    pub fn shards(&self) -> impl Iterator<Item = &ShardRecord> {
        self.shards.values()
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    pub fn topology(&self) -> Topology {
        Topology {
            epoch: self.epoch,
            vnodes: self.settings.vnodes,
            shards: self.shards.values().map(ShardRecord::entry).collect(),
            cluster_id: self.cluster_id.clone(),
            max_batch: self.settings.max_batch,
            types: self.types.iter().map(|(id, n)| (*id, n.clone())).collect(),
        }
    }

    fn note_atoms(&mut self, in_ring: bool, atoms: u64) -> Effects {
        if in_ring && atoms > 0 && !self.has_data {
            self.has_data = true;
            return Effects {
                persist: true,
                publish: false,
            };
        }
        Effects::default()
    }

    /// Registers a shard: a new one gets the next id, joining the ring only
    /// while the cluster holds no data; a known one takes its old place.
    pub fn register(&mut self, r: Registration, now: Instant) -> Result<(ShardId, Effects), Error> {
        if !r.weight.is_finite() || r.weight <= 0.0 {
            return Err(Error::Invalid(format!(
                "weight must be finite and > 0, got {}",
                r.weight
            )));
        }
        validate_address(&r.address)?;
        if !r.cluster_id.is_empty() && r.cluster_id != self.cluster_id {
            return Err(Error::WrongCluster {
                sent: r.cluster_id,
                ours: self.cluster_id.clone(),
            });
        }
        let mut fx = Effects::default();
        let id = match r.shard_id {
            Some(id) => {
                if r.cluster_id.is_empty() {
                    return Err(Error::Invalid(format!(
                        "{id} registered without a cluster id"
                    )));
                }
                let rec = self.shards.get_mut(&id).ok_or(Error::UnknownShard(id))?;
                if rec.address != r.address {
                    rec.address = r.address;
                    fx.persist = true;
                    fx.publish = true;
                }
                if rec.weight != r.weight {
                    rec.weight = r.weight;
                    fx.persist = true;
                    fx.publish = true;
                    if rec.in_ring {
                        self.epoch = self.epoch.next();
                    }
                }
                if rec.liveness != Liveness::Up {
                    rec.liveness = Liveness::Up;
                    fx.publish = true;
                }
                rec.last_seen = Some(now);
                id
            }
            None => {
                let id = ShardId(self.next_id);
                self.next_id += 1;
                let in_ring = !self.has_data;
                let mut tokens = Vec::new();
                if in_ring {
                    self.epoch = self.epoch.next();
                    // Split the ranges of the shards over their share, so
                    // the ring stays balanced; a bad current ring (which
                    // registration validation prevents) falls back to
                    // hashed positions.
                    let current = self.topology().ring().ok().flatten();
                    tokens = lockstep_hashing::alloc::allocate(
                        current.as_ref(),
                        lockstep_hashing::Member::new(id, r.weight),
                        self.settings.vnodes,
                    );
                }
                self.shards.insert(
                    id,
                    ShardRecord {
                        id,
                        address: r.address,
                        weight: r.weight,
                        in_ring,
                        tokens,
                        last_seen: Some(now),
                        liveness: Liveness::Up,
                        metrics: pb::ShardMetrics::default(),
                    },
                );
                fx.persist = true;
                fx.publish = true;
                id
            }
        };
        let in_ring = self.shards[&id].in_ring;
        fx.merge(self.note_atoms(in_ring, r.atoms));
        Ok((id, fx))
    }

    /// Records that the cluster holds data, before any write is
    /// acknowledged: from here on a new shard registers as Joining. Returns
    /// the epoch the data is written under, which no join changes.
    pub fn declare_data(&mut self) -> (Epoch, Effects) {
        let mut fx = Effects::default();
        if !self.has_data {
            self.has_data = true;
            fx.persist = true;
            fx.publish = true;
        }
        (self.epoch, fx)
    }

    /// Removes a shard from the registry. A ring member is refused once the
    /// cluster holds data, since its ranges would have nowhere to go until
    /// data moves exist; a Joining shard, or any shard of an empty cluster,
    /// goes (a ring member's departure bumps the epoch).
    pub fn remove(&mut self, id: ShardId) -> Result<Effects, Error> {
        let rec = self.shards.get(&id).ok_or(Error::UnknownShard(id))?;
        if rec.in_ring && self.has_data {
            return Err(Error::OwnsData(id));
        }
        if rec.in_ring {
            self.epoch = self.epoch.next();
        }
        self.shards.remove(&id);
        Ok(Effects {
            persist: true,
            publish: true,
        })
    }

    /// Records a heartbeat and its metrics.
    pub fn heartbeat(
        &mut self,
        id: ShardId,
        metrics: pb::ShardMetrics,
        now: Instant,
    ) -> Result<Effects, Error> {
        let rec = self.shards.get_mut(&id).ok_or(Error::UnknownShard(id))?;
        let mut fx = Effects::default();
        rec.last_seen = Some(now);
        if rec.liveness != Liveness::Up {
            rec.liveness = Liveness::Up;
            fx.publish = true;
        }
        let (in_ring, atoms) = (rec.in_ring, metrics.atoms);
        rec.metrics = metrics;
        fx.merge(self.note_atoms(in_ring, atoms));
        Ok(fx)
    }

    /// Moves silent shards to Suspect, then Down.
    pub fn refresh_liveness(&mut self, now: Instant) -> Effects {
        let t = self.settings.thresholds;
        let mut fx = Effects::default();
        for rec in self.shards.values_mut() {
            let next = match rec.last_seen {
                None => Liveness::Down,
                Some(seen) => {
                    let quiet = now.saturating_duration_since(seen);
                    if quiet >= t.down_after {
                        Liveness::Down
                    } else if quiet >= t.suspect_after {
                        Liveness::Suspect
                    } else {
                        Liveness::Up
                    }
                }
            };
            if next != rec.liveness {
                tracing::info!(shard = %rec.id, from = %rec.liveness, to = %next, "liveness changed");
                rec.liveness = next;
                fx.publish = true;
            }
        }
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            max_types: 3,
            vnodes: 16,
            max_batch: 100,
            heartbeat_interval_ms: 500,
            thresholds: Thresholds {
                suspect_after: Duration::from_secs(2),
                down_after: Duration::from_secs(5),
            },
        }
    }

    fn reg(id: Option<u32>, cluster: &str, addr: &str, atoms: u64) -> Registration {
        Registration {
            shard_id: id.map(ShardId),
            cluster_id: cluster.into(),
            address: addr.into(),
            weight: 1.0,
            atoms,
        }
    }

    #[test]
    fn types_get_stable_ids_once_and_survive_a_restart() {
        let mut r = RegistryState::new("c".into(), settings());
        let names = |ns: &[&str]| ns.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let (got, fx) = r
            .register_types(&names(&[
                "ReferenceLink",
                "WordInstanceNode",
                "ReferenceLink",
            ]))
            .unwrap();
        assert!(fx.persist && fx.publish);
        let first = FIRST_REGISTERED_ID;
        assert_eq!(got[0], (first, "ReferenceLink".to_string()));
        assert_eq!(got[1], (first + 1, "WordInstanceNode".to_string()));
        assert_eq!(got[2], got[0]);
        // Asking again changes nothing.
        let (again, fx) = r.register_types(&names(&["WordInstanceNode"])).unwrap();
        assert_eq!((again[0].0, fx), (first + 1, Effects::default()));
        assert_eq!(r.topology().types.len(), 2);
        // Bad names, built-ins and the limit are refused whole.
        for bad in [
            &["ConceptNode"][..],
            &["setlocale"],
            &["OkLink", "bad name"],
        ] {
            assert!(matches!(
                r.register_types(&names(bad)),
                Err(Error::Invalid(_))
            ));
        }
        assert!(r.topology().types.iter().all(|(_, n)| n != "OkLink"));
        r.register_types(&names(&["ThirdLink"])).unwrap();
        assert!(matches!(
            r.register_types(&names(&["FourthLink"])),
            Err(Error::Invalid(m)) if m.contains("max_types")
        ));
        // The snapshot (registry.json) keeps the ids.
        let json = serde_json::to_string(&r.snapshot()).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        let mut r2 = RegistryState::from_snapshot(back, settings());
        assert_eq!(r2.topology().types, r.topology().types);
        let (got, _) = r2.register_types(&names(&["ReferenceLink"])).unwrap();
        assert_eq!(got[0].0, first);
    }

    #[test]
    fn new_shards_join_an_empty_ring_and_bump_the_epoch() {
        let mut r = RegistryState::new("c".into(), settings());
        let now = Instant::now();
        let (a, fx) = r.register(reg(None, "", "h:1", 0), now).unwrap();
        assert!(fx.persist && fx.publish);
        let (b, _) = r.register(reg(None, "", "h:2", 0), now).unwrap();
        assert_eq!((a, b), (ShardId(1), ShardId(2)));
        assert_eq!(r.epoch(), Epoch(2));
        assert!(r.topology().shards.iter().all(|s| s.in_ring));
    }

    #[test]
    fn joining_shards_get_allocated_tokens_and_an_even_ring() {
        let mut r = RegistryState::new("c".into(), settings());
        let now = Instant::now();
        for i in 0..5 {
            r.register(reg(None, "", &format!("h:{}", i + 1), 0), now)
                .unwrap();
        }
        let t = r.topology();
        assert!(t.shards.iter().all(|s| !s.tokens.is_empty()));
        for (id, share) in t.ring().unwrap().unwrap().ownership() {
            assert!((share - 0.2).abs() < 1e-9, "{id}: {share}");
        }
        // The tokens are persisted, so a restarted coordinator routes the same.
        let back = RegistryState::from_snapshot(r.snapshot(), settings());
        let (a, b) = (
            t.ring().unwrap().unwrap(),
            back.topology().ring().unwrap().unwrap(),
        );
        assert!(a.tokens().eq(b.tokens()));
    }

    #[test]
    fn a_late_shard_joins_as_joining_once_data_exists() {
        let mut r = RegistryState::new("c".into(), settings());
        let now = Instant::now();
        let (a, _) = r.register(reg(None, "", "h:1", 0), now).unwrap();
        let fx = r
            .heartbeat(
                a,
                pb::ShardMetrics {
                    atoms: 5,
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        assert!(fx.persist);
        let epoch = r.epoch();
        let (b, _) = r.register(reg(None, "", "h:2", 0), now).unwrap();
        assert_eq!(r.epoch(), epoch, "a joining shard does not change the ring");
        assert!(!r.topology().shard(b).unwrap().in_ring);
    }

    #[test]
    fn a_restarted_shard_takes_its_old_place_and_address_changes_publish() {
        let mut r = RegistryState::new("c".into(), settings());
        let now = Instant::now();
        let (a, _) = r.register(reg(None, "", "h:1", 0), now).unwrap();
        let epoch = r.epoch();
        let (again, fx) = r.register(reg(Some(a.0), "c", "h:9", 0), now).unwrap();
        assert_eq!(again, a);
        assert!(fx.publish && fx.persist);
        assert_eq!(r.epoch(), epoch);
        assert_eq!(r.topology().shard(a).unwrap().address, "h:9");
    }

    #[test]
    fn wrong_cluster_unknown_shard_and_bad_weight_are_refused() {
        let mut r = RegistryState::new("c".into(), settings());
        let now = Instant::now();
        assert!(matches!(
            r.register(reg(None, "other", "h:1", 0), now),
            Err(Error::WrongCluster { .. })
        ));
        assert!(matches!(
            r.register(reg(Some(9), "c", "h:1", 0), now),
            Err(Error::UnknownShard(ShardId(9)))
        ));
        let mut bad = reg(None, "", "h:1", 0);
        bad.weight = -1.0;
        assert!(matches!(r.register(bad, now), Err(Error::Invalid(_))));
        assert!(matches!(
            r.heartbeat(ShardId(3), Default::default(), now),
            Err(Error::UnknownShard(_))
        ));
    }

    #[test]
    fn addresses_must_be_host_and_port() {
        for ok in [
            "127.0.0.1:7400",
            "[::1]:1",
            "shard-1.lockstep-net:9",
            "shard:65535",
        ] {
            assert!(validate_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a b:1",
            "host",
            "host:",
            "host:0",
            "host:70000",
            ":80",
            "[::1:80",
            "h/x:1",
            "-a:1",
            "a..b:1",
            "1.2.3.4:80/path",
            "http://h:1",
        ] {
            assert!(validate_address(bad).is_err(), "{bad:?} accepted");
        }
        let mut r = RegistryState::new("c".into(), settings());
        assert!(matches!(
            r.register(reg(None, "", "a b", 0), Instant::now()),
            Err(Error::Invalid(_))
        ));
        assert_eq!(r.shards().count(), 0);
    }

    #[test]
    fn declared_data_makes_later_shards_join_as_joining() {
        let mut r = RegistryState::new("c".into(), settings());
        let now = Instant::now();
        r.register(reg(None, "", "h:1", 0), now).unwrap();
        let (epoch, fx) = r.declare_data();
        assert!(fx.persist);
        assert_eq!(epoch, r.epoch());
        let (b, _) = r.register(reg(None, "", "h:2", 0), now).unwrap();
        assert_eq!(r.epoch(), epoch);
        assert!(!r.topology().shard(b).unwrap().in_ring);
        // Declaring again changes nothing, and the flag survives a restart.
        assert_eq!(r.declare_data().1, Effects::default());
        assert!(RegistryState::from_snapshot(r.snapshot(), settings()).has_data());
    }

    #[test]
    fn a_shard_is_removed_unless_it_owns_data() {
        let mut r = RegistryState::new("c".into(), settings());
        let now = Instant::now();
        let (a, _) = r.register(reg(None, "", "h:1", 0), now).unwrap();
        let (b, _) = r.register(reg(None, "", "h:2", 0), now).unwrap();
        let epoch = r.epoch();
        // Before any data a ring member can go; the ring changes.
        r.remove(b).unwrap();
        assert!(r.epoch() > epoch);
        assert!(r.topology().shard(b).is_none());
        r.declare_data();
        let (c, _) = r.register(reg(None, "", "h:3", 0), now).unwrap();
        assert!(matches!(r.remove(a), Err(Error::OwnsData(_))));
        let epoch = r.epoch();
        r.remove(c).unwrap();
        assert_eq!(r.epoch(), epoch, "a Joining shard's removal keeps the ring");
        assert!(matches!(r.remove(c), Err(Error::UnknownShard(_))));
    }

    #[test]
    fn liveness_goes_up_suspect_down_and_back() {
        let mut r = RegistryState::new("c".into(), settings());
        let t0 = Instant::now();
        let (a, _) = r.register(reg(None, "", "h:1", 0), t0).unwrap();
        let state = |r: &RegistryState| r.topology().shard(a).unwrap().liveness;
        assert!(!r.refresh_liveness(t0 + Duration::from_secs(1)).publish);
        assert_eq!(state(&r), Liveness::Up);
        assert!(r.refresh_liveness(t0 + Duration::from_secs(3)).publish);
        assert_eq!(state(&r), Liveness::Suspect);
        r.refresh_liveness(t0 + Duration::from_secs(6));
        assert_eq!(state(&r), Liveness::Down);
        let fx = r
            .heartbeat(a, Default::default(), t0 + Duration::from_secs(7))
            .unwrap();
        assert!(fx.publish);
        assert_eq!(state(&r), Liveness::Up);
    }

    #[test]
    fn snapshot_round_trips_and_restored_shards_start_down() {
        let mut r = RegistryState::new("c".into(), settings());
        let now = Instant::now();
        r.register(reg(None, "", "h:1", 0), now).unwrap();
        r.register(reg(None, "", "h:2", 7), now).unwrap();
        let snap = r.snapshot();
        let back = RegistryState::from_snapshot(snap.clone(), settings());
        assert_eq!(back.snapshot(), snap);
        assert!(back.has_data());
        assert!(back.shards().all(|s| s.liveness == Liveness::Down));
        assert_eq!(back.topology().ring().unwrap().unwrap().members().len(), 2);
    }
}
