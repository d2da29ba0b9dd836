//! A reader for the Atomese s-expression forms Lockstep loads:
//! `(ConceptNode "x")`, nested links, short forms such as `(Concept "x")`,
//! truth values of every kind (`(stv s c)`, `(ctv s c n)`, `(itv l u c)`,
//! `ftv`, `ptv`, `etv`, or their full names) and `(av sti lti [vlti])`
//! attention values anywhere among an atom's arguments, with `;` comments.
//!
//! Types resolve by full or short name; any other CamelCase name ending in
//! `Node` or `Link` is a new type, unless [`ReadLimits::strict_types`].
//! A top-level form that is not an atom (`define`, `use-modules`,
//! `setlocale`, ...) is skipped and counted by its head ([`Reader::skipped`]),
//! or refused under [`ReadLimits::strict`].
//!
//! It reads a byte stream one token at a time and parses with an explicit
//! stack of open forms, so nesting depth costs heap (bounded by
//! [`ReadLimits::max_depth`]) and never the thread's stack.

use std::io::BufRead;

use crate::{Atom, AtomType, AttentionValue, TruthValue, TvKind, Value};

use super::{ParseError, ReadError, ReadLimits};

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

/// Bytes from a `BufRead`, with the position (line, column in characters)
/// and a byte budget.
struct Source<R> {
    input: R,
    offset: u64,
    limit: u64,
    line: usize,
    col: usize,
}

impl<R: BufRead> Source<R> {
    fn peek(&mut self) -> Result<Option<u8>, ReadError> {
        if self.offset >= self.limit {
            // Only an input that goes on past the budget is an error.
            let more = !self.input.fill_buf()?.is_empty();
            return if more {
                Err(ReadError::TooLarge { limit: self.limit })
            } else {
                Ok(None)
            };
        }
        Ok(self.input.fill_buf()?.first().copied())
    }

    /// Consumes the byte `peek` returned.
    fn bump(&mut self, b: u8) {
        self.input.consume(1);
        self.offset += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            // A column is a character: UTF-8 continuation bytes add none.
            self.col += 1;
        }
    }

    fn next(&mut self) -> Result<Option<u8>, ReadError> {
        let b = self.peek()?;
        if let Some(b) = b {
            self.bump(b);
        }
        Ok(b)
    }
}

fn utf8(bytes: Vec<u8>, line: usize, col: usize) -> Result<String, ReadError> {
    String::from_utf8(bytes)
        .map_err(|_| ReadError::Parse(ParseError::new(line, col, "invalid UTF-8")))
}

fn parse_err(line: usize, col: usize, message: impl Into<String>) -> ReadError {
    ReadError::Parse(ParseError::new(line, col, message))
}

/// What can appear inside an atom's parentheses.
enum Arg {
    Atom(Atom),
    Tv(TruthValue),
    Av(AttentionValue),
    Name(String, usize, usize),
    Value(Value),
}

/// What an open form builds.
#[derive(Clone, Copy)]
enum Frame {
    Atom(&'static AtomType),
    /// `(cog-set-value! ATOM KEY VALUE)`, at the top level.
    SetValue,
    /// `(LinkValue ...)`, of values and atoms.
    LinkValue,
}

impl Frame {
    fn name(&self) -> &'static str {
        match self {
            Frame::Atom(ty) => ty.name,
            Frame::SetValue => SET_VALUE,
            Frame::LinkValue => "LinkValue",
        }
    }
}

const SET_VALUE: &str = "cog-set-value!";

/// A form whose ')' has not been read yet.
struct Open {
    frame: Frame,
    line: usize,
    col: usize,
    args: Vec<Arg>,
}

/// A stream of top-level atoms in Atomese.
pub struct Reader<R> {
    src: Source<R>,
    max_depth: usize,
    strict: bool,
    strict_types: bool,
    /// Top-level forms skipped, by head.
    skipped: std::collections::BTreeMap<String, u64>,
    /// A token read ahead.
    pending: Option<Token>,
}

/// The longest head a skipped form is counted under; longer ones are cut.
const MAX_SKIPPED_HEAD: usize = 64;
/// The most distinct heads counted; the rest are counted under `...`.
const MAX_SKIPPED_HEADS: usize = 256;

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, limits: ReadLimits) -> Reader<R> {
        Reader {
            src: Source {
                input,
                offset: 0,
                limit: limits.max_bytes,
                line: 1,
                col: 1,
            },
            max_depth: limits.max_depth,
            strict: limits.strict,
            strict_types: limits.strict_types,
            skipped: Default::default(),
            pending: None,
        }
    }

    pub fn offset(&self) -> u64 {
        self.src.offset
    }

    pub fn set_limit(&mut self, limit: u64) {
        self.src.limit = limit;
    }

    /// Top-level forms skipped so far because they are not atoms, by head.
    pub fn skipped(&self) -> &std::collections::BTreeMap<String, u64> {
        &self.skipped
    }

    /// Reads to the `)` that closes a form whose `(` and head were read,
    /// counting nesting without keeping anything.
    fn skip_form(&mut self, line: usize, col: usize) -> Result<(), ReadError> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.token()? {
                Some(Token { tok: Tok::Open, .. }) => depth += 1,
                Some(Token {
                    tok: Tok::Close, ..
                }) => depth -= 1,
                Some(_) => {}
                None => {
                    return Err(parse_err(
                        line,
                        col,
                        "unexpected end of input inside this form: missing ')'",
                    ));
                }
            }
        }
        Ok(())
    }

    fn count_skipped(&mut self, head: &str) {
        let mut head: String = head.chars().take(MAX_SKIPPED_HEAD).collect();
        if !self.skipped.contains_key(&head) && self.skipped.len() >= MAX_SKIPPED_HEADS {
            head = "...".into();
        }
        *self.skipped.entry(head).or_default() += 1;
    }

    /// The elements of a value form up to its `)`: at most `max`, each
    /// made by `item` from its token, or refused as not `expected`.
    fn elements<T>(
        &mut self,
        max: usize,
        expected: &str,
        item: impl Fn(&Token) -> Option<Result<T, ReadError>>,
    ) -> Result<Vec<T>, ReadError> {
        let mut out = Vec::new();
        loop {
            let Some(t) = self.token()? else {
                return Err(self.end_error("unexpected end of input: missing ')'".into()));
            };
            if t.tok == Tok::Close {
                return Ok(out);
            }
            match item(&t) {
                Some(r) if out.len() < max => out.push(r?),
                _ => {
                    return Err(parse_err(
                        t.line,
                        t.col,
                        format!("expected {expected} or ')', got {:?}", t.tok),
                    ));
                }
            }
        }
    }

    /// The strings of a StringValue up to its `)`.
    fn strings(&mut self) -> Result<Vec<String>, ReadError> {
        self.elements(usize::MAX, "a string", |t| match &t.tok {
            Tok::Str(s) => Some(Ok(s.clone())),
            _ => None,
        })
    }

    /// The numbers of a truth or attention value up to its `)`.
    fn numbers(&mut self) -> Result<Vec<f64>, ReadError> {
        self.numbers_up_to(8)
    }

    /// The numbers of a value form up to its `)`, at most `max`.
    fn numbers_up_to(&mut self, max: usize) -> Result<Vec<f64>, ReadError> {
        self.elements(max, "a number", |t| match &t.tok {
            Tok::Sym(s) => Some(
                s.parse::<f64>()
                    .map_err(|_| parse_err(t.line, t.col, format!("expected a number, got {s:?}"))),
            ),
            _ => None,
        })
    }

    fn token(&mut self) -> Result<Option<Token>, ReadError> {
        if let Some(t) = self.pending.take() {
            return Ok(Some(t));
        }
        let src = &mut self.src;
        loop {
            let Some(c) = src.peek()? else {
                return Ok(None);
            };
            let (line, col) = (src.line, src.col);
            let at = |tok| Ok(Some(Token { tok, line, col }));
            match c {
                b if b.is_ascii_whitespace() => src.bump(b),
                b';' => {
                    while let Some(c) = src.peek()? {
                        if c == b'\n' {
                            break;
                        }
                        src.bump(c);
                    }
                }
                b'(' | b')' => {
                    src.bump(c);
                    return at(if c == b'(' { Tok::Open } else { Tok::Close });
                }
                b'"' => {
                    src.bump(c);
                    let mut s = Vec::new();
                    loop {
                        let Some(c) = src.next()? else {
                            return Err(parse_err(line, col, "unterminated string"));
                        };
                        match c {
                            b'"' => break,
                            b'\\' => {
                                let Some(e) = src.next()? else {
                                    return Err(parse_err(line, col, "unterminated string"));
                                };
                                s.push(match e {
                                    b'n' => b'\n',
                                    b't' => b'\t',
                                    other => other,
                                });
                            }
                            other => s.push(other),
                        }
                    }
                    return at(Tok::Str(utf8(s, line, col)?));
                }
                _ => {
                    let mut s = Vec::new();
                    while let Some(c) = src.peek()? {
                        if c.is_ascii_whitespace() || matches!(c, b'(' | b')' | b'"' | b';') {
                            break;
                        }
                        s.push(c);
                        src.bump(c);
                    }
                    return at(Tok::Sym(utf8(s, line, col)?));
                }
            }
        }
    }

    fn end_error(&self, msg: String) -> ReadError {
        parse_err(self.src.line, self.src.col, msg)
    }

    /// The next top-level atom, or `None` at the end of the input.
    pub fn next_atom(&mut self) -> Result<Option<Atom>, ReadError> {
        let mut stack: Vec<Open> = Vec::new();
        loop {
            let Some(t) = self.token()? else {
                return match stack.last() {
                    None => Ok(None),
                    Some(o) => Err(self.end_error(format!(
                        "unexpected end of input inside {}: missing ')'",
                        o.frame.name()
                    ))),
                };
            };
            let arg = match t.tok {
                Tok::Open => {
                    let head = self.token()?;
                    let Some(Token {
                        tok: Tok::Sym(name),
                        line,
                        col,
                    }) = head
                    else {
                        // `(("x") ...)` or `()` at the top level: a form, not
                        // an atom.
                        if stack.is_empty() && !self.strict && head.is_some() {
                            match head {
                                Some(Token {
                                    tok: Tok::Close, ..
                                }) => {}
                                Some(h) => {
                                    if h.tok == Tok::Open {
                                        self.pending = Some(h);
                                    }
                                    self.skip_form(t.line, t.col)?;
                                }
                                None => {}
                            }
                            self.count_skipped("(");
                            continue;
                        }
                        let (l, c) =
                            head.map_or((self.src.line, self.src.col), |h| (h.line, h.col));
                        return Err(parse_err(l, c, "expected an atom type after '('"));
                    };
                    let value = |e: crate::ModelError| parse_err(line, col, e.to_string());
                    let frame = match (name.as_str(), stack.last().map(|o| o.frame)) {
                        (SET_VALUE, None) => Some(Frame::SetValue),
                        ("LinkValue", Some(Frame::SetValue | Frame::LinkValue)) => {
                            Some(Frame::LinkValue)
                        }
                        _ => None,
                    };
                    if let Some(frame) = frame {
                        push_frame(&mut stack, self.max_depth, frame, line, col)?;
                        continue;
                    }
                    let in_value = matches!(
                        stack.last().map(|o| o.frame),
                        Some(Frame::SetValue | Frame::LinkValue)
                    );
                    if in_value && name == "FloatValue" {
                        let n = self.numbers_up_to(MAX_FLOATS)?;
                        let v = Value::Float(n);
                        v.validate().map_err(value)?;
                        Arg::Value(v)
                    } else if in_value && name == "StringValue" {
                        Arg::Value(Value::String(self.strings()?))
                    } else if let Some(kind) = TvKind::by_name(&name) {
                        let n = self.numbers()?;
                        Arg::Tv(TruthValue::of(kind, &n).map_err(value)?)
                    } else if matches!(name.as_str(), "av" | "AttentionValue") {
                        let n = self.numbers()?;
                        let av = match n[..] {
                            [sti, lti] => AttentionValue::new(sti, lti),
                            [sti, lti, vlti] => AttentionValue::with_vlti(sti, lti, vlti),
                            _ => Err(crate::ModelError::BadParam(format!(
                                "av takes 2 or 3 numbers, got {}",
                                n.len()
                            ))),
                        };
                        Arg::Av(av.map_err(value)?)
                    } else {
                        let ty = if self.strict_types {
                            // A name that could not be a type at all is a
                            // form to skip, as without the flag.
                            AtomType::builtin(&name).ok_or_else(
                                || match crate::types::new_type_kind(&name) {
                                    Some(_) => crate::ModelError::StrictType(name.clone()),
                                    None => crate::ModelError::UnknownType(name.clone()),
                                },
                            )
                        } else {
                            AtomType::intern(&name)
                        };
                        let ty = match ty {
                            Ok(ty) => ty,
                            // A top-level form that is not an atom.
                            Err(crate::ModelError::UnknownType(_))
                                if stack.is_empty() && !self.strict =>
                            {
                                self.skip_form(line, col)?;
                                self.count_skipped(&name);
                                continue;
                            }
                            Err(crate::ModelError::UnknownType(_)) if stack.is_empty() => {
                                return Err(parse_err(
                                    line,
                                    col,
                                    format!(
                                        "{name:?} is not an atom type: a form that is not an atom (--strict)"
                                    ),
                                ));
                            }
                            Err(e) => return Err(value(e)),
                        };
                        push_frame(&mut stack, self.max_depth, Frame::Atom(ty), line, col)?;
                        continue;
                    }
                }
                Tok::Close => {
                    let Some(open) = stack.pop() else {
                        return Err(parse_err(t.line, t.col, "unexpected ')'"));
                    };
                    build(open)?
                }
                Tok::Str(s) if !stack.is_empty() => Arg::Name(s, t.line, t.col),
                tok => {
                    return Err(match stack.last() {
                        Some(o) => parse_err(
                            t.line,
                            t.col,
                            format!("unexpected {tok:?} inside {}", o.frame.name()),
                        ),
                        None => parse_err(t.line, t.col, "expected '('"),
                    });
                }
            };
            match (stack.last_mut(), arg) {
                (Some(parent), arg) => parent.args.push(arg),
                (None, Arg::Atom(a)) => return Ok(Some(a)),
                (None, _) => {
                    return Err(parse_err(
                        t.line,
                        t.col,
                        "a truth or attention value must be inside an atom",
                    ));
                }
            }
        }
    }
}

/// Opens a form, within the nesting limit.
fn push_frame(
    stack: &mut Vec<Open>,
    max_depth: usize,
    frame: Frame,
    line: usize,
    col: usize,
) -> Result<(), ReadError> {
    if stack.len() >= max_depth {
        return Err(parse_err(
            line,
            col,
            format!("atoms nested deeper than the limit of {max_depth}"),
        ));
    }
    stack.push(Open {
        frame,
        line,
        col,
        args: Vec::new(),
    });
    Ok(())
}

/// The most numbers one FloatValue may hold.
const MAX_FLOATS: usize = 1 << 20;

/// What an open form makes once its ')' is read.
fn build(open: Open) -> Result<Arg, ReadError> {
    let Open {
        frame,
        line,
        col,
        args,
    } = open;
    let ty = match frame {
        Frame::Atom(ty) => ty,
        Frame::LinkValue => {
            let mut link = Vec::with_capacity(args.len());
            for a in args {
                link.push(match a {
                    Arg::Value(v) => v,
                    Arg::Atom(a) => Value::Atom {
                        atom: crate::output::inline_form(&crate::value::bare(&a)),
                    },
                    _ => {
                        return Err(parse_err(
                            line,
                            col,
                            "a LinkValue holds values and atoms only",
                        ));
                    }
                });
            }
            let v = Value::Link { link };
            v.validate()
                .map_err(|e| parse_err(line, col, e.to_string()))?;
            return Ok(Arg::Value(v));
        }
        Frame::SetValue => {
            let mut args = args.into_iter();
            return match (args.next(), args.next(), args.next(), args.next()) {
                (Some(Arg::Atom(mut atom)), Some(Arg::Atom(key)), Some(Arg::Value(v)), None) => {
                    atom.values.insert(crate::value::key_of(&key), v);
                    Ok(Arg::Atom(atom))
                }
                _ => Err(parse_err(
                    line,
                    col,
                    "cog-set-value! takes an atom, a key atom and a value",
                )),
            };
        }
    };
    let (mut tv, mut av, mut name_arg, mut outgoing) = (None, None, None, Vec::new());
    for a in args {
        match a {
            Arg::Tv(t) => tv = Some(t),
            Arg::Av(v) => av = Some(v),
            Arg::Atom(a) => outgoing.push(a),
            Arg::Value(v) => {
                return Err(parse_err(
                    line,
                    col,
                    format!("a {} must be inside cog-set-value!", v.type_name()),
                ));
            }
            Arg::Name(s, l, c) => {
                if name_arg.is_some() {
                    return Err(parse_err(l, c, format!("{} takes one name", ty.name)));
                }
                name_arg = Some(s);
            }
        }
    }
    let at = |e: crate::ModelError| parse_err(line, col, e.to_string());
    let mut atom = if ty.is_node() {
        if !outgoing.is_empty() {
            return Err(parse_err(
                line,
                col,
                format!("{} is a node type and cannot contain atoms", ty.name),
            ));
        }
        Atom::node(ty, name_arg.unwrap_or_default()).map_err(at)?
    } else {
        if name_arg.is_some() {
            return Err(parse_err(
                line,
                col,
                format!("{} is a link type and cannot have a name", ty.name),
            ));
        }
        Atom::link(ty, outgoing).map_err(at)?
    };
    atom.tv = tv;
    atom.av = av;
    Ok(Arg::Atom(atom))
}

/// Parses every top-level atom in `text`, with the default limits.
pub fn parse(text: &str) -> Result<Vec<Atom>, ParseError> {
    parse_with(text, ReadLimits::default())
}

/// Parses every top-level atom in `text` under `limits`.
pub fn parse_with(text: &str, limits: ReadLimits) -> Result<Vec<Atom>, ParseError> {
    let mut r = Reader::new(text.as_bytes(), limits);
    let mut out = Vec::new();
    loop {
        match r.next_atom() {
            Ok(Some(a)) => out.push(a),
            Ok(None) => return Ok(out),
            Err(ReadError::Parse(e)) => return Err(e),
            Err(e) => return Err(ParseError::new(r.src.line, r.src.col, e.to_string())),
        }
    }
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
        assert_eq!(atoms[1].tv.unwrap().strength(), 0.5);
        assert_eq!(atoms[2].outgoing[1].outgoing[1].name, "b \"q\"");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("(Concept \"a\")\n(List\n  (foo \"x\"))").unwrap_err();
        assert_eq!((e.line, e.col), (3, 4));
        assert!(e.message.contains("foo"), "{}", e.message);

        let e = parse("(Concept \"a\"").unwrap_err();
        assert!(e.message.contains("missing ')'"), "{}", e.message);

        let e = parse("(Concept \"\")").unwrap_err();
        assert!(e.message.contains("non-empty name"), "{}", e.message);

        let e = parse("(Concept \"a\" (stv 2 0.5))").unwrap_err();
        assert_eq!((e.line, e.col), (1, 15));

        let e = parse("(Concept \"unterminated)").unwrap_err();
        assert!(e.message.contains("unterminated"));

        let e = parse("(Concept \"a\"))").unwrap_err();
        assert_eq!((e.line, e.col), (1, 14));
        let e = parse("\"stray\"").unwrap_err();
        assert!(e.message.contains("expected '('"), "{}", e.message);
        let e = parse("(stv 0.5 0.5)").unwrap_err();
        assert!(e.message.contains("inside an atom"), "{}", e.message);
    }

    fn nested(depth: usize) -> String {
        let mut s = "(List ".repeat(depth - 1);
        s.push_str("(Concept \"x\")");
        s.push_str(&")".repeat(depth - 1));
        s
    }

    #[test]
    fn nesting_is_limited_and_deep_input_never_touches_the_stack() {
        let limits = |max_depth| ReadLimits {
            max_depth,
            max_bytes: u64::MAX,
            ..Default::default()
        };
        // At the limit it parses; one deeper is an error naming the limit.
        let atoms = parse_with(&nested(50), limits(50)).unwrap();
        assert_eq!(atoms.len(), 1);
        let e = parse_with(&nested(51), limits(50)).unwrap_err();
        assert!(e.message.contains("limit of 50"), "{}", e.message);
        // Far past any stack: refused with one error, on a small thread.
        let deep = nested(200_000);
        let e = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || parse(&deep).unwrap_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(e.message.contains("limit of 1000"), "{}", e.message);
    }

    #[test]
    fn a_stream_reads_atoms_one_at_a_time_under_a_byte_budget() {
        let text = "(Concept \"a\")\n(Concept \"b\")\n(Concept \"c\")\n";
        let mut r = Reader::new(text.as_bytes(), ReadLimits::default());
        assert_eq!(r.next_atom().unwrap().unwrap().name, "a");
        let after_a = r.offset();
        r.set_limit(after_a + 15);
        assert_eq!(r.next_atom().unwrap().unwrap().name, "b");
        assert!(matches!(r.next_atom(), Err(ReadError::TooLarge { .. })));
        // An endless input stops at the budget.
        let zeros = std::io::Read::take(std::io::repeat(0), 1 << 30);
        let mut r = Reader::new(
            std::io::BufReader::new(zeros),
            ReadLimits {
                max_depth: 10,
                max_bytes: 1 << 20,
                ..Default::default()
            },
        );
        assert!(matches!(r.next_atom(), Err(ReadError::TooLarge { .. })));
        assert!(r.offset() <= 1 << 20);
    }
}
