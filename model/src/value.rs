//! Named values: what the AtomSpace keeps on an atom under key atoms
//! (`(cog-set-value! (Concept "a") (Predicate "num") (FloatValue 1 2 3))`).
//!
//! # Keys
//! A key is any atom. It is kept as text: a `PredicateNode` key, by far the
//! usual one, as its bare name (`num`), so that keys written before key
//! atoms existed (`"values": {"num": [1]}`) mean `(PredicateNode "num")`;
//! any other key atom as its one-line Atomese (see [`key_of`]), which is
//! canonical, so one key atom is one key.
//!
//! # Values
//! [`Value`]: FloatValue, StringValue, LinkValue (of values and atoms,
//! nested at most [`MAX_VALUE_DEPTH`] deep), and an atom inside a
//! LinkValue, kept as its one-line Atomese.

use serde::{Deserialize, Serialize};

use crate::{Atom, ModelError};

/// The deepest nesting of LinkValues accepted.
pub const MAX_VALUE_DEPTH: usize = 16;

/// A named value. In JSON: numbers `[1, 2]`, strings `["a", "b"]`,
/// `{"link": [...]}` and `{"atom": "(Concept \"a\")"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Float(Vec<f64>),
    String(Vec<String>),
    Link { link: Vec<Value> },
    Atom { atom: String },
}

impl Value {
    /// The AtomSpace type of the value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Float(_) => "FloatValue",
            Value::String(_) => "StringValue",
            Value::Link { .. } => "LinkValue",
            Value::Atom { .. } => "Atom",
        }
    }

    /// Checks every number is finite, nesting stays within
    /// [`MAX_VALUE_DEPTH`], and an atom inside is valid Atomese of one atom.
    pub fn validate(&self) -> Result<(), ModelError> {
        let mut stack = vec![(self, 1usize)];
        while let Some((v, depth)) = stack.pop() {
            if depth > MAX_VALUE_DEPTH {
                return Err(ModelError::BadParam(format!(
                    "LinkValues nested deeper than {MAX_VALUE_DEPTH}"
                )));
            }
            match v {
                Value::Float(xs) => {
                    for &x in xs {
                        crate::atom::check_range("value", x, f64::MIN, f64::MAX)?;
                    }
                }
                Value::String(_) => {}
                Value::Link { link } => stack.extend(link.iter().map(|v| (v, depth + 1))),
                Value::Atom { atom } => {
                    if canonical_atom(atom)? != *atom {
                        return Err(ModelError::BadParam(format!(
                            "atom in a value is not in canonical form: {atom}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The key text of key atom `key` (see the module docs).
pub fn key_of(key: &Atom) -> String {
    if key.ty.name == "PredicateNode" && !key.name.starts_with('(') {
        key.name.clone()
    } else {
        crate::output::inline_form(&bare(key))
    }
}

/// `atom` without any values, at every level: what a key or an atom in a
/// value names.
pub fn bare(atom: &Atom) -> Atom {
    Atom {
        ty: atom.ty,
        name: atom.name.clone(),
        outgoing: atom.outgoing.iter().map(bare).collect(),
        tv: None,
        av: None,
        values: Default::default(),
    }
}

/// The one-line Atomese of the one atom `text` holds, values dropped.
fn canonical_atom(text: &str) -> Result<String, ModelError> {
    let limits = crate::input::ReadLimits {
        strict: true,
        max_depth: 64,
        ..Default::default()
    };
    let atoms = crate::input::scm::parse_with(text, limits)
        .map_err(|e| ModelError::BadParam(format!("{text:?}: {}", e.message)))?;
    match &atoms[..] {
        [a] => Ok(crate::output::inline_form(&bare(a))),
        _ => Err(ModelError::BadParam(format!("{text:?} is not one atom"))),
    }
}

/// A key as given in JSON or over the wire, in its canonical form: a bare
/// name stays (a PredicateNode's), Atomese becomes [`key_of`] of its atom.
pub fn normalize_key(key: &str) -> Result<String, ModelError> {
    if !key.starts_with('(') {
        return Ok(key.to_string());
    }
    let atoms = crate::input::scm::parse_with(
        key,
        crate::input::ReadLimits {
            strict: true,
            max_depth: 64,
            ..Default::default()
        },
    )
    .map_err(|e| ModelError::BadParam(format!("value key {key:?}: {}", e.message)))?;
    match &atoms[..] {
        [a] => Ok(key_of(a)),
        _ => Err(ModelError::BadParam(format!(
            "value key {key:?} is not one atom"
        ))),
    }
}

/// The key atom's Atomese for key text `key`: `(PredicateNode "num")` for
/// a bare name.
pub fn key_atomese(key: &str) -> String {
    if key.starts_with('(') {
        key.to_string()
    } else {
        format!("(PredicateNode {})", crate::output::quoted(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AtomType;

    #[test]
    fn keys_are_canonical_and_bare_names_are_predicates() {
        let p = Atom::node(AtomType::builtin("PredicateNode").unwrap(), "num").unwrap();
        assert_eq!(key_of(&p), "num");
        assert_eq!(normalize_key("(Predicate \"num\")").unwrap(), "num");
        assert_eq!(normalize_key("num").unwrap(), "num");
        assert_eq!(
            normalize_key("(Concept   \"k\" (stv 1 1))").unwrap(),
            "(ConceptNode \"k\")"
        );
        assert_eq!(key_atomese("num"), "(PredicateNode \"num\")");
        assert!(normalize_key("(Concept \"a\") (Concept \"b\")").is_err());
        assert!(normalize_key("(define x 1)").is_err());
    }

    #[test]
    fn values_validate_and_read_as_json() {
        let v: Value =
            serde_json::from_str(r#"{"link": [[1.5], ["a"], {"atom": "(ConceptNode \"x\")"}]}"#)
                .unwrap();
        assert_eq!(
            v,
            Value::Link {
                link: vec![
                    Value::Float(vec![1.5]),
                    Value::String(vec!["a".into()]),
                    Value::Atom {
                        atom: "(ConceptNode \"x\")".into()
                    }
                ]
            }
        );
        v.validate().unwrap();
        assert!(
            Value::Atom {
                atom: "(Concept \"x\")".into()
            }
            .validate()
            .is_err()
        );
        assert!(Value::Float(vec![f64::NAN]).validate().is_err());
        let mut deep = Value::Float(vec![]);
        for _ in 0..MAX_VALUE_DEPTH {
            deep = Value::Link { link: vec![deep] };
        }
        assert!(deep.validate().is_err());
    }
}
