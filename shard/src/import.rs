//! Server-side input files: the only host paths a client can make a shard
//! read are under the operator's `import_dir`.
//!
//! A job names a path (`ingest --file`, `tfidf --docs`). It is taken
//! relative to the import folder, or, if absolute, only when it lies inside
//! it. `..` is refused outright, and the resolved path (symlinks followed)
//! must still lie inside, so a link pointing out is refused too. Nothing is
//! looked up outside the folder, so the answers tell a client nothing about
//! which other paths exist. With no import folder configured, every such
//! read is refused with one line saying how to allow them.

use std::path::{Component, Path, PathBuf};

use crate::Error;

/// What a job asks to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    File,
    Folder,
}

/// Resolves `requested` under `import_dir`, or says why it may not be read.
pub fn resolve(import_dir: Option<&Path>, requested: &str, want: Want) -> Result<PathBuf, Error> {
    let Some(dir) = import_dir else {
        return Err(Error::Import(
            "this shard reads no files for jobs: start it with --import-dir DIR (or LOCKSTEP_IMPORT_DIR) to allow `ingest --file` and `tfidf --docs` under DIR".into(),
        ));
    };
    let refused = |why: &str| Error::Import(format!("{requested:?} {why}"));
    let asked = Path::new(requested);
    if requested.is_empty() || asked.components().any(|c| c == Component::ParentDir) {
        return Err(refused(
            "is not a path under the import folder (`..` is not allowed)",
        ));
    }
    let base = dir
        .canonicalize()
        .map_err(|e| Error::Import(format!("the import folder cannot be read: {e}")))?;
    let joined = if asked.is_absolute() {
        if !(asked.starts_with(&base) || asked.starts_with(dir)) {
            return Err(refused("is outside the import folder"));
        }
        asked.to_path_buf()
    } else {
        base.join(asked)
    };
    let real = joined
        .canonicalize()
        .map_err(|_| refused("does not exist under the import folder"))?;
    if !real.starts_with(&base) {
        return Err(refused("points outside the import folder"));
    }
    let meta = std::fs::metadata(&real).map_err(|e| refused(&format!("cannot be read: {e}")))?;
    match want {
        Want::File if !meta.is_file() => Err(refused("is not a regular file")),
        Want::Folder if !meta.is_dir() => Err(refused("is not a folder")),
        _ => Ok(real),
    }
}

/// Reads at most `max` bytes of `path`; a longer file is an error naming
/// the limit.
pub fn read_capped(path: &Path, max: u64, limit: &'static str) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(Error::OverLimit {
            what: "a document".into(),
            limit,
            max,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_import_folder_resolve() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("import");
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("a.scm"), "(Concept \"a\")").unwrap();
        std::fs::write(root.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), dir.join("link")).unwrap();
        let d = Some(dir.as_path());

        assert!(
            resolve(None, "a.scm", Want::File)
                .unwrap_err()
                .to_string()
                .contains("--import-dir")
        );
        assert_eq!(
            resolve(d, "a.scm", Want::File).unwrap(),
            dir.canonicalize().unwrap().join("a.scm")
        );
        let abs = dir.join("a.scm").display().to_string();
        assert!(resolve(d, &abs, Want::File).is_ok());
        assert!(resolve(d, "docs", Want::Folder).is_ok());
        for (path, why) in [
            ("../secret", ".."),
            ("docs/../../secret", ".."),
            ("link", "points outside"),
            ("nope.scm", "does not exist"),
            ("docs", "not a regular file"),
            ("a.scm", "not a folder"),
            ("", ".."),
        ] {
            let want = if why == "not a folder" {
                Want::Folder
            } else {
                Want::File
            };
            let e = resolve(d, path, want).unwrap_err().to_string();
            assert!(e.contains(why), "{path}: {e}");
        }
        // An absolute path outside is refused without being looked up: a
        // missing one and a present one get the same answer.
        let outside = root.path().join("secret").display().to_string();
        let missing = root.path().join("missing").display().to_string();
        for p in [&outside, &missing, &"/etc/shadow".to_string()] {
            let e = resolve(d, p, Want::File).unwrap_err().to_string();
            assert!(e.contains("outside the import folder"), "{p}: {e}");
        }
    }

    #[test]
    fn reads_are_capped() {
        let root = tempfile::tempdir().unwrap();
        let f = root.path().join("doc");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_capped(&f, 10, "max_tick_read_mb").unwrap().len(), 10);
        let e = read_capped(&f, 9, "max_tick_read_mb")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_tick_read_mb = 9"), "{e}");
    }
}
