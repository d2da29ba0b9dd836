//! JSON Lines input: one nested atom per line.
//!
//! ```text
//! {"type": "ConceptNode", "name": "cat", "tv": [0.9, 0.8]}
//! {"type": "InheritanceLink", "outgoing": [{"type": "Concept", "name": "cat"},
//!   {"type": "Concept", "name": "animal"}], "tv": {"strength": 0.5, "confidence": 0.2}}
//! ```
//! `tv` is `[strength, confidence]` or an object; `av` is `[sti, lti]` or an
//! object; `values` maps keys to lists of numbers. Blank lines are skipped.

use std::collections::BTreeMap;

use crate::{Atom, AtomType, AttentionValue, TruthValue};
use serde::Deserialize;

use super::ParseError;

#[derive(Deserialize)]
#[serde(untagged)]
enum Pair {
    List([f64; 2]),
    Tv { strength: f64, confidence: f64 },
    Av { sti: f64, lti: f64 },
}

impl Pair {
    fn values(&self) -> (f64, f64) {
        match *self {
            Pair::List([a, b]) => (a, b),
            Pair::Tv {
                strength,
                confidence,
            } => (strength, confidence),
            Pair::Av { sti, lti } => (sti, lti),
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
    tv: Option<Pair>,
    #[serde(default)]
    av: Option<Pair>,
    #[serde(default)]
    values: BTreeMap<String, Vec<f64>>,
}

impl JsonAtom {
    fn into_atom(self) -> Result<Atom, crate::ProtoError> {
        let ty = AtomType::by_name(&self.ty)?;
        let mut atom = if ty.is_node() {
            if self.outgoing.is_some() {
                return Err(crate::ProtoError::OutgoingOnNode { ty: ty.name });
            }
            Atom::node(ty, self.name.unwrap_or_default())?
        } else {
            if self.name.is_some() {
                return Err(crate::ProtoError::NameOnLink { ty: ty.name });
            }
            let out = self
                .outgoing
                .unwrap_or_default()
                .into_iter()
                .map(JsonAtom::into_atom)
                .collect::<Result<Vec<_>, _>>()?;
            Atom::link(ty, out)?
        };
        if let Some(tv) = self.tv {
            let (s, c) = tv.values();
            atom.tv = Some(TruthValue::new(s, c)?);
        }
        if let Some(av) = self.av {
            let (s, l) = av.values();
            atom.av = Some(AttentionValue::new(s, l)?);
        }
        atom.values = self.values;
        Ok(atom)
    }
}

/// Parses every line of `text`.
pub fn parse(text: &str) -> Result<Vec<Atom>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let j: JsonAtom = serde_json::from_str(line)
            .map_err(|e| ParseError::new(i + 1, e.column().max(1), e.to_string()))?;
        let col = line.len() - line.trim_start().len() + 1;
        out.push(
            j.into_atom()
                .map_err(|e| ParseError::new(i + 1, col, e.to_string()))?,
        );
    }
    Ok(out)
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
        assert_eq!(atoms[1].tv.unwrap().confidence, 0.25);
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
}
