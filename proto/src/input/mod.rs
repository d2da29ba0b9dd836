//! Where atoms come from: Atomese files, JSON Lines files and the seeded
//! generator. Files are parsed whole before anything is sent, so a file that
//! fails to parse loads nothing.

pub mod generate;
pub mod jsonl;
pub mod scm;

use std::path::Path;

use crate::Atom;

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

/// Reads every atom in `path`: `.scm` as Atomese, anything else as JSON
/// Lines.
pub fn read_file(path: &Path) -> Result<Vec<Atom>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed = match path.extension().and_then(|e| e.to_str()) {
        Some("scm") => scm::parse(&text),
        _ => jsonl::parse(&text),
    };
    parsed.map_err(|error| FileError::Parse {
        path: path.to_path_buf(),
        error,
    })
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
