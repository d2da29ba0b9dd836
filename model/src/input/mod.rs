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
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_bytes: u64::MAX,
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
    /// `.scm` is Atomese, anything else JSON Lines.
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("scm") => Format::Atomese,
            _ => Format::JsonLines,
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

    /// Moves the byte budget: reading past `offset() + more` fails.
    pub fn allow(&mut self, more: u64) {
        let limit = self.offset().saturating_add(more);
        match self {
            AtomReader::Atomese(r) => r.set_limit(limit),
            AtomReader::JsonLines(r) => r.set_limit(limit),
        }
    }
}

/// Reads every atom in `path` (`.scm` as Atomese, anything else as JSON
/// Lines) with the default limits.
pub fn read_file(path: &Path) -> Result<Vec<Atom>, FileError> {
    read_file_with(path, ReadLimits::default())
}

/// Reads every atom in `path` under `limits`.
pub fn read_file_with(path: &Path, limits: ReadLimits) -> Result<Vec<Atom>, FileError> {
    let io = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut r = AtomReader::new(std::io::BufReader::new(f), Format::of_path(path), limits);
    let mut out = Vec::new();
    loop {
        match r.next_atom() {
            Ok(Some(a)) => out.push(a),
            Ok(None) => return Ok(out),
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
