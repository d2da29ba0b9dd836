//! A parser for the Atomese s-expression forms Lockstep loads:
//! `(ConceptNode "x")`, nested links, short forms such as `(Concept "x")`,
//! `(stv s c)` truth values and `(av sti lti)` attention values, with `;`
//! comments.

use crate::{Atom, AtomType, AttentionValue, TruthValue};

use super::ParseError;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Str(String),
    Sym(String),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut col) = (1usize, 1usize);
    let advance = |c: char, line: &mut usize, col: &mut usize| {
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
    };
    while let Some(&c) = chars.peek() {
        let (l, k) = (line, col);
        match c {
            c if c.is_whitespace() => {
                chars.next();
                advance(c, &mut line, &mut col);
            }
            ';' => {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    chars.next();
                    advance(c, &mut line, &mut col);
                }
            }
            '(' | ')' => {
                chars.next();
                advance(c, &mut line, &mut col);
                out.push(Token {
                    tok: if c == '(' { Tok::Open } else { Tok::Close },
                    line: l,
                    col: k,
                });
            }
            '"' => {
                chars.next();
                advance(c, &mut line, &mut col);
                let mut s = String::new();
                loop {
                    let Some(c) = chars.next() else {
                        return Err(ParseError::new(l, k, "unterminated string"));
                    };
                    advance(c, &mut line, &mut col);
                    match c {
                        '"' => break,
                        '\\' => {
                            let Some(e) = chars.next() else {
                                return Err(ParseError::new(l, k, "unterminated string"));
                            };
                            advance(e, &mut line, &mut col);
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                        other => s.push(other),
                    }
                }
                out.push(Token {
                    tok: Tok::Str(s),
                    line: l,
                    col: k,
                });
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '"' || c == ';' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                    advance(c, &mut line, &mut col);
                }
                out.push(Token {
                    tok: Tok::Sym(s),
                    line: l,
                    col: k,
                });
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    end: (usize, usize),
}

/// What can appear inside an atom's parentheses.
enum Arg {
    Atom(Atom),
    Tv(TruthValue),
    Av(AttentionValue),
    Name(String, usize, usize),
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        let t = self.toks.get(self.pos).cloned().ok_or_else(|| {
            ParseError::new(
                self.end.0,
                self.end.1,
                "unexpected end of input: missing ')'",
            )
        })?;
        self.pos += 1;
        Ok(t)
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        let t = self.next()?;
        match &t.tok {
            Tok::Sym(s) => s.parse::<f64>().map_err(|_| {
                ParseError::new(t.line, t.col, format!("expected a number, got {s:?}"))
            }),
            other => Err(ParseError::new(
                t.line,
                t.col,
                format!("expected a number, got {other:?}"),
            )),
        }
    }

    fn close(&mut self) -> Result<(), ParseError> {
        let t = self.next()?;
        if t.tok != Tok::Close {
            return Err(ParseError::new(t.line, t.col, "expected ')'"));
        }
        Ok(())
    }

    /// Parses one parenthesised form; the opening '(' is next.
    fn form(&mut self) -> Result<Arg, ParseError> {
        let open = self.next()?;
        if open.tok != Tok::Open {
            return Err(ParseError::new(open.line, open.col, "expected '('"));
        }
        let head = self.next()?;
        let Tok::Sym(name) = &head.tok else {
            return Err(ParseError::new(
                head.line,
                head.col,
                "expected an atom type after '('",
            ));
        };
        match name.as_str() {
            "stv" | "SimpleTruthValue" => {
                let (s, c) = (self.number()?, self.number()?);
                self.close()?;
                return TruthValue::new(s, c)
                    .map(Arg::Tv)
                    .map_err(|e| ParseError::new(head.line, head.col, e.to_string()));
            }
            "av" | "AttentionValue" => {
                let (s, l) = (self.number()?, self.number()?);
                self.close()?;
                return AttentionValue::new(s, l)
                    .map(Arg::Av)
                    .map_err(|e| ParseError::new(head.line, head.col, e.to_string()));
            }
            _ => {}
        }
        let ty = AtomType::by_name(name)
            .map_err(|e| ParseError::new(head.line, head.col, e.to_string()))?;
        let mut args = Vec::new();
        loop {
            match self.peek() {
                Some(Token {
                    tok: Tok::Close, ..
                }) => {
                    self.pos += 1;
                    break;
                }
                Some(Token { tok: Tok::Open, .. }) => args.push(self.form()?),
                Some(Token {
                    tok: Tok::Str(s),
                    line,
                    col,
                }) => {
                    args.push(Arg::Name(s.clone(), *line, *col));
                    self.pos += 1;
                }
                Some(t) => {
                    return Err(ParseError::new(
                        t.line,
                        t.col,
                        format!("unexpected {:?} inside {}", t.tok, ty.name),
                    ));
                }
                None => {
                    return Err(ParseError::new(
                        self.end.0,
                        self.end.1,
                        format!("unexpected end of input inside {}: missing ')'", ty.name),
                    ));
                }
            }
        }
        let (mut tv, mut av, mut name_arg, mut outgoing) = (None, None, None, Vec::new());
        for a in args {
            match a {
                Arg::Tv(t) => tv = Some(t),
                Arg::Av(v) => av = Some(v),
                Arg::Atom(a) => outgoing.push(a),
                Arg::Name(s, l, c) => {
                    if name_arg.is_some() {
                        return Err(ParseError::new(l, c, format!("{} takes one name", ty.name)));
                    }
                    name_arg = Some(s);
                }
            }
        }
        let at = |e: crate::ProtoError| ParseError::new(head.line, head.col, e.to_string());
        let mut atom = if ty.is_node() {
            if !outgoing.is_empty() {
                return Err(ParseError::new(
                    head.line,
                    head.col,
                    format!("{} is a node type and cannot contain atoms", ty.name),
                ));
            }
            Atom::node(ty, name_arg.unwrap_or_default()).map_err(at)?
        } else {
            if name_arg.is_some() {
                return Err(ParseError::new(
                    head.line,
                    head.col,
                    format!("{} is a link type and cannot have a name", ty.name),
                ));
            }
            Atom::link(ty, outgoing).map_err(at)?
        };
        atom.tv = tv;
        atom.av = av;
        Ok(Arg::Atom(atom))
    }
}

/// Parses every top-level atom in `text`.
pub fn parse(text: &str) -> Result<Vec<Atom>, ParseError> {
    let toks = lex(text)?;
    let lines = text.lines().count().max(1);
    let last_col = text
        .lines()
        .last()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    let mut p = Parser {
        toks,
        pos: 0,
        end: (lines, last_col),
    };
    let mut out = Vec::new();
    while let Some(t) = p.peek() {
        let (line, col) = (t.line, t.col);
        match p.form()? {
            Arg::Atom(a) => out.push(a),
            _ => {
                return Err(ParseError::new(
                    line,
                    col,
                    "a truth or attention value must be inside an atom",
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nodes_links_short_forms_and_values() {
        let text = r#"
            ; a comment
            (ConceptNode "cat" (stv 0.9 0.8))
            (Inheritance (stv 0.5 0.25)
                (Concept "cat")
                (Concept "animal"))
            (EvaluationLink (Predicate "likes") (List (Concept "a") (Concept "b \"q\"")))
        "#;
        let atoms = parse(text).unwrap();
        assert_eq!(atoms.len(), 3);
        assert_eq!(atoms[0].name, "cat");
        assert_eq!(atoms[0].tv, Some(TruthValue::new(0.9, 0.8).unwrap()));
        assert_eq!(atoms[1].ty.name, "InheritanceLink");
        assert_eq!(atoms[1].outgoing.len(), 2);
        assert_eq!(atoms[1].tv.unwrap().strength, 0.5);
        assert_eq!(atoms[2].outgoing[1].outgoing[1].name, "b \"q\"");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("(Concept \"a\")\n  (FooNode \"x\")").unwrap_err();
        assert_eq!((e.line, e.col), (2, 4));
        assert!(e.message.contains("FooNode"), "{}", e.message);

        let e = parse("(Concept \"a\"").unwrap_err();
        assert!(e.message.contains("missing ')'"), "{}", e.message);

        let e = parse("(Concept \"\")").unwrap_err();
        assert!(e.message.contains("non-empty name"), "{}", e.message);

        let e = parse("(Concept \"a\" (stv 2 0.5))").unwrap_err();
        assert_eq!((e.line, e.col), (1, 15));

        let e = parse("(Concept \"unterminated)").unwrap_err();
        assert!(e.message.contains("unterminated"));
    }
}
