//! Where atoms come from: Atomese files, JSON Lines files and the seeded
//! generator.
//!
//! Both readers are streams: [`AtomReader`] yields one top-level atom at a
//! time from any [`BufRead`], under [`ReadLimits`] (a nesting depth and a
//! byte budget), so a server reads its slice of a file without holding the
//! file, and neither an endless input (`/dev/zero`) nor a deeply nested one
//! can exhaust its memory or its stack. The Atomese reader is iterative:
//! nesting costs heap, bounded by the depth limit, never stack.
//! [`read_file`] reads a whole file for the CLI's `load`, which parses a
//! file completely before it sends anything.

pub mod generate;
pub mod jsonl;
pub mod scm;

use std::io::BufRead;
use std::path::Path;

use crate::Atom;

/// The deepest nesting of atoms a reader accepts by default. Real Atomese
/// nests a few dozen levels at most.
pub const DEFAULT_MAX_DEPTH: usize = 1000;

/// What a reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Atoms nested deeper than this are an error.
    pub max_depth: usize,
    /// Reading past this many bytes of input is an error.
    pub max_bytes: u64,
    /// A top-level form that is not an atom is an error instead of being
    /// skipped (`load --strict`).
    pub strict: bool,
    /// Only the AtomSpace's built-in types are accepted; any other name is an
    /// error instead of a new type (`load --strict-types`).
    pub strict_types: bool,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_bytes: u64::MAX,
            strict: false,
            strict_types: false,
        }
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{}:{}: {}", path.display(), error.line, error.col, error.message)]
    Parse {
        path: std::path::PathBuf,
        error: ParseError,
    },
}

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{}:{}: {}", .0.line, .0.col, .0.message)]
    Parse(ParseError),
    #[error("input goes past the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

/// The input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Atomese,
    JsonLines,
}

impl Format {
    /// The format a path's extension names (`.scm` is Atomese; `.jsonl`,
    /// `.ndjson` and `.json` are JSON Lines, in any case), or `None` when it
    /// names none.
    pub fn of_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "scm" | "atomese" => Some(Format::Atomese),
            "jsonl" | "ndjson" | "json" => Some(Format::JsonLines),
            _ => None,
        }
    }

    /// The format of input that begins with `head`: JSON Lines when its
    /// first byte past whitespace is `{`, Atomese otherwise (`(`, `;`, or an
    /// empty input).
    pub fn sniff(head: &[u8]) -> Format {
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::JsonLines,
            _ => Format::Atomese,
        }
    }

    /// The format of `input` at `path`: the extension's, or else the
    /// content's. Nothing is consumed.
    pub fn detect<R: BufRead>(path: &Path, input: &mut R) -> std::io::Result<Format> {
        match Format::of_extension(path) {
            Some(f) => Ok(f),
            None => Ok(Format::sniff(input.fill_buf()?)),
        }
    }
}

/// A stream of top-level atoms.
pub enum AtomReader<R: BufRead> {
    Atomese(scm::Reader<R>),
    JsonLines(jsonl::Reader<R>),
}

impl<R: BufRead> AtomReader<R> {
    pub fn new(input: R, format: Format, limits: ReadLimits) -> AtomReader<R> {
        match format {
            Format::Atomese => AtomReader::Atomese(scm::Reader::new(input, limits)),
            Format::JsonLines => AtomReader::JsonLines(jsonl::Reader::new(input, limits)),
        }
    }

    /// The next top-level atom, or `None` at the end of the input.
    pub fn next_atom(&mut self) -> Result<Option<Atom>, ReadError> {
        match self {
            AtomReader::Atomese(r) => r.next_atom(),
            AtomReader::JsonLines(r) => r.next_atom(),
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        match self {
            AtomReader::Atomese(r) => r.offset(),
            AtomReader::JsonLines(r) => r.offset(),
        }
    }

    /// Top-level forms skipped because they are not atoms, by head (always
    /// empty for JSON Lines).
    pub fn skipped(&self) -> std::collections::BTreeMap<String, u64> {
        match self {
            AtomReader::Atomese(r) => r.skipped().clone(),
            AtomReader::JsonLines(_) => Default::default(),
        }
    }

    /// Moves the byte budget: reading past `offset() + more` fails.
    pub fn allow(&mut self, more: u64) {
        let limit = self.offset().saturating_add(more);
        match self {
            AtomReader::Atomese(r) => r.set_limit(limit),
            AtomReader::JsonLines(r) => r.set_limit(limit),
        }
    }
}

/// A whole input, read.
#[derive(Debug, Default)]
pub struct Loaded {
    pub atoms: Vec<Atom>,
    /// Top-level forms skipped because they are not atoms, by head.
    pub skipped: std::collections::BTreeMap<String, u64>,
}

impl Loaded {
    /// `skipped 3 forms: define ×2, setlocale ×1`, or `None` when nothing
    /// was skipped.
    pub fn skipped_summary(&self) -> Option<String> {
        skipped_summary(&self.skipped)
    }
}

/// `skipped 3 forms: define ×2, setlocale ×1`, most frequent first, or
/// `None` when nothing was skipped.
pub fn skipped_summary(skipped: &std::collections::BTreeMap<String, u64>) -> Option<String> {
    let total: u64 = skipped.values().sum();
    if total == 0 {
        return None;
    }
    let mut heads: Vec<(&String, &u64)> = skipped.iter().collect();
    heads.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let list: Vec<String> = heads.iter().map(|(h, n)| format!("{h} ×{n}")).collect();
    let forms = if total == 1 { "form" } else { "forms" };
    Some(format!("skipped {total} {forms}: {}", list.join(", ")))
}

/// Reads every atom in `path` with the default limits. The format is the
/// extension's, or else the content's; `-` is standard input.
pub fn read_file(path: &Path) -> Result<Loaded, FileError> {
    read_file_with(path, ReadLimits::default())
}

/// Reads every atom in `path` (`-`: standard input) under `limits`.
pub fn read_file_with(path: &Path, limits: ReadLimits) -> Result<Loaded, FileError> {
    if path == Path::new("-") {
        return read_input(path, std::io::stdin().lock(), limits);
    }
    let f = std::fs::File::open(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_input(path, std::io::BufReader::new(f), limits)
}

/// Reads every atom from `input`, named `path` in errors.
pub fn read_input<R: BufRead>(
    path: &Path,
    mut input: R,
    limits: ReadLimits,
) -> Result<Loaded, FileError> {
    let io = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let format = Format::detect(path, &mut input).map_err(io)?;
    let mut r = AtomReader::new(input, format, limits);
    let mut out = Vec::new();
    loop {
        match r.next_atom() {
            Ok(Some(a)) => out.push(a),
            Ok(None) => {
                return Ok(Loaded {
                    atoms: out,
                    skipped: r.skipped(),
                });
            }
            Err(ReadError::Io(e)) => return Err(io(e)),
            Err(ReadError::Parse(error)) => {
                return Err(FileError::Parse {
                    path: path.to_path_buf(),
                    error,
                });
            }
            Err(e @ ReadError::TooLarge { .. }) => {
                return Err(io(std::io::Error::other(e.to_string())));
            }
        }
    }
}

/// A parse error at a 1-based line and column.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl ParseError {
    fn new(line: usize, col: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line,
            col,
            message: message.into(),
        }
    }
}
