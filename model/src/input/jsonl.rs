//! JSON Lines input: one nested atom per line.
//!
//! ```text
//! {"type": "ConceptNode", "name": "cat", "tv": [0.9, 0.8]}
//! {"type": "InheritanceLink", "outgoing": [{"type": "Concept", "name": "cat"},
//!   {"type": "Concept", "name": "animal"}], "tv": {"strength": 0.5, "confidence": 0.2}}
//! ```
//! `tv` is `[strength, confidence]`, `{"strength": s, "confidence": c}` or,
//! for any kind of truth value, `{"kind": "ctv", "values": [s, c, n]}`; `av`
//! is `[sti, lti]`, `[sti, lti, vlti]` or an object with those fields;
//! `values` maps keys (a PredicateNode's name, or any key atom's Atomese)
//! to named values: `[1, 2]`, `["a"]`, `{"link": [...]}` (see
//! [`crate::Value`]). Type names that are not built in
//! become new types unless [`ReadLimits::strict_types`] is set. Blank lines
//! are skipped.

use std::collections::BTreeMap;

use crate::{Atom, AtomType, AttentionValue, TruthValue, TvKind};
use serde::Deserialize;

use std::io::{BufRead, Read};

use super::{ParseError, ReadError, ReadLimits};

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonTv {
    List(Vec<f64>),
    Simple { strength: f64, confidence: f64 },
    Kind { kind: String, values: Vec<f64> },
}

impl JsonTv {
    fn into_tv(self) -> Result<TruthValue, crate::ModelError> {
        match self {
            JsonTv::List(v) => TruthValue::of(TvKind::Simple, &v),
            JsonTv::Simple {
                strength,
                confidence,
            } => TruthValue::new(strength, confidence),
            JsonTv::Kind { kind, values } => {
                let k = TvKind::by_name(&kind).ok_or_else(|| {
                    crate::ModelError::BadParam(format!("unknown truth value kind {kind:?}"))
                })?;
                TruthValue::of(k, &values)
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonAv {
    List(Vec<f64>),
    Object {
        sti: f64,
        lti: f64,
        #[serde(default)]
        vlti: f64,
    },
}

impl JsonAv {
    fn into_av(self) -> Result<AttentionValue, crate::ModelError> {
        match self {
            JsonAv::List(v) => match v[..] {
                [sti, lti] => AttentionValue::new(sti, lti),
                [sti, lti, vlti] => AttentionValue::with_vlti(sti, lti, vlti),
                _ => Err(crate::ModelError::BadParam(format!(
                    "av takes 2 or 3 numbers, got {}",
                    v.len()
                ))),
            },
            JsonAv::Object { sti, lti, vlti } => AttentionValue::with_vlti(sti, lti, vlti),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonAtom {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    outgoing: Option<Vec<JsonAtom>>,
    #[serde(default)]
    tv: Option<JsonTv>,
    #[serde(default)]
    av: Option<JsonAv>,
    #[serde(default)]
    values: BTreeMap<String, crate::Value>,
}

impl JsonAtom {
    fn into_atom(self, strict_types: bool) -> Result<Atom, crate::ModelError> {
        let ty = if strict_types {
            AtomType::builtin(&self.ty)
                .ok_or_else(|| crate::ModelError::StrictType(self.ty.clone()))?
        } else {
            AtomType::intern(&self.ty)?
        };
        let mut atom = if ty.is_node() {
            if self.outgoing.is_some() {
                return Err(crate::ModelError::OutgoingOnNode { ty: ty.name });
            }
            Atom::node(ty, self.name.unwrap_or_default())?
        } else {
            if self.name.is_some() {
                return Err(crate::ModelError::NameOnLink { ty: ty.name });
            }
            let out = self
                .outgoing
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.into_atom(strict_types))
                .collect::<Result<Vec<_>, _>>()?;
            Atom::link(ty, out)?
        };
        if let Some(tv) = self.tv {
            atom.tv = Some(tv.into_tv()?);
        }
        if let Some(av) = self.av {
            atom.av = Some(av.into_av()?);
        }
        for (k, v) in self.values {
            v.validate()?;
            atom.values.insert(crate::value::normalize_key(&k)?, v);
        }
        Ok(atom)
    }
}

/// A stream of atoms in JSON Lines. JSON nesting is bounded by
/// serde_json's recursion limit (128 levels, about 64 levels of atoms), and
/// each atom's depth by [`ReadLimits::max_depth`].
pub struct Reader<R> {
    input: R,
    offset: u64,
    limit: u64,
    line: usize,
    max_depth: usize,
    strict_types: bool,
    buf: Vec<u8>,
}

fn depth(a: &Atom) -> usize {
    // Iterative, like the reader.
    let mut max = 0;
    let mut stack = vec![(a, 1usize)];
    while let Some((a, d)) = stack.pop() {
        max = max.max(d);
        stack.extend(a.outgoing.iter().map(|o| (o, d + 1)));
    }
    max
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, limits: ReadLimits) -> Reader<R> {
        Reader {
            input,
            offset: 0,
            limit: limits.max_bytes,
            line: 0,
            max_depth: limits.max_depth,
            strict_types: limits.strict_types,
            buf: Vec::new(),
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// The next atom, or `None` at the end of the input.
    pub fn next_atom(&mut self) -> Result<Option<Atom>, ReadError> {
        loop {
            self.buf.clear();
            let room = self.limit.saturating_sub(self.offset);
            // One byte past the budget tells a line that ends exactly at
            // it from one that goes on.
            let n = (&mut self.input)
                .take(room.saturating_add(1))
                .read_until(b'\n', &mut self.buf)? as u64;
            if n == 0 {
                return Ok(None);
            }
            if n > room {
                return Err(ReadError::TooLarge { limit: self.limit });
            }
            self.offset += n;
            self.line += 1;
            let line = self.line;
            let text = std::str::from_utf8(&self.buf)
                .map_err(|_| ReadError::Parse(ParseError::new(line, 1, "invalid UTF-8")))?;
            if text.trim().is_empty() {
                continue;
            }
            let j: JsonAtom = serde_json::from_str(text).map_err(|e| {
                ReadError::Parse(ParseError::new(line, e.column().max(1), e.to_string()))
            })?;
            let col = text.len() - text.trim_start().len() + 1;
            let atom = j
                .into_atom(self.strict_types)
                .map_err(|e| ReadError::Parse(ParseError::new(line, col, e.to_string())))?;
            if depth(&atom) > self.max_depth {
                return Err(ReadError::Parse(ParseError::new(
                    line,
                    col,
                    format!("atoms nested deeper than the limit of {}", self.max_depth),
                )));
            }
            return Ok(Some(atom));
        }
    }
}

/// Parses every line of `text`.
pub fn parse(text: &str) -> Result<Vec<Atom>, ParseError> {
    let mut r = Reader::new(text.as_bytes(), ReadLimits::default());
    let mut out = Vec::new();
    loop {
        match r.next_atom() {
            Ok(Some(a)) => out.push(a),
            Ok(None) => return Ok(out),
            Err(ReadError::Parse(e)) => return Err(e),
            Err(e) => return Err(ParseError::new(r.line.max(1), 1, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_atoms_and_both_value_forms() {
        let text = concat!(
            r#"{"type": "ConceptNode", "name": "cat", "tv": [0.9, 0.8]}"#,
            "\n\n",
            r#"{"type": "Inheritance", "outgoing": [{"type": "Concept", "name": "cat"}, {"type": "Concept", "name": "animal"}], "tv": {"strength": 0.5, "confidence": 0.25}}"#,
        );
        let atoms = parse(text).unwrap();
        assert_eq!(atoms.len(), 2);
        assert_eq!(atoms[1].outgoing[1].name, "animal");
        assert_eq!(atoms[1].tv.unwrap().confidence(), 0.25);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(
            "{\"type\": \"Concept\", \"name\": \"a\"}\n{\"type\": \"Nope\", \"name\": \"x\"}",
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("Nope"));
        let e = parse("{\"type\": \"Concept\", \"name\": \"a\"\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse(r#"{"type": "Concept", "name": ""}"#).unwrap_err();
        assert!(e.message.contains("non-empty name"));
    }

    #[test]
    fn deep_json_and_endless_lines_are_refused() {
        let mut deep = String::new();
        for _ in 0..5_000 {
            deep.push_str(r#"{"type": "List", "outgoing": ["#);
        }
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("recursion limit"), "{}", e.message);
        let line = r#"{"type": "List", "outgoing": [{"type": "List", "outgoing": [{"type": "Concept", "name": "x"}]}]}"#;
        let mut r = Reader::new(
            line.as_bytes(),
            ReadLimits {
                max_depth: 2,
                max_bytes: u64::MAX,
                ..Default::default()
            },
        );
        assert!(
            matches!(r.next_atom(), Err(ReadError::Parse(e)) if e.message.contains("limit of 2"))
        );
        let zeros = std::io::Read::take(std::io::repeat(b'x'), 1 << 30);
        let mut r = Reader::new(
            std::io::BufReader::new(zeros),
            ReadLimits {
                max_depth: 10,
                max_bytes: 1 << 20,
                ..Default::default()
            },
        );
        assert!(matches!(r.next_atom(), Err(ReadError::TooLarge { .. })));
    }

    #[test]
    fn every_truth_value_kind_three_number_av_and_new_types() {
        let text = concat!(
            r#"{"type": "ReferenceLink", "outgoing": [{"type": "WordInstanceNode", "name": "w@1"}, {"type": "Concept", "name": "w"}], "tv": {"kind": "ctv", "values": [0.5, 0.9, 12]}, "av": [1, 2, 3]}"#,
            "\n",
            r#"{"type": "Concept", "name": "i", "tv": {"kind": "IndefiniteTruthValue", "values": [0.1, 0.3, 0.9]}, "av": {"sti": 4, "lti": 5}}"#,
        );
        let atoms = parse(text).unwrap();
        let ctv = atoms[0].tv.unwrap();
        assert_eq!(
            (ctv.kind, ctv.values()),
            (TvKind::Count, &[0.5, 0.9, 12.0][..])
        );
        assert_eq!(atoms[0].av.unwrap().vlti, 3.0);
        assert_eq!(atoms[0].ty.name, "ReferenceLink");
        assert_eq!(atoms[1].tv.unwrap().kind, TvKind::Indefinite);
        assert_eq!(atoms[1].av.unwrap().vlti, 0.0);
        let strict = ReadLimits {
            strict_types: true,
            ..Default::default()
        };
        let mut r = Reader::new(text.as_bytes(), strict);
        assert!(
            matches!(r.next_atom(), Err(ReadError::Parse(e)) if e.message.contains("ReferenceLink"))
        );
        assert!(parse(r#"{"type": "Concept", "name": "x", "av": [1]}"#).is_err());
        assert!(
            parse(r#"{"type": "Concept", "name": "x", "tv": {"kind": "ctv", "values": [0.5]}}"#)
                .is_err()
        );
    }
}
