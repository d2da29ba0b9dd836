//! Writing atoms out as Atomese, in the forms the AtomSpace itself writes:
//! `(ConceptNode "bird" (stv 0.7 0.6))` for a node, and a link's values
//! after its type, its outgoing atoms one per line beneath:
//!
//! ```text
//! (InheritanceLink (stv 0.9 0.8)
//!   (ConceptNode "bird")
//!   (ConceptNode "animal"))
//! ```
//!
//! Numbers are written in the shortest form that reads back as the same
//! `f64`, so reading what was written gives the same values bit for bit.
//! The writer is iterative: a deep link costs heap, never stack.

use std::fmt::Write;

use crate::{Atom, AttentionValue, TruthValue, Value};

/// The deepest level indented; deeper atoms line up with it.
const MAX_INDENT: usize = 32;

/// Appends `x` in the shortest decimal form that parses back to the same
/// bits: Rust's `Display` for `f64`, or its exponent form for very large
/// and very small magnitudes (`1e300`, not 301 digits).
fn number(out: &mut String, x: f64) {
    let a = x.abs();
    if a != 0.0 && !(1e-5..1e16).contains(&a) {
        let _ = write!(out, "{x:e}");
    } else {
        let _ = write!(out, "{x}");
    }
}

/// `(stv 0.7 0.6)`, `(ctv 0.5 0.9 12)`, ...
pub fn tv_form(tv: &TruthValue) -> String {
    let mut out = format!("({}", tv.kind.short());
    for &x in tv.values() {
        out.push(' ');
        number(&mut out, x);
    }
    out.push(')');
    out
}

/// `(av sti lti vlti)`.
pub fn av_form(av: &AttentionValue) -> String {
    let mut out = String::from("(av");
    for x in [av.sti, av.lti, av.vlti] {
        out.push(' ');
        number(&mut out, x);
    }
    out.push(')');
    out
}

/// A node name as an Atomese string: `"` and `\` escaped, as the reader
/// unescapes them.
pub fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn values(out: &mut String, a: &Atom) {
    if let Some(tv) = &a.tv {
        out.push(' ');
        out.push_str(&tv_form(tv));
    }
    if let Some(av) = &a.av {
        out.push(' ');
        out.push_str(&av_form(av));
    }
}

/// Appends `atom` as Atomese, with the values it carries (`tv`, `av`)
/// at every level, and no trailing newline.
pub fn write_atom(out: &mut String, atom: &Atom) {
    write(out, atom, true)
}

/// `atom` as Atomese on one line, for listings.
pub fn inline_form(atom: &Atom) -> String {
    let mut out = String::new();
    write(&mut out, atom, false);
    out
}

fn write(out: &mut String, atom: &Atom, lines: bool) {
    // (atom, depth, index of the next outgoing atom to write)
    let mut stack: Vec<(&Atom, usize, usize)> = vec![(atom, 0, 0)];
    while let Some((a, depth, next)) = stack.pop() {
        if next == 0 {
            if depth > 0 && !lines {
                out.push(' ');
            } else if depth > 0 {
                out.push('\n');
                // Capped, so that a deep chain costs linear space.
                for _ in 0..depth.min(MAX_INDENT) {
                    out.push_str("  ");
                }
            }
            out.push('(');
            out.push_str(a.ty.name);
            if a.ty.is_node() {
                out.push(' ');
                out.push_str(&quoted(&a.name));
            }
            values(out, a);
        }
        match a.outgoing.get(next) {
            Some(child) => {
                stack.push((a, depth, next + 1));
                stack.push((child, depth + 1, 0));
            }
            None => out.push(')'),
        }
    }
}

/// A named value as Atomese: `(FloatValue 1 2)`, `(StringValue "a")`,
/// `(LinkValue ...)`, or the atom a LinkValue holds.
pub fn value_form(v: &Value) -> String {
    let mut out = String::new();
    // (value, index of the next element to write)
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, next)) = stack.pop() {
        match v {
            Value::Float(xs) => {
                out.push_str("(FloatValue");
                for &x in xs {
                    out.push(' ');
                    number(&mut out, x);
                }
                out.push(')');
            }
            Value::String(ss) => {
                out.push_str("(StringValue");
                for s in ss {
                    out.push(' ');
                    out.push_str(&quoted(s));
                }
                out.push(')');
            }
            Value::Atom { atom } => out.push_str(atom),
            Value::Link { link } => {
                if next == 0 {
                    out.push_str("(LinkValue");
                }
                match link.get(next) {
                    Some(child) => {
                        out.push(' ');
                        stack.push((v, next + 1));
                        stack.push((child, 0));
                    }
                    None => out.push(')'),
                }
            }
        }
    }
    out
}

/// `(cog-set-value! ATOM KEY VALUE)`: how a dump writes a named value, and
/// what the reader takes back.
pub fn set_value_form(atom: &Atom, key: &str, v: &Value) -> String {
    format!(
        "(cog-set-value! {} {} {})",
        inline_form(&crate::value::bare(atom)),
        crate::value::key_atomese(key),
        value_form(v)
    )
}

/// `atom` as Atomese (see [`write_atom`]).
pub fn atom_form(atom: &Atom) -> String {
    let mut out = String::new();
    write_atom(&mut out, atom);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::scm;
    use crate::{AtomType, TvKind};

    #[test]
    fn written_atomese_reads_back_bit_for_bit() {
        let c = AtomType::builtin("ConceptNode").unwrap();
        let inh = AtomType::builtin("InheritanceLink").unwrap();
        let mut a = Atom::node(c, "bird \"q\" \\ ü").unwrap();
        a.tv = Some(TruthValue::new(0.1 + 0.2, 1.0 / 3.0).unwrap());
        a.av = Some(AttentionValue::with_vlti(-0.0, 1e-300, 12345678.9).unwrap());
        let mut b = Atom::node(c, "animal").unwrap();
        b.tv = Some(TruthValue::of(TvKind::Count, &[0.5, 0.9, 1.5e300]).unwrap());
        let mut l = Atom::link(inh, vec![a.clone(), b]).unwrap();
        l.tv = Some(TruthValue::of(TvKind::Indefinite, &[0.25, 0.75, 0.5]).unwrap());
        let text = atom_form(&l);
        assert!(text.contains("(ctv 0.5 0.9 1.5e300)"), "{text}");
        assert!(text.contains("(av -0 1e-300 12345678.9)"), "{text}");
        assert!(text.starts_with("(InheritanceLink (itv 0.25 0.75 0.5)\n  (ConceptNode \"bird"));
        assert_eq!(
            atom_form(&Atom::node(c, "x").unwrap()),
            "(ConceptNode \"x\")"
        );
        let back = scm::parse(&text).unwrap();
        assert_eq!(back, vec![l.clone()]);
        let bits = |a: &Atom| {
            let av = a.av.unwrap();
            (
                av.sti.to_bits(),
                av.lti.to_bits(),
                a.tv.unwrap().numbers.map(f64::to_bits),
            )
        };
        assert_eq!(bits(&back[0].outgoing[0]), bits(&a));
        assert_eq!(back[0].handle(), l.handle());
        let line = inline_form(&l);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(scm::parse(&line).unwrap(), vec![l]);
    }

    #[test]
    fn a_deep_link_is_written_without_recursion() {
        let list = AtomType::builtin("ListLink").unwrap();
        let mut a = Atom::node(AtomType::builtin("ConceptNode").unwrap(), "x").unwrap();
        for _ in 0..50_000 {
            a = Atom {
                ty: list,
                name: String::new(),
                outgoing: vec![a],
                tv: None,
                av: None,
                values: Default::default(),
            };
        }
        let text = atom_form(&a);
        assert_eq!(text.matches('(').count(), 50_001);
        // Dropping a deep tree recurses in std; keep it from this thread.
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || drop(a))
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn named_values_are_written_as_set_value_forms_that_read_back() {
        let c = AtomType::builtin("ConceptNode").unwrap();
        let mut a = Atom::node(c, "foo").unwrap();
        let values = [
            ("num", Value::Float(vec![1.0, 0.1 + 0.2, -3e-300])),
            ("str", Value::String(vec!["p \"q\"".into(), String::new()])),
            (
                "(ConceptNode \"key\")",
                Value::Link {
                    link: vec![
                        Value::Float(vec![]),
                        Value::Atom {
                            atom: "(ListLink (ConceptNode \"x\"))".into(),
                        },
                        Value::Link {
                            link: vec![Value::String(vec!["deep".into()])],
                        },
                    ],
                },
            ),
        ];
        let mut text = String::new();
        for (k, v) in &values {
            text.push_str(&set_value_form(&a, k, v));
            text.push('\n');
            a.values.insert(k.to_string(), v.clone());
        }
        assert!(text.contains("(cog-set-value! (ConceptNode \"foo\") (PredicateNode \"num\") (FloatValue 1 0.30000000000000004 -3e-300))"), "{text}");
        let back = scm::parse(&text).unwrap();
        assert_eq!(back.len(), 3);
        for (b, (k, v)) in back.iter().zip(&values) {
            assert_eq!(b.handle(), a.handle());
            assert_eq!(b.values.get(*k), Some(v), "{k}");
        }
        // A value outside cog-set-value! is an error, not an atom.
        assert!(scm::parse("(Concept \"a\" (FloatValue 1))").is_err());
        assert!(scm::parse("(cog-set-value! (Concept \"a\") (FloatValue 1))").is_err());
    }
}
