//! The atom type system: the AtomSpace's built-in hierarchy, new types that
//! users and modules define, and the ids a store keeps for them.
//!
//! # Built-in types
//! [`atomspace.tsv`](types/atomspace.tsv) lists every node and link type of
//! the AtomSpace's type script, over its whole history, so that files written
//! by older releases still load (`scripts/atomspace-types.py` regenerates it).
//! Each row is a fact: a stored id, the name, node or link, whether the type
//! is unordered (a descendant of `UNORDERED_LINK` or `UNORDERED_SIG`), and its
//! parents. Ids are part of the storage format and are never changed or
//! reused; the 18 types of Lockstep's first releases keep their ids.
//!
//! # New types
//! Any other CamelCase name that ends in `Node` or `Link` is a new type of
//! that kind, a child of `Node` or `Link`. [`AtomType::intern`] makes one;
//! its description depends on its name only, so every process that interns a
//! name gets the same type. The stored id of a new type is not part of the
//! type: the coordinator registers the name cluster-wide and assigns an id
//! from [`FIRST_REGISTERED_ID`] up, and each store keeps those ids in a
//! [`TypeTable`].
//!
//! # Handles
//! Handles hash the type's *name* (see [`crate::atom::node_handle`]), never
//! its id, so ids can differ between releases without moving any atom.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{OnceLock, RwLock};

use crate::ModelError;

/// The first id the coordinator gives a registered (non-built-in) type.
pub const FIRST_REGISTERED_ID: u16 = 0x8000;
/// The most new types one process interns, and the most a cluster can
/// register: the registered id space.
pub const MAX_NEW_TYPES: usize = (u16::MAX - FIRST_REGISTERED_ID) as usize + 1;
/// The longest type name accepted, in bytes.
pub const MAX_TYPE_NAME: usize = 128;

/// Whether a type is a node or a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomKind {
    Node,
    Link,
}

/// An atom type. Types are interned: there is one `&'static AtomType` per
/// name in a process, so they compare by address or by name alike.
#[derive(Debug, PartialEq, Eq)]
pub struct AtomType {
    /// The full name (`ConceptNode`), which handles hash.
    pub name: &'static str,
    /// The short form (`Concept`); the name itself when it has no `Node` or
    /// `Link` suffix.
    pub short: &'static str,
    pub kind: AtomKind,
    /// An unordered link's outgoing set is a multiset: it is kept sorted by
    /// handle, so every order of the same atoms is one atom.
    pub unordered: bool,
    /// Direct parents, by full name.
    pub parents: Vec<&'static str>,
    /// The stored id of a built-in type; `None` for a new type, whose id the
    /// cluster assigns (see [`TypeTable`]).
    pub builtin: Option<u16>,
}

struct Builtins {
    types: Vec<AtomType>,
    by_name: HashMap<&'static str, usize>,
    by_short: HashMap<&'static str, usize>,
    by_id: HashMap<u16, usize>,
}

fn short_of(name: &'static str) -> &'static str {
    name.strip_suffix("Node")
        .or_else(|| name.strip_suffix("Link"))
        .filter(|s| !s.is_empty())
        .unwrap_or(name)
}

fn builtins() -> &'static Builtins {
    static TABLE: OnceLock<Builtins> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut types: Vec<AtomType> = Vec::new();
        for row in include_str!("types/atomspace.tsv").lines() {
            if row.starts_with('#') || row.trim().is_empty() {
                continue;
            }
            let cols: Vec<&'static str> = row.split('\t').collect();
            // The table is compiled in and checked by a test; a bad row is a
            // build defect, not input.
            let [id, name, kind, order, parents] = cols[..] else {
                panic!("model/src/types/atomspace.tsv: bad row {row:?}");
            };
            types.push(AtomType {
                name,
                short: short_of(name),
                kind: if kind == "node" {
                    AtomKind::Node
                } else {
                    AtomKind::Link
                },
                unordered: order == "unordered",
                parents: parents.split(',').filter(|p| !p.is_empty()).collect(),
                builtin: Some(id.parse().expect("numeric id in atomspace.tsv")),
            });
        }
        // In id order once, so that `builtins()` is a plain walk.
        types.sort_by_key(|t| t.builtin);
        let by_name = types.iter().enumerate().map(|(i, t)| (t.name, i)).collect();
        let by_id = types
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.builtin.map(|id| (id, i)))
            .collect();
        // Where two types share a short form (`Type`: TypeNode and
        // TypeLink), the node wins, then the older type, so `(Type
        // "ConceptNode")` is the TypeNode Atomese files mean.
        let mut by_short: HashMap<&'static str, usize> = HashMap::new();
        for (i, t) in types.iter().enumerate() {
            let keep = |j: usize| {
                let o: &AtomType = &types[j];
                (o.kind == AtomKind::Node, std::cmp::Reverse(o.builtin))
                    >= (t.kind == AtomKind::Node, std::cmp::Reverse(t.builtin))
            };
            match by_short.get(t.short) {
                Some(&j) if keep(j) => {}
                _ => {
                    by_short.insert(t.short, i);
                }
            }
        }
        Builtins {
            types,
            by_name,
            by_short,
            by_id,
        }
    })
}

fn interned() -> &'static RwLock<HashMap<&'static str, &'static AtomType>> {
    static NEW: OnceLock<RwLock<HashMap<&'static str, &'static AtomType>>> = OnceLock::new();
    NEW.get_or_init(Default::default)
}

/// Whether `name` can be a new type: CamelCase ASCII ending in `Node` or
/// `Link`, with something before the suffix.
pub fn new_type_kind(name: &str) -> Option<AtomKind> {
    if name.len() > MAX_TYPE_NAME
        || !name.starts_with(|c: char| c.is_ascii_uppercase())
        || !name.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    match (name.strip_suffix("Node"), name.strip_suffix("Link")) {
        (Some(s), _) if !s.is_empty() => Some(AtomKind::Node),
        (_, Some(s)) if !s.is_empty() => Some(AtomKind::Link),
        _ => None,
    }
}

impl AtomType {
    /// Every built-in type, in id order.
    pub fn builtins() -> impl Iterator<Item = &'static AtomType> {
        builtins().types.iter()
    }

    /// A built-in type by its full name or short form.
    pub fn builtin(name: &str) -> Option<&'static AtomType> {
        let b = builtins();
        b.by_name
            .get(name)
            .or_else(|| b.by_short.get(name))
            .map(|&i| &b.types[i])
    }

    /// A type this process knows: built-in (full or short name) or already
    /// interned.
    pub fn by_name(name: &str) -> Result<&'static AtomType, ModelError> {
        if let Some(t) = AtomType::builtin(name) {
            return Ok(t);
        }
        let map = interned().read().unwrap_or_else(|e| e.into_inner());
        map.get(name)
            .copied()
            .ok_or_else(|| ModelError::UnknownType(name.to_string()))
    }

    /// A known type, or a new one when `name` can be one (see
    /// [`new_type_kind`]). At most [`MAX_NEW_TYPES`] are interned per
    /// process; each costs a few dozen bytes for the process's life.
    pub fn intern(name: &str) -> Result<&'static AtomType, ModelError> {
        if let Ok(t) = AtomType::by_name(name) {
            return Ok(t);
        }
        let kind = new_type_kind(name).ok_or_else(|| ModelError::UnknownType(name.to_string()))?;
        let mut map = interned().write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = map.get(name) {
            return Ok(t);
        }
        if map.len() >= MAX_NEW_TYPES {
            return Err(ModelError::TooManyTypes { max: MAX_NEW_TYPES });
        }
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        let ty: &'static AtomType = Box::leak(Box::new(AtomType {
            name,
            short: name,
            kind,
            unordered: false,
            parents: vec![match kind {
                AtomKind::Node => "Node",
                AtomKind::Link => "Link",
            }],
            builtin: None,
        }));
        map.insert(name, ty);
        Ok(ty)
    }

    /// A built-in type by its stored id.
    pub fn builtin_by_id(id: u16) -> Option<&'static AtomType> {
        let b = builtins();
        b.by_id.get(&id).map(|&i| &b.types[i])
    }

    pub fn is_node(&self) -> bool {
        self.kind == AtomKind::Node
    }

    /// Whether this type is `ancestor` or descends from it.
    pub fn is_a(&self, ancestor: &AtomType) -> bool {
        let mut stack = vec![self.name];
        let mut seen = Vec::new();
        while let Some(n) = stack.pop() {
            if n == ancestor.name {
                return true;
            }
            if seen.contains(&n) {
                continue;
            }
            seen.push(n);
            if let Ok(t) = AtomType::by_name(n) {
                stack.extend(t.parents.iter().copied());
            }
        }
        false
    }

    /// This type and every type a process knows that descends from it:
    /// the built-ins and `others` (the cluster's registered types), sorted
    /// by name.
    pub fn descendants<'a>(
        &'static self,
        others: impl IntoIterator<Item = &'a &'static AtomType>,
    ) -> Vec<&'static AtomType> {
        let mut out: BTreeMap<&'static str, &'static AtomType> = BTreeMap::new();
        for t in AtomType::builtins().chain(others.into_iter().copied()) {
            if t.is_a(self) {
                out.insert(t.name, t);
            }
        }
        out.into_values().collect()
    }
}

impl fmt::Display for AtomType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The stored ids of the types a store knows: every built-in, and the
/// registered types the cluster assigned ids to.
#[derive(Clone, Debug, Default)]
pub struct TypeTable {
    by_id: HashMap<u16, &'static AtomType>,
    by_name: HashMap<&'static str, u16>,
}

impl TypeTable {
    /// The built-ins only.
    pub fn new() -> TypeTable {
        TypeTable::default()
    }

    /// The stored id of `ty`, if it is built in or registered here.
    pub fn id_of(&self, ty: &AtomType) -> Option<u16> {
        ty.builtin.or_else(|| self.by_name.get(ty.name).copied())
    }

    /// The type stored under `id`.
    pub fn by_id(&self, id: u16) -> Option<&'static AtomType> {
        AtomType::builtin_by_id(id).or_else(|| self.by_id.get(&id).copied())
    }

    /// Adds a registered type. Registering a name again under its id is a
    /// no-op; a different id for a known name, or a known id for a
    /// different name, is refused: the table would disagree with the data.
    pub fn insert(&mut self, id: u16, name: &str) -> Result<&'static AtomType, ModelError> {
        if id < FIRST_REGISTERED_ID {
            return Err(ModelError::TypeConflict(format!(
                "{name} registered under the built-in id {id}"
            )));
        }
        let ty = AtomType::intern(name)?;
        if ty.builtin.is_some() {
            return Err(ModelError::TypeConflict(format!(
                "{name} is built in and cannot be registered"
            )));
        }
        match (self.by_name.get(ty.name), self.by_id.get(&id)) {
            (Some(&have), _) if have == id => Ok(ty),
            (Some(&have), _) => Err(ModelError::TypeConflict(format!(
                "{name} has id {have}, not {id}"
            ))),
            (None, Some(other)) => Err(ModelError::TypeConflict(format!(
                "id {id} is {}, not {name}",
                other.name
            ))),
            (None, None) => {
                self.by_id.insert(id, ty);
                self.by_name.insert(ty.name, id);
                Ok(ty)
            }
        }
    }

    /// The registered types, by id.
    pub fn registered(&self) -> Vec<(u16, &'static AtomType)> {
        let mut v: Vec<(u16, &'static AtomType)> =
            self.by_id.iter().map(|(&i, &t)| (i, t)).collect();
        v.sort_by_key(|(i, _)| *i);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_atomspace_hierarchy_with_stable_ids() {
        let all: Vec<_> = AtomType::builtins().collect();
        let nodes = all.iter().filter(|t| t.is_node()).count();
        let links = all.len() - nodes;
        assert!(
            nodes >= 30 && links >= 159,
            "{nodes} node, {links} link types"
        );
        // The first releases' ids never move.
        for (id, name) in [
            (1, "ConceptNode"),
            (3, "WordNode"),
            (33, "InheritanceLink"),
            (42, "SetLink"),
        ] {
            assert_eq!(AtomType::builtin_by_id(id).unwrap().name, name);
        }
        let mut ids: Vec<u16> = all.iter().map(|t| t.builtin.unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "ids are unique");
        assert!(ids.iter().all(|&i| i < FIRST_REGISTERED_ID));
        // Every parent is a type in the table.
        for t in &all {
            for p in &t.parents {
                assert!(AtomType::builtin(p).is_some(), "{}'s parent {p}", t.name);
            }
        }
    }

    #[test]
    fn hierarchy_kinds_and_order_follow_the_type_script() {
        let t = |n| AtomType::builtin(n).unwrap();
        assert!(t("SetLink").unordered && t("AndLink").unordered);
        assert!(t("SimilarityLink").unordered && !t("ListLink").unordered);
        assert!(t("ConceptNode").is_a(t("Node")));
        assert!(!t("ConceptNode").is_a(t("Link")));
        assert!(t("GroundedPredicateNode").is_a(t("PredicateNode")));
        assert!(t("AbsentLink").is_a(t("PresentLink")));
        // Short forms; a shared short form resolves to the node.
        assert_eq!(t("Concept").name, "ConceptNode");
        assert_eq!(t("Type").name, "TypeNode");
        assert_eq!(t("TypeLink").name, "TypeLink");
        assert_eq!(t("ConnectorDir").kind, AtomKind::Node);
        let links = t("Link").descendants(&[]);
        assert!(links.iter().all(|l| l.kind == AtomKind::Link));
        assert!(links.iter().any(|l| l.name == "EvaluationLink"));
        assert_eq!(t("ConceptNode").descendants(&[]), vec![t("ConceptNode")]);
    }

    #[test]
    fn new_types_are_camel_case_nodes_and_links() {
        assert_eq!(new_type_kind("ReferenceLink"), Some(AtomKind::Link));
        assert_eq!(new_type_kind("WordInstanceNode"), Some(AtomKind::Node));
        for bad in [
            "setlocale",
            "define",
            "Node2",
            "Link",
            "referenceLink",
            "Foo-Link",
            "Foo",
        ] {
            assert_eq!(new_type_kind(bad), None, "{bad}");
        }
        let r = AtomType::intern("ReferenceLink").unwrap();
        assert!(std::ptr::eq(r, AtomType::intern("ReferenceLink").unwrap()));
        assert!(r.is_a(AtomType::builtin("Link").unwrap()));
        assert_eq!(r.builtin, None);
        assert!(matches!(
            AtomType::intern("setlocale"),
            Err(ModelError::UnknownType(_))
        ));
        let links = AtomType::builtin("Link").unwrap().descendants(&[r]);
        assert!(links.contains(&r));
    }

    #[test]
    fn a_table_maps_registered_ids_and_refuses_conflicts() {
        let mut t = TypeTable::new();
        let c = AtomType::builtin("ConceptNode").unwrap();
        assert_eq!(t.id_of(c), Some(1));
        let r = t.insert(FIRST_REGISTERED_ID, "TableTestLink").unwrap();
        assert_eq!(t.id_of(r), Some(FIRST_REGISTERED_ID));
        assert_eq!(t.by_id(FIRST_REGISTERED_ID), Some(r));
        t.insert(FIRST_REGISTERED_ID, "TableTestLink").unwrap();
        assert!(t.insert(FIRST_REGISTERED_ID + 1, "TableTestLink").is_err());
        assert!(t.insert(FIRST_REGISTERED_ID, "OtherTestLink").is_err());
        assert!(t.insert(5, "OtherTestLink").is_err());
        assert!(t.insert(FIRST_REGISTERED_ID + 2, "ConceptNode").is_err());
        assert_eq!(t.registered(), vec![(FIRST_REGISTERED_ID, r)]);
    }
}
