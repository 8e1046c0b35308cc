//! The GitHub workflows a configuration repository runs (`gitops.yml` and
//! `gitops-fork-comment.yml`), embedded in the binary so that `init --github`
//! sets a repository up without a download, pinned to the running version.

use std::io;
use std::path::{Path, PathBuf};

use crate::diagnostic::display_path;

/// Where GitHub looks for workflows, relative to the repository's top.
pub const DIR: &str = ".github/workflows";

/// The action as the shipped workflows call it, up to its version.
const ACTION: &str = "tracker-gitops/tracker-gitops@v";

/// The workflows, by file name, as this repository ships them.
const SHIPPED: [(&str, &str); 2] = [
    (
        "gitops.yml",
        include_str!("../.github/workflows/gitops.yml"),
    ),
    (
        "gitops-fork-comment.yml",
        include_str!("../.github/workflows/gitops-fork-comment.yml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} already exists; refusing to overwrite it (remove it to get this version's)", display_path(.path))]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", display_path(.path))]
    Write { path: PathBuf, source: io::Error },
}

/// The workflows with every use of the action pinned to `version`.
pub fn pinned(version: &str) -> Vec<(&'static str, String)> {
    SHIPPED
        .iter()
        .map(|(name, text)| (*name, pin(text, version)))
        .collect()
}

/// `text` with each `tracker-gitops/tracker-gitops@v<anything>` at `v<version>`.
fn pin(text: &str, version: &str) -> String {
    let mut pinned = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(ACTION) {
        let after = &rest[at + ACTION.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')))
            .unwrap_or(after.len());
        pinned.push_str(&rest[..at + ACTION.len()]);
        pinned.push_str(version);
        rest = &after[end..];
    }
    pinned.push_str(rest);
    pinned
}

/// Writes the workflows into `top/.github/workflows/`, pinned to `version`,
/// never overwriting one. Returns the paths written.
pub fn write(top: &Path, version: &str) -> Result<Vec<PathBuf>, Error> {
    let dir = top.join(DIR);
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(write_error(&dir))?;
    let workflows = pinned(version);
    // All or none: check them all before writing any.
    for (name, _) in &workflows {
        let path = dir.join(name);
        if path.exists() {
            return Err(Error::Exists { path });
        }
    }
    let mut written = Vec::new();
    for (name, text) in workflows {
        let path = dir.join(name);
        crate::project::create_new(&path, text.as_bytes()).map_err(|source| {
            match source.kind() {
                io::ErrorKind::AlreadyExists => Error::Exists { path: path.clone() },
                _ => write_error(&path)(source),
            }
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_use_of_the_action_is_pinned() {
        let workflows = pinned("9.8.7");
        assert!(workflows[0].1.contains(&format!("{ACTION}9.8.7\n")));
        for (name, text) in workflows {
            let uses = text.matches(ACTION).count();
            assert_eq!(
                uses,
                text.matches(&format!("{ACTION}9.8.7")).count(),
                "{name}"
            );
        }
        assert_eq!(
            pin(
                "a tracker-gitops/tracker-gitops@v0.1.0 # v0.1.0\n",
                "1.2.3-rc.1"
            ),
            "a tracker-gitops/tracker-gitops@v1.2.3-rc.1 # v0.1.0\n"
        );
    }
}
