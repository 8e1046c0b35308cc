//! The side of a plan read from git: the revision to compare with, and the
//! output directory committed there, one render per environment.

use std::collections::BTreeMap;
use std::path::Path;

use git2::Repository;

use super::Error;
use crate::git;
use crate::render::{self, Rendered};
use crate::tree::Tree;

/// The revision to compare with when none is given: the pull request's base
/// commit, else `origin/main`, else `main`.
pub fn default_base(repo: &Repository, pull_request_base: Option<&str>) -> Result<String, Error> {
    if let Some(sha) = pull_request_base {
        return Ok(sha.to_string());
    }
    ["origin/main", "main"]
        .into_iter()
        .find(|rev| repo.revparse_single(rev).is_ok())
        .map(String::from)
        .ok_or(Error::NoBase)
}

/// The files under `dir` (a path inside the repository, `""` for all) at
/// revision `rev`, relative to `dir`; none when `dir` does not exist there.
pub fn tree_at(repo: &Repository, rev: &str, dir: &Path) -> Result<Tree, Error> {
    let root = repo
        .revparse_single(rev)
        .and_then(|object| object.peel_to_tree())
        .map_err(|source| Error::Revision {
            rev: rev.to_string(),
            source,
        })?;
    let read_error = |source: git::Error| Error::Read {
        rev: rev.to_string(),
        path: dir.to_path_buf(),
        source,
    };
    match git::subtree(repo, root, &git::slash_path(dir)).map_err(read_error)? {
        Some(subtree) => git::read_tree(repo, &subtree).map_err(read_error),
        // Nothing, or a file, where the directory would be: no rendered files there.
        None => Ok(Tree::default()),
    }
}

/// The output directory's files by environment (its subdirectories, hidden
/// ones left out), each relative to its directory.
pub(super) fn by_environment(out: &Tree) -> BTreeMap<&str, Tree> {
    let mut committed: BTreeMap<&str, Tree> = BTreeMap::new();
    for (path, bytes) in out.iter() {
        match path.split_once('/') {
            Some((env, rest)) if !env.starts_with('.') => {
                committed.entry(env).or_default().insert(rest, bytes);
            }
            _ => {}
        }
    }
    committed
}

/// The committed render of one environment, from its files.
pub(super) fn parse_committed(tree: Tree, rev: &str, dir: &str) -> Result<Rendered, Error> {
    let stack = render::recorded_stack(&tree)
        .ok_or_else(|| Error::NoStack {
            rev: rev.to_string(),
            dir: dir.to_string(),
        })?
        .map_err(|source| Error::Stack {
            rev: rev.to_string(),
            dir: dir.to_string(),
            source,
        })?;
    Ok(Rendered { stack, tree })
}
