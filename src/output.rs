//! The output directory (`build/`): each environment's rendered files on disk,
//! writing them, the directories no environment file renders to any more, and
//! how a stale directory is reported. `render`, `render --check` and `publish`
//! all judge `build/` the same way through this module.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diagnostic::display_path;
use crate::diff::{self, FileChange};
use crate::render::STACK_FILE;
use crate::tree::{self, Tree};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot list {}: {source}", display_path(.path))]
    List { path: PathBuf, source: io::Error },
    #[error("cannot remove {}: {source}", display_path(.path))]
    Remove { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Tree(#[from] tree::Error),
}

/// The directory holding one subdirectory per rendered environment.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    dir: &'a Path,
}

impl<'a> Output<'a> {
    pub fn new(dir: &'a Path) -> Self {
        Self { dir }
    }

    /// An environment's directory and what it holds now.
    pub fn read(&self, name: &str) -> Result<(PathBuf, Tree), Error> {
        let dir = self.dir.join(name);
        let tree = Tree::read_dir(&dir)?;
        Ok((dir, tree))
    }

    /// Environment directories that none of `names` renders to. Only
    /// directories (not links to one) holding our stack file count: nothing
    /// else in the output directory is ever touched.
    pub fn orphans(&self, names: &[&str]) -> Result<Vec<PathBuf>, Error> {
        if !self.dir.is_dir() {
            return Ok(Vec::new());
        }
        let list_error = |source| Error::List {
            path: self.dir.to_path_buf(),
            source,
        };
        let mut orphans = Vec::new();
        for entry in std::fs::read_dir(self.dir).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && entry.path().join(STACK_FILE).is_file()
                && !names.contains(&name.as_str())
            {
                orphans.push(entry.path());
            }
        }
        orphans.sort();
        Ok(orphans)
    }

    /// Removes an orphaned environment directory.
    pub fn remove(&self, orphan: &Path) -> Result<(), Error> {
        std::fs::remove_dir_all(orphan).map_err(|source| Error::Remove {
            path: orphan.to_path_buf(),
            source,
        })
    }
}

/// An environment's directory that is not its render, as JSON shows it.
#[derive(Debug, Serialize)]
pub struct Drift<'a> {
    pub environment: &'a str,
    pub directory: String,
    /// Whether the directory exists at all (`false`: never rendered).
    pub exists: bool,
    pub files: Vec<DriftFile<'a>>,
}

#[derive(Debug, Serialize)]
pub struct DriftFile<'a> {
    pub path: &'a str,
    /// What `render` would do to it: `create`, `update` or `delete`.
    pub change: &'static str,
}

impl<'a> Drift<'a> {
    pub fn new(environment: &'a str, dir: &Path, changes: &[FileChange<'a>]) -> Self {
        Self {
            environment,
            directory: dir.to_string_lossy().into_owned(),
            exists: dir.is_dir(),
            files: changes
                .iter()
                .map(|change| DriftFile {
                    path: change.path,
                    change: change.kind.verb(),
                })
                .collect(),
        }
    }
}

/// `build/x: out of date (…)`, the files by kind, then their unified diffs;
/// for a directory never rendered, one line saying so (not every file's
/// content as a diff).
pub fn write_drift(out: &mut dyn Write, dir: &Path, changes: &[FileChange]) -> io::Result<()> {
    if !dir.exists() {
        return writeln!(
            out,
            "{} is missing: run `tracker-gitops render`",
            display_path(dir)
        );
    }
    writeln!(
        out,
        "{}: out of date ({})",
        display_path(dir),
        diff::summary(changes, diff::Tense::Pending)
    )?;
    for change in changes {
        let what = change.kind.verb();
        writeln!(out, "  {what}: {}", display_path(change.path))?;
    }
    let prefix = format!("{}/", dir.display());
    for change in changes {
        write!(out, "{}", diff::unified_diff(change, &prefix))?;
    }
    Ok(())
}
