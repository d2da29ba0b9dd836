//! The atom model: handles, the registry of atom types, atoms with truth and
//! attention values, and the flat form an atom takes on its owner shard.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use lockstep_hashing::{Epoch, Member, Ring, RingError, ShardId};

use crate::ModelError;
pub use crate::types::{AtomKind, AtomType};
pub use crate::value::Value;

/// The longest node name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 64 * 1024;
/// The most outgoing atoms a link may have.
pub const MAX_ARITY: usize = 4096;

/// An atom's identity: the xxh3-128 of its canonical encoding (see
/// [`node_handle`] and [`link_handle`]). The same atom has the same handle in
/// every process and every release.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Handle(pub u128);

impl Handle {
    /// Big-endian bytes, the form used on the wire and as storage keys (so
    /// that byte order is numeric order).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Parses 16 big-endian bytes.
    pub fn from_slice(b: &[u8]) -> Result<Handle, ModelError> {
        let arr: [u8; 16] = b
            .try_into()
            .map_err(|_| ModelError::BadHandleLength(b.len()))?;
        Ok(Handle(u128::from_be_bytes(arr)))
    }

    /// The handle's position on the ring. Handles are already uniform hashes,
    /// so their high 64 bits serve directly.
    pub fn ring_position(self) -> u64 {
        (self.0 >> 64) as u64
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({self})")
    }
}

impl FromStr for Handle {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Handle, ModelError> {
        let t = s.trim();
        if t.len() != 32 {
            return Err(ModelError::BadHandleText(s.to_string()));
        }
        u128::from_str_radix(t, 16)
            .map(Handle)
            .map_err(|_| ModelError::BadHandleText(s.to_string()))
    }
}

/// A tick number.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Tick(pub u64);

impl fmt::Display for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The handle of node `(ty, name)`: xxh3-128 of
/// `0x01 ++ len(type) as u16 LE ++ type ++ len(name) as u32 LE ++ name`.
pub fn node_handle(ty: &AtomType, name: &str) -> Handle {
    let mut buf = Vec::with_capacity(7 + ty.name.len() + name.len());
    buf.push(1u8);
    buf.extend_from_slice(&(ty.name.len() as u16).to_le_bytes());
    buf.extend_from_slice(ty.name.as_bytes());
    buf.extend_from_slice(&(name.len() as u32).to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    Handle(xxh3_128(&buf))
}

/// The handle of link `(ty, outgoing)`: xxh3-128 of
/// `0x02 ++ len(type) as u16 LE ++ type ++ arity as u32 LE ++ handles (16
/// bytes BE each)`.
///
/// An unordered link's `outgoing` must already be in canonical order (see
/// [`canonical_outgoing`]).
pub fn link_handle(ty: &AtomType, outgoing: &[Handle]) -> Handle {
    let mut buf = Vec::with_capacity(7 + ty.name.len() + 16 * outgoing.len());
    buf.push(2u8);
    buf.extend_from_slice(&(ty.name.len() as u16).to_le_bytes());
    buf.extend_from_slice(ty.name.as_bytes());
    buf.extend_from_slice(&(outgoing.len() as u32).to_le_bytes());
    for h in outgoing {
        buf.extend_from_slice(&h.to_bytes());
    }
    Handle(xxh3_128(&buf))
}

/// Puts a link's outgoing set in canonical order: an unordered link's
/// (`SetLink`, `AndLink`, ...) is sorted by handle, so every order of the
/// same atoms is one atom, as in the AtomSpace, and repeats are kept (a
/// multiset); an ordered link's stays as written.
pub fn canonical_outgoing(ty: &AtomType, outgoing: &mut [Handle]) {
    if ty.unordered {
        outgoing.sort_unstable();
    }
}

/// The AtomSpace's kinds of truth value, each with its Atomese form and the
/// numbers it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TvKind {
    /// `(stv strength confidence)`
    #[default]
    Simple,
    /// `(ctv strength confidence count)`
    Count,
    /// `(itv lower upper confidence)`
    Indefinite,
    /// `(ftv strength confidence)`
    Fuzzy,
    /// `(ptv strength confidence count)`
    Probabilistic,
    /// `(etv positive-count total-count)`
    EvidenceCount,
}

impl TvKind {
    pub const ALL: [TvKind; 6] = [
        TvKind::Simple,
        TvKind::Count,
        TvKind::Indefinite,
        TvKind::Fuzzy,
        TvKind::Probabilistic,
        TvKind::EvidenceCount,
    ];

    /// The Atomese constructor: `stv`, `ctv`, ...
    pub fn short(self) -> &'static str {
        match self {
            TvKind::Simple => "stv",
            TvKind::Count => "ctv",
            TvKind::Indefinite => "itv",
            TvKind::Fuzzy => "ftv",
            TvKind::Probabilistic => "ptv",
            TvKind::EvidenceCount => "etv",
        }
    }

    /// The type script's name: `SimpleTruthValue`, ...
    pub fn type_name(self) -> &'static str {
        match self {
            TvKind::Simple => "SimpleTruthValue",
            TvKind::Count => "CountTruthValue",
            TvKind::Indefinite => "IndefiniteTruthValue",
            TvKind::Fuzzy => "FuzzyTruthValue",
            TvKind::Probabilistic => "ProbabilisticTruthValue",
            TvKind::EvidenceCount => "EvidenceCountTruthValue",
        }
    }

    /// How many numbers the kind carries.
    pub fn arity(self) -> usize {
        match self {
            TvKind::Simple | TvKind::Fuzzy | TvKind::EvidenceCount => 2,
            TvKind::Count | TvKind::Indefinite | TvKind::Probabilistic => 3,
        }
    }

    /// A kind by its constructor or type name.
    pub fn by_name(name: &str) -> Option<TvKind> {
        TvKind::ALL
            .into_iter()
            .find(|k| k.short() == name || k.type_name() == name)
    }

    /// The number stored and sent for the kind (0 for `stv`, so records
    /// from before kinds existed read as simple).
    pub fn id(self) -> u32 {
        self as u32
    }

    pub fn from_id(id: u32) -> Result<TvKind, ModelError> {
        TvKind::ALL
            .get(id as usize)
            .copied()
            .ok_or_else(|| ModelError::BadParam(format!("unknown truth value kind {id}")))
    }
}

/// A truth value of any kind. The AtomSpace default is `(stv 1 0)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthValue {
    pub kind: TvKind,
    /// The kind's numbers in its Atomese order; unused ones are 0.
    pub numbers: [f64; 3],
}

impl Default for TruthValue {
    fn default() -> Self {
        TruthValue {
            kind: TvKind::Simple,
            numbers: [1.0, 0.0, 0.0],
        }
    }
}

impl TruthValue {
    /// A simple truth value, validated.
    pub fn new(strength: f64, confidence: f64) -> Result<TruthValue, ModelError> {
        TruthValue::of(TvKind::Simple, &[strength, confidence])
    }

    /// A truth value of `kind` from exactly its numbers, validated:
    /// strengths, bounds and confidences lie in [0, 1], counts are finite and
    /// not negative.
    pub fn of(kind: TvKind, numbers: &[f64]) -> Result<TruthValue, ModelError> {
        if numbers.len() != kind.arity() {
            return Err(ModelError::BadParam(format!(
                "{} takes {} numbers, got {}",
                kind.short(),
                kind.arity(),
                numbers.len()
            )));
        }
        let fields: &[&'static str] = match kind {
            TvKind::Simple | TvKind::Fuzzy => &["strength", "confidence"],
            TvKind::Count | TvKind::Probabilistic => &["strength", "confidence", "count"],
            TvKind::Indefinite => &["lower", "upper", "confidence"],
            TvKind::EvidenceCount => &["positive count", "total count"],
        };
        for (&field, &x) in fields.iter().zip(numbers) {
            match field {
                "count" | "positive count" | "total count" => check_range(field, x, 0.0, f64::MAX)?,
                _ => check_range(field, x, 0.0, 1.0)?,
            }
        }
        let mut n = [0.0; 3];
        n[..numbers.len()].copy_from_slice(numbers);
        Ok(TruthValue { kind, numbers: n })
    }

    /// The numbers the kind carries.
    pub fn values(&self) -> &[f64] {
        &self.numbers[..self.kind.arity()]
    }

    /// The mean, as the AtomSpace's `cog-mean` reads it: the first number,
    /// the interval's midpoint for `itv`, positive over total for `etv`.
    pub fn strength(&self) -> f64 {
        match self.kind {
            TvKind::Indefinite => (self.numbers[0] + self.numbers[1]) / 2.0,
            TvKind::EvidenceCount if self.numbers[1] > 0.0 => self.numbers[0] / self.numbers[1],
            TvKind::EvidenceCount => 0.0,
            _ => self.numbers[0],
        }
    }

    /// The confidence: the second number, the third for `itv`, and for
    /// `etv` none is stored, so 0.
    pub fn confidence(&self) -> f64 {
        match self.kind {
            TvKind::Indefinite => self.numbers[2],
            TvKind::EvidenceCount => 0.0,
            _ => self.numbers[1],
        }
    }
}

/// (sti, lti, vlti), defaulting to zero. The AtomSpace writes all three;
/// `(av sti lti)` leaves vlti at 0.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct AttentionValue {
    pub sti: f64,
    pub lti: f64,
    #[serde(default)]
    pub vlti: f64,
}

impl AttentionValue {
    pub fn new(sti: f64, lti: f64) -> Result<AttentionValue, ModelError> {
        AttentionValue::with_vlti(sti, lti, 0.0)
    }

    pub fn with_vlti(sti: f64, lti: f64, vlti: f64) -> Result<AttentionValue, ModelError> {
        check_range("sti", sti, f64::MIN, f64::MAX)?;
        check_range("lti", lti, f64::MIN, f64::MAX)?;
        check_range("vlti", vlti, f64::MIN, f64::MAX)?;
        Ok(AttentionValue { sti, lti, vlti })
    }
}

pub fn check_range(field: &'static str, value: f64, min: f64, max: f64) -> Result<(), ModelError> {
    if value.is_finite() && value >= min && value <= max {
        Ok(())
    } else {
        Err(ModelError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

/// A nested atom, as users write it: a link carries its outgoing atoms in
/// full, so adding a link adds its targets too.
#[derive(Clone, Debug, PartialEq)]
pub struct Atom {
    pub ty: &'static AtomType,
    pub name: String,
    pub outgoing: Vec<Atom>,
    pub tv: Option<TruthValue>,
    pub av: Option<AttentionValue>,
    pub values: BTreeMap<String, Value>,
}

impl Atom {
    /// A node, validated.
    pub fn node(ty: &'static AtomType, name: impl Into<String>) -> Result<Atom, ModelError> {
        let name = name.into();
        validate_shape(ty, &name, 0)?;
        Ok(Atom {
            ty,
            name,
            outgoing: Vec::new(),
            tv: None,
            av: None,
            values: BTreeMap::new(),
        })
    }

    /// A link, validated.
    pub fn link(ty: &'static AtomType, outgoing: Vec<Atom>) -> Result<Atom, ModelError> {
        validate_shape(ty, "", outgoing.len())?;
        Ok(Atom {
            ty,
            name: String::new(),
            outgoing,
            tv: None,
            av: None,
            values: BTreeMap::new(),
        })
    }

    pub fn with_tv(mut self, tv: TruthValue) -> Atom {
        self.tv = Some(tv);
        self
    }

    /// This atom's handle.
    pub fn handle(&self) -> Handle {
        match self.ty.kind {
            AtomKind::Node => node_handle(self.ty, &self.name),
            AtomKind::Link => {
                let mut out: Vec<Handle> = self.outgoing.iter().map(Atom::handle).collect();
                canonical_outgoing(self.ty, &mut out);
                link_handle(self.ty, &out)
            }
        }
    }

    /// Every atom in this one (itself included), innermost first, so that
    /// targets come before the links that point at them.
    pub fn flatten_into(&self, out: &mut Vec<(FlatAtom, usize)>) -> (Handle, usize) {
        let mut depth = 0;
        let mut handles = Vec::with_capacity(self.outgoing.len());
        for o in &self.outgoing {
            let (h, d) = o.flatten_into(out);
            handles.push(h);
            depth = depth.max(d + 1);
        }
        canonical_outgoing(self.ty, &mut handles);
        let handle = match self.ty.kind {
            AtomKind::Node => node_handle(self.ty, &self.name),
            AtomKind::Link => link_handle(self.ty, &handles),
        };
        out.push((
            FlatAtom {
                handle,
                ty: self.ty,
                name: self.name.clone(),
                outgoing: handles,
                tv: self.tv,
                av: self.av,
                values: self.values.clone(),
            },
            depth,
        ));
        (handle, depth)
    }
}

/// Checks the parts of an atom that do not depend on other atoms.
pub fn validate_shape(ty: &'static AtomType, name: &str, arity: usize) -> Result<(), ModelError> {
    match ty.kind {
        AtomKind::Node => {
            if name.is_empty() {
                return Err(ModelError::EmptyName { ty: ty.name });
            }
            if name.len() > MAX_NAME_BYTES {
                return Err(ModelError::NameTooLong {
                    ty: ty.name,
                    len: name.len(),
                    max: MAX_NAME_BYTES,
                });
            }
            if arity != 0 {
                return Err(ModelError::OutgoingOnNode { ty: ty.name });
            }
        }
        AtomKind::Link => {
            if !name.is_empty() {
                return Err(ModelError::NameOnLink { ty: ty.name });
            }
            if arity > MAX_ARITY {
                return Err(ModelError::ArityTooLarge {
                    ty: ty.name,
                    arity,
                    max: MAX_ARITY,
                });
            }
        }
    }
    Ok(())
}

/// One atom as it is stored on its owner shard: outgoing atoms by handle.
#[derive(Clone, Debug, PartialEq)]
pub struct FlatAtom {
    pub handle: Handle,
    pub ty: &'static AtomType,
    pub name: String,
    pub outgoing: Vec<Handle>,
    pub tv: Option<TruthValue>,
    pub av: Option<AttentionValue>,
    pub values: BTreeMap<String, Value>,
}

impl FlatAtom {
    /// Builds and validates a flat atom, computing its handle.
    pub fn new(
        ty: &'static AtomType,
        name: String,
        mut outgoing: Vec<Handle>,
    ) -> Result<FlatAtom, ModelError> {
        validate_shape(ty, &name, outgoing.len())?;
        canonical_outgoing(ty, &mut outgoing);
        let handle = match ty.kind {
            AtomKind::Node => node_handle(ty, &name),
            AtomKind::Link => link_handle(ty, &outgoing),
        };
        Ok(FlatAtom {
            handle,
            ty,
            name,
            outgoing,
            tv: None,
            av: None,
            values: BTreeMap::new(),
        })
    }
}

/// A committed column of per-vertex STI values: one f64 for each handle of a
/// sorted vertex set, stored in chunks of [`StiColumn::CHUNK`] so that a tick
/// writes a few large values instead of one record per vertex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StiColumn {
    /// xxh3-64 of the sorted handles: the same vertex set has the same id.
    pub id: u64,
    /// Which of the two value buffers holds the committed values.
    pub buffer: u8,
    /// Number of vertices.
    pub len: u64,
    /// The first handle of every chunk, ascending.
    pub firsts: Vec<Handle>,
}

impl StiColumn {
    /// Vertices per chunk.
    pub const CHUNK: usize = 4096;

    /// The chunk that would hold `h`, if `h` is within the column's range.
    pub fn chunk_of(&self, h: Handle) -> Option<usize> {
        self.firsts.partition_point(|f| *f <= h).checked_sub(1)
    }

    /// The id of a sorted vertex set.
    pub fn id_of(handles: &[Handle]) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for h in handles {
            hasher.update(&h.to_bytes());
        }
        hasher.digest()
    }
}

/// "Link `link` (of type `link_type`, with `outgoing`) contains `target`":
/// one member of `target`'s incoming set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingRef {
    pub target: Handle,
    pub link: Handle,
    pub link_type: &'static AtomType,
    pub outgoing: Vec<Handle>,
}

impl IncomingRef {
    /// Builds and validates an entry, computing the link's handle.
    pub fn new(
        target: Handle,
        link_type: &'static AtomType,
        mut outgoing: Vec<Handle>,
    ) -> Result<IncomingRef, ModelError> {
        validate_shape(link_type, "", outgoing.len())?;
        canonical_outgoing(link_type, &mut outgoing);
        if link_type.is_node() {
            return Err(ModelError::OutgoingOnNode { ty: link_type.name });
        }
        if !outgoing.contains(&target) {
            return Err(ModelError::TargetNotInLink {
                target: target.to_string(),
            });
        }
        Ok(IncomingRef {
            target,
            link: link_handle(link_type, &outgoing),
            link_type,
            outgoing,
        })
    }
}

/// Flattens a batch of nested atoms into distinct flat atoms with their
/// depth (0 for nodes, 1 + the deepest target for links), targets first.
/// Repeats of one atom are merged: later values win, as they would if sent
/// one after the other.
pub fn flatten_batch(atoms: &[Atom]) -> Vec<(FlatAtom, usize)> {
    let mut flat = Vec::new();
    for a in atoms {
        a.flatten_into(&mut flat);
    }
    let mut index: std::collections::HashMap<Handle, usize> =
        std::collections::HashMap::with_capacity(flat.len());
    let mut unique: Vec<(FlatAtom, usize)> = Vec::with_capacity(flat.len());
    for (a, depth) in flat {
        match index.get(&a.handle) {
            Some(&i) => {
                let u = &mut unique[i].0;
                if a.tv.is_some() {
                    u.tv = a.tv;
                }
                if a.av.is_some() {
                    u.av = a.av;
                }
                u.values.extend(a.values);
            }
            None => {
                index.insert(a.handle, unique.len());
                unique.push((a, depth));
            }
        }
    }
    unique
}

impl FlatAtom {
    /// The incoming-set entries this link adds: one per distinct target.
    pub fn incoming_refs(&self) -> Vec<IncomingRef> {
        let mut targets = self.outgoing.clone();
        targets.sort_unstable();
        targets.dedup();
        targets
            .into_iter()
            .map(|t| IncomingRef {
                target: t,
                link: self.handle,
                link_type: self.ty,
                outgoing: self.outgoing.clone(),
            })
            .collect()
    }
}

/// An atom as stored and read back: every value present.
#[derive(Clone, Debug, PartialEq)]
pub struct AtomRecord {
    pub handle: Handle,
    pub ty: &'static AtomType,
    pub name: String,
    pub outgoing: Vec<Handle>,
    pub tv: TruthValue,
    pub av: AttentionValue,
    pub values: BTreeMap<String, Value>,
}

impl AtomRecord {
    /// A new record from a write: absent values take their defaults.
    pub fn from_write(w: &FlatAtom) -> AtomRecord {
        AtomRecord {
            handle: w.handle,
            ty: w.ty,
            name: w.name.clone(),
            outgoing: w.outgoing.clone(),
            tv: w.tv.unwrap_or_default(),
            av: w.av.unwrap_or_default(),
            values: w.values.clone(),
        }
    }

    /// Applies a write to an existing record: only the values the write
    /// carries change. Returns whether anything changed.
    pub fn merge(&mut self, w: &FlatAtom) -> bool {
        let before = (self.tv, self.av, self.values.len());
        if let Some(tv) = w.tv {
            self.tv = tv;
        }
        if let Some(av) = w.av {
            self.av = av;
        }
        let mut changed = before != (self.tv, self.av, self.values.len());
        for (k, v) in &w.values {
            if self.values.get(k) != Some(v) {
                self.values.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        changed
    }
}

/// A shard's liveness as the coordinator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Liveness {
    Up,
    Suspect,
    Down,
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Liveness::Up => "Up",
            Liveness::Suspect => "Suspect",
            Liveness::Down => "Down",
        })
    }
}

/// One shard in the topology.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardEntry {
    pub id: ShardId,
    pub address: String,
    pub weight: f64,
    /// False while the shard is Joining: registered but owning no keys.
    pub in_ring: bool,
    pub liveness: Liveness,
    /// The shard's ring tokens, allocated by the coordinator when it joined
    /// the ring; empty means hashed vnode positions.
    pub tokens: Vec<u64>,
}

/// What clients and shards route by: the ring's epoch, its members and their
/// addresses.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    pub epoch: Epoch,
    pub vnodes: u32,
    pub shards: Vec<ShardEntry>,
    pub cluster_id: String,
    pub max_batch: u32,
    /// The types registered in the cluster, by id (built-ins are not
    /// listed: every process knows them).
    pub types: Vec<(u16, String)>,
}

impl Topology {
    /// The registered types as types of this process, for `--subtypes`:
    /// every registered type descends from `Node` or `Link`. A name this
    /// process cannot take is left out (the coordinator validates them).
    pub fn registered_types(&self) -> Vec<&'static AtomType> {
        self.types
            .iter()
            .filter_map(|(_, n)| AtomType::intern(n).ok())
            .collect()
    }

    /// The ring built from the shards in it (their allocated tokens), or
    /// `None` when none is.
    pub fn ring(&self) -> Result<Option<Ring>, RingError> {
        let ring: Vec<&ShardEntry> = self.shards.iter().filter(|s| s.in_ring).collect();
        if ring.is_empty() {
            return Ok(None);
        }
        let members: Vec<Member> = ring.iter().map(|s| Member::new(s.id, s.weight)).collect();
        let tokens: Vec<(ShardId, Vec<u64>)> =
            ring.iter().map(|s| (s.id, s.tokens.clone())).collect();
        Ring::from_tokens(&members, &tokens, self.vnodes).map(Some)
    }

    /// The entry for shard `id`.
    pub fn shard(&self, id: ShardId) -> Option<&ShardEntry> {
        self.shards.iter().find(|s| s.id == id)
    }
}

/// One epoch's topology and the ring built from it: what clients and
/// shards route by.
#[derive(Debug)]
pub struct Routing {
    pub topology: Topology,
    /// `None` while no shard is in the ring.
    pub ring: Option<Ring>,
}

impl Routing {
    pub fn new(topology: Topology) -> Result<Routing, RingError> {
        let ring = topology.ring()?;
        Ok(Routing { topology, ring })
    }

    /// Routing before any topology arrived: epoch 0, no shards.
    pub fn empty() -> Routing {
        Routing {
            topology: Topology {
                epoch: Epoch(0),
                vnodes: 1,
                shards: Vec::new(),
                cluster_id: String::new(),
                max_batch: 0,
                types: Vec::new(),
            },
            ring: None,
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.topology.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_pinned() {
        // Changing the canonical encoding or the hash breaks this test, and
        // every stored atom with it.
        let c = AtomType::by_name("ConceptNode").unwrap();
        let a = node_handle(c, "cat");
        let b = node_handle(c, "animal");
        let inh = AtomType::by_name("Inheritance").unwrap();
        let l = link_handle(inh, &[a, b]);
        assert_eq!(a.to_string(), "ed60a19dcd2cbc3dca08c1cbade6d670");
        assert_eq!(b.to_string(), "106c876e16138d722e0d2dbf2c97c424");
        assert_eq!(l.to_string(), "7f60d7d40cb353593ae281f394c399c2");
    }

    #[test]
    fn handle_text_round_trips() {
        let h = Handle(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(h.to_string().parse::<Handle>().unwrap(), h);
        assert!("xyz".parse::<Handle>().is_err());
        assert_eq!(Handle::from_slice(&h.to_bytes()).unwrap(), h);
        assert_eq!(
            Handle::from_slice(&[1, 2]).unwrap_err(),
            ModelError::BadHandleLength(2)
        );
    }

    #[test]
    fn types_resolve_by_full_and_short_name() {
        assert_eq!(AtomType::by_name("Concept").unwrap().name, "ConceptNode");
        assert_eq!(
            AtomType::by_name("FooNode").unwrap_err().to_string(),
            "unknown atom type \"FooNode\""
        );
    }

    #[test]
    fn an_unordered_link_is_one_atom_for_any_order_of_its_outgoing_set() {
        let c = AtomType::by_name("Concept").unwrap();
        let n = |x: &str| Atom::node(c, x).unwrap();
        let set = AtomType::by_name("SetLink").unwrap();
        let list = AtomType::by_name("ListLink").unwrap();
        let ab = Atom::link(set, vec![n("a"), n("b"), n("a")]).unwrap();
        let ba = Atom::link(set, vec![n("a"), n("a"), n("b")]).unwrap();
        let aab = Atom::link(set, vec![n("b"), n("a"), n("a")]).unwrap();
        assert_eq!(ab.handle(), ba.handle());
        assert_eq!(ab.handle(), aab.handle());
        // A multiset, as in the AtomSpace: repeats count.
        let once = Atom::link(set, vec![n("a"), n("b")]).unwrap();
        assert_ne!(once.handle(), ab.handle());
        // Ordered links keep their order.
        let l1 = Atom::link(list, vec![n("a"), n("b")]).unwrap();
        let l2 = Atom::link(list, vec![n("b"), n("a")]).unwrap();
        assert_ne!(l1.handle(), l2.handle());
        // The flat form, the shard's recomputation and incoming entries
        // agree on the canonical order.
        let mut flat = Vec::new();
        let (h, _) = ab.flatten_into(&mut flat);
        assert_eq!(h, ab.handle());
        let top = &flat.last().unwrap().0;
        assert!(top.outgoing.windows(2).all(|w| w[0] <= w[1]));
        let mut reversed = top.outgoing.clone();
        reversed.reverse();
        let again = FlatAtom::new(set, String::new(), reversed.clone()).unwrap();
        assert_eq!(again.handle, h);
        let r = IncomingRef::new(reversed[0], set, reversed).unwrap();
        assert_eq!(r.link, h);
    }

    #[test]
    fn truth_values_keep_their_kind_and_numbers() {
        let ctv = TruthValue::of(TvKind::Count, &[0.5, 0.25, 12.0]).unwrap();
        assert_eq!(ctv.values(), &[0.5, 0.25, 12.0]);
        assert_eq!((ctv.strength(), ctv.confidence()), (0.5, 0.25));
        let itv = TruthValue::of(TvKind::Indefinite, &[0.25, 0.75, 0.5]).unwrap();
        assert_eq!((itv.strength(), itv.confidence()), (0.5, 0.5));
        assert!(TruthValue::of(TvKind::Count, &[0.5, 0.5]).is_err());
        assert!(TruthValue::of(TvKind::Count, &[0.5, 0.5, -1.0]).is_err());
        for k in TvKind::ALL {
            assert_eq!(TvKind::from_id(k.id()).unwrap(), k);
            assert_eq!(TvKind::by_name(k.short()), Some(k));
            assert_eq!(TvKind::by_name(k.type_name()), Some(k));
        }
        assert_eq!(TvKind::from_id(0).unwrap(), TvKind::Simple);
    }

    #[test]
    fn shapes_are_validated() {
        let c = AtomType::by_name("ConceptNode").unwrap();
        let l = AtomType::by_name("ListLink").unwrap();
        assert!(matches!(
            Atom::node(c, ""),
            Err(ModelError::EmptyName { .. })
        ));
        assert!(matches!(
            FlatAtom::new(l, "x".into(), vec![]),
            Err(ModelError::NameOnLink { .. })
        ));
        assert!(TruthValue::new(1.5, 0.1).is_err());
        assert!(TruthValue::new(f64::NAN, 0.1).is_err());
    }

    #[test]
    fn flatten_puts_targets_first() {
        let c = AtomType::by_name("Concept").unwrap();
        let inh = AtomType::by_name("Inheritance").unwrap();
        let link = Atom::link(
            inh,
            vec![Atom::node(c, "a").unwrap(), Atom::node(c, "b").unwrap()],
        )
        .unwrap();
        let mut flat = Vec::new();
        let (h, depth) = link.flatten_into(&mut flat);
        assert_eq!(h, link.handle());
        assert_eq!(depth, 1);
        assert_eq!(flat.len(), 3);
        assert_eq!(flat[2].0.outgoing, vec![flat[0].0.handle, flat[1].0.handle]);
    }
}
