//! Atoms, handles, truth/attention values and incoming-set entries.

use std::collections::{BTreeMap, HashMap};

use crate::ProtoError;
use crate::pb;
use lockstep_model::atom::AtomRecord;
use lockstep_model::{
    AtomType, AttentionValue, FlatAtom, Handle, IncomingRef, TruthValue, TvKind, TypeTable, Value,
};

impl From<TruthValue> for pb::TruthValue {
    fn from(tv: TruthValue) -> Self {
        pb::TruthValue {
            strength: tv.strength(),
            confidence: tv.confidence(),
            kind: tv.kind.id(),
            numbers: match tv.kind {
                TvKind::Simple => Vec::new(),
                _ => tv.values().to_vec(),
            },
        }
    }
}

impl TryFrom<pb::TruthValue> for TruthValue {
    type Error = ProtoError;
    fn try_from(tv: pb::TruthValue) -> Result<Self, ProtoError> {
        Ok(match TvKind::from_id(tv.kind)? {
            TvKind::Simple => TruthValue::new(tv.strength, tv.confidence)?,
            kind => TruthValue::of(kind, &tv.numbers)?,
        })
    }
}

impl From<AttentionValue> for pb::AttentionValue {
    fn from(av: AttentionValue) -> Self {
        pb::AttentionValue {
            sti: av.sti,
            lti: av.lti,
            vlti: av.vlti,
        }
    }
}

impl TryFrom<pb::AttentionValue> for AttentionValue {
    type Error = ProtoError;
    fn try_from(av: pb::AttentionValue) -> Result<Self, ProtoError> {
        Ok(AttentionValue::with_vlti(av.sti, av.lti, av.vlti)?)
    }
}

/// The type a message names: built in, known, or a new type this process
/// takes on (a valid new-type name; see [`AtomType::intern`]). Whether a
/// store may hold it is the store's question: it needs the cluster's id.
pub fn type_from_pb(name: &str) -> Result<&'static AtomType, ProtoError> {
    Ok(AtomType::intern(name)?)
}

fn value_to_pb(v: &Value) -> pb::NamedValue {
    match v {
        Value::Float(xs) => pb::NamedValue {
            values: xs.clone(),
            ..Default::default()
        },
        Value::String(ss) => pb::NamedValue {
            strings: ss.clone(),
            kind: 1,
            ..Default::default()
        },
        Value::Link { link } => pb::NamedValue {
            links: link.iter().map(value_to_pb).collect(),
            kind: 2,
            ..Default::default()
        },
        Value::Atom { atom } => pb::NamedValue {
            strings: vec![atom.clone()],
            kind: 3,
            ..Default::default()
        },
    }
}

/// A named value as sent or stored, unchecked (see [`values_from_pb`]).
fn value_from_pb(v: pb::NamedValue) -> Result<Value, ProtoError> {
    Ok(match v.kind {
        0 => Value::Float(v.values),
        1 => Value::String(v.strings),
        2 => Value::Link {
            link: v
                .links
                .into_iter()
                .map(value_from_pb)
                .collect::<Result<_, _>>()?,
        },
        3 => Value::Atom {
            atom: v.strings.into_iter().next().unwrap_or_default(),
        },
        k => return Err(ProtoError::BadParam(format!("unknown value kind {k}"))),
    })
}

fn values_to_pb(values: &BTreeMap<String, Value>) -> HashMap<String, pb::NamedValue> {
    values
        .iter()
        .map(|(k, v)| (k.clone(), value_to_pb(v)))
        .collect()
}

/// Named values from a request: each key canonical, each value valid.
fn values_from_pb(
    values: HashMap<String, pb::NamedValue>,
) -> Result<BTreeMap<String, Value>, ProtoError> {
    let mut out = BTreeMap::new();
    for (k, v) in values {
        let v = value_from_pb(v)?;
        v.validate()?;
        out.insert(lockstep_model::value::normalize_key(&k)?, v);
    }
    Ok(out)
}

/// Parses a list of 16-byte handles.
pub fn handles_from_pb(raw: &[Vec<u8>]) -> Result<Vec<Handle>, ProtoError> {
    Ok(raw
        .iter()
        .map(|b| Handle::from_slice(b))
        .collect::<Result<_, _>>()?)
}

fn handles_to_pb(hs: &[Handle]) -> Vec<Vec<u8>> {
    hs.iter().map(|h| h.to_bytes().to_vec()).collect()
}

fn concat_handles(hs: &[Handle]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * hs.len());
    for h in hs {
        out.extend_from_slice(&h.to_bytes());
    }
    out
}

fn split_handles(b: &[u8]) -> Result<Vec<Handle>, ProtoError> {
    if !b.len().is_multiple_of(16) {
        return Err(ProtoError::Corrupt(format!(
            "outgoing set of {} bytes",
            b.len()
        )));
    }
    Ok(b.chunks_exact(16)
        .map(Handle::from_slice)
        .collect::<Result<_, _>>()?)
}

impl From<&FlatAtom> for pb::AtomWrite {
    fn from(a: &FlatAtom) -> Self {
        pb::AtomWrite {
            r#type: a.ty.name.to_string(),
            name: a.name.clone(),
            outgoing: handles_to_pb(&a.outgoing),
            tv: a.tv.map(Into::into),
            av: a.av.map(Into::into),
            values: values_to_pb(&a.values),
        }
    }
}

impl TryFrom<pb::AtomWrite> for FlatAtom {
    type Error = ProtoError;
    fn try_from(w: pb::AtomWrite) -> Result<Self, ProtoError> {
        let ty = type_from_pb(&w.r#type)?;
        let outgoing = handles_from_pb(&w.outgoing)?;
        let mut atom = FlatAtom::new(ty, w.name, outgoing)?;
        atom.tv = w.tv.map(TryInto::try_into).transpose()?;
        atom.av = w.av.map(TryInto::try_into).transpose()?;
        atom.values = values_from_pb(w.values)?;
        Ok(atom)
    }
}

impl From<&IncomingRef> for pb::IncomingWrite {
    fn from(r: &IncomingRef) -> Self {
        pb::IncomingWrite {
            target: r.target.to_bytes().to_vec(),
            link_type: r.link_type.name.to_string(),
            outgoing: handles_to_pb(&r.outgoing),
        }
    }
}

impl TryFrom<pb::IncomingWrite> for IncomingRef {
    type Error = ProtoError;
    fn try_from(w: pb::IncomingWrite) -> Result<Self, ProtoError> {
        let target = Handle::from_slice(&w.target)?;
        let ty = type_from_pb(&w.link_type)?;
        Ok(IncomingRef::new(target, ty, handles_from_pb(&w.outgoing)?)?)
    }
}

impl From<&IncomingRef> for pb::IncomingEntry {
    fn from(r: &IncomingRef) -> Self {
        pb::IncomingEntry {
            link: r.link.to_bytes().to_vec(),
            link_type: r.link_type.name.to_string(),
            outgoing: handles_to_pb(&r.outgoing),
        }
    }
}

impl From<&AtomRecord> for pb::AtomView {
    fn from(r: &AtomRecord) -> Self {
        pb::AtomView {
            handle: r.handle.to_bytes().to_vec(),
            r#type: r.ty.name.to_string(),
            name: r.name.clone(),
            outgoing: handles_to_pb(&r.outgoing),
            tv: Some(r.tv.into()),
            av: Some(r.av.into()),
            values: values_to_pb(&r.values),
        }
    }
}

impl TryFrom<pb::AtomView> for AtomRecord {
    type Error = ProtoError;
    fn try_from(v: pb::AtomView) -> Result<Self, ProtoError> {
        Ok(AtomRecord {
            handle: Handle::from_slice(&v.handle)?,
            ty: type_from_pb(&v.r#type)?,
            name: v.name,
            outgoing: handles_from_pb(&v.outgoing)?,
            tv: v.tv.ok_or(ProtoError::Missing("tv"))?.try_into()?,
            av: v.av.ok_or(ProtoError::Missing("av"))?.try_into()?,
            values: values_from_pb(v.values)?,
        })
    }
}

/// The storage encoding of a record (the handle is the key, not the value),
/// with its type's id in `types`.
pub fn encode_stored(r: &AtomRecord, type_id: u16) -> Vec<u8> {
    use prost::Message;
    pb::StoredAtom {
        type_id: u32::from(type_id),
        name: r.name.clone(),
        outgoing: concat_handles(&r.outgoing),
        strength: r.tv.numbers[0],
        confidence: r.tv.numbers[1],
        tv_kind: r.tv.kind.id(),
        tv_third: r.tv.numbers[2],
        sti: r.av.sti,
        lti: r.av.lti,
        vlti: r.av.vlti,
        values: values_to_pb(&r.values),
    }
    .encode_to_vec()
}

fn stored_type(types: &TypeTable, id: u32) -> Result<&'static AtomType, ProtoError> {
    u16::try_from(id)
        .ok()
        .and_then(|id| types.by_id(id))
        .ok_or_else(|| ProtoError::Corrupt(format!("unknown stored type id {id}")))
}

/// Decodes a stored record under its key; `types` names its type id.
pub fn decode_stored(
    handle: Handle,
    bytes: &[u8],
    types: &TypeTable,
) -> Result<AtomRecord, ProtoError> {
    use prost::Message;
    let s = pb::StoredAtom::decode(bytes).map_err(|e| ProtoError::Corrupt(e.to_string()))?;
    let kind = TvKind::from_id(s.tv_kind).map_err(|e| ProtoError::Corrupt(e.to_string()))?;
    Ok(AtomRecord {
        handle,
        ty: stored_type(types, s.type_id)?,
        name: s.name,
        outgoing: split_handles(&s.outgoing)?,
        // As written: it was validated then.
        tv: TruthValue {
            kind,
            numbers: [s.strength, s.confidence, s.tv_third],
        },
        av: AttentionValue {
            sti: s.sti,
            lti: s.lti,
            vlti: s.vlti,
        },
        // As written: validated then.
        values: s
            .values
            .into_iter()
            .map(|(k, v)| value_from_pb(v).map(|v| (k, v)))
            .collect::<Result<_, _>>()
            .map_err(|e| ProtoError::Corrupt(e.to_string()))?,
    })
}

/// The storage encoding of an incoming-set entry's value.
pub fn encode_incoming(r: &IncomingRef, link_type_id: u16) -> Vec<u8> {
    use prost::Message;
    pb::StoredIncoming {
        link_type_id: u32::from(link_type_id),
        outgoing: concat_handles(&r.outgoing),
    }
    .encode_to_vec()
}

/// Decodes an incoming-set entry stored under (target, link).
pub fn decode_incoming(
    target: Handle,
    link: Handle,
    bytes: &[u8],
    types: &TypeTable,
) -> Result<IncomingRef, ProtoError> {
    use prost::Message;
    let s = pb::StoredIncoming::decode(bytes).map_err(|e| ProtoError::Corrupt(e.to_string()))?;
    Ok(IncomingRef {
        target,
        link,
        link_type: stored_type(types, s.link_type_id)?,
        outgoing: split_handles(&s.outgoing)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atom_write_round_trips_and_validates() {
        let c = AtomType::by_name("ConceptNode").unwrap();
        let mut a = FlatAtom::new(c, "x".into(), vec![]).unwrap();
        a.tv = Some(TruthValue::new(0.5, 0.25).unwrap());
        let back = FlatAtom::try_from(pb::AtomWrite::from(&a)).unwrap();
        assert_eq!(back, a);

        let mut bad = pb::AtomWrite::from(&a);
        bad.r#type = "no such type".into();
        assert_eq!(
            FlatAtom::try_from(bad).unwrap_err(),
            ProtoError::Model(lockstep_model::ModelError::UnknownType(
                "no such type".into()
            ))
        );
        let mut bad = pb::AtomWrite::from(&a);
        bad.outgoing = vec![vec![1, 2, 3]];
        assert!(FlatAtom::try_from(bad).is_err());
    }

    #[test]
    fn stored_round_trips() {
        let l = AtomType::by_name("ListLink").unwrap();
        let w = FlatAtom::new(l, String::new(), vec![Handle(1), Handle(2)]).unwrap();
        let mut r = AtomRecord::from_write(&w);
        let types = TypeTable::new();
        assert_eq!(
            decode_stored(r.handle, &encode_stored(&r, 32), &types).unwrap(),
            r
        );
        // Every kind of truth value and a three-number av, bit for bit.
        for kind in TvKind::ALL {
            let n = [0.1, 0.7, 0.3];
            r.tv = TruthValue::of(kind, &n[..kind.arity()]).unwrap();
            r.av = AttentionValue::with_vlti(-1.5, 2.25, 1.0).unwrap();
            let back = decode_stored(r.handle, &encode_stored(&r, 32), &types).unwrap();
            assert_eq!(back, r);
            let wire = TruthValue::try_from(pb::TruthValue::from(r.tv)).unwrap();
            assert_eq!(wire, r.tv);
        }
        // Named values of every kind, nested, bit for bit.
        r.values.insert(
            "(ConceptNode \"key\")".into(),
            Value::Link {
                link: vec![
                    Value::Float(vec![-0.0, 1e-300]),
                    Value::String(vec!["s".into()]),
                    Value::Atom {
                        atom: "(ConceptNode \"a\")".into(),
                    },
                ],
            },
        );
        assert_eq!(
            decode_stored(r.handle, &encode_stored(&r, 32), &types).unwrap(),
            r
        );
        let mut w = FlatAtom::new(
            AtomType::by_name("ListLink").unwrap(),
            String::new(),
            vec![Handle(1)],
        )
        .unwrap();
        w.values = r.values.clone();
        assert_eq!(FlatAtom::try_from(pb::AtomWrite::from(&w)).unwrap(), w);
        // An id the table does not know is corrupt, never a panic.
        assert!(matches!(
            decode_stored(r.handle, &encode_stored(&r, 0x9000), &types),
            Err(ProtoError::Corrupt(_))
        ));
        // A record from before kinds and vlti existed reads as simple.
        let old = pb::StoredAtom {
            type_id: 1,
            name: "x".into(),
            strength: 0.5,
            confidence: 0.25,
            ..Default::default()
        };
        use prost::Message;
        let back = decode_stored(Handle(7), &old.encode_to_vec(), &types).unwrap();
        assert_eq!(back.tv, TruthValue::new(0.5, 0.25).unwrap());
    }
}
