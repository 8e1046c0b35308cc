//! Publishing: each rendered environment becomes a commit on its deploy branch,
//! written straight into the object database with git2 — HEAD, the index and
//! the working tree are never touched. Pushing is fast-forward only: when
//! another publish wins the race, the commit is rebuilt on the new tip.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{
    Commit, Cred, FetchOptions, ObjectType, Oid, PushOptions, RemoteCallbacks, Repository,
    Signature, TreeBuilder,
};
use serde::Serialize;

use crate::check::{self, ChangeKind};
use crate::environment::Environment;
use crate::render::Rendered;
use crate::stack::ServiceChange;
use crate::tree::Tree;

/// The provenance file added to every published tree.
pub const SOURCE_FILE: &str = ".tracker-gitops/source.json";
/// How often a push is retried after losing a race.
const PUSH_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error(
        "{path} has uncommitted changes; commit them first so the provenance names the exact source"
    )]
    Dirty { path: String },
    #[error("push of {branch} to {remote} was rejected: {message}")]
    Rejected {
        branch: String,
        remote: String,
        message: String,
    },
    #[error(
        "push of {branch} to {remote} kept losing to concurrent publishes ({attempts} attempts)"
    )]
    Contended {
        branch: String,
        remote: String,
        attempts: usize,
    },
}

/// Who commits, and where from.
#[derive(Debug, Clone)]
pub struct Options {
    pub remote: Option<String>,
    pub push: bool,
    pub author_name: String,
    pub author_email: String,
    /// Overrides the source ref read from HEAD (CI checks out a detached commit).
    pub source_ref: Option<String>,
}

/// Where the rendered files came from, written into every published commit.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub repository: String,
    pub commit: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub environment_file: String,
    pub tool_version: String,
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    Unchanged,
    Committed(Oid),
}

/// The source repository: HEAD and the state of the files a publish is about.
pub struct Source {
    repo: Repository,
}

impl Source {
    pub fn discover(dir: &Path) -> Result<Self, Error> {
        Ok(Self {
            repo: Repository::discover(dir)?,
        })
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Provenance for an environment, refusing when its source or output is not committed.
    pub fn provenance(
        &self,
        env: &Environment,
        out_dir: &Path,
        source_ref: Option<&str>,
    ) -> Result<Provenance, Error> {
        let workdir = self
            .repo
            .workdir()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let relative = |path: &Path| -> String {
            let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            let root = std::fs::canonicalize(&workdir).unwrap_or_else(|_| workdir.clone());
            absolute
                .strip_prefix(&root)
                .unwrap_or(&absolute)
                .to_string_lossy()
                .replace('\\', "/")
        };
        let env_file = relative(&env.path);
        let out = relative(&out_dir.join(&env.name));
        let mut options = git2::StatusOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .pathspec(&env_file)
            .pathspec(format!("{out}/"));
        if let Some(entry) = self.repo.statuses(Some(&mut options))?.iter().next() {
            return Err(Error::Dirty {
                path: entry.path().unwrap_or(&out).to_string(),
            });
        }
        let head = self.repo.head()?;
        let commit = head.peel_to_commit()?.id().to_string();
        let reference = match source_ref {
            Some(reference) => reference.to_string(),
            None => head.name().unwrap_or("HEAD").to_string(),
        };
        let repository = self
            .repo
            .find_remote("origin")
            .ok()
            .and_then(|r| r.url().ok().map(strip_credentials))
            .unwrap_or_else(|| workdir.display().to_string());
        Ok(Provenance {
            repository,
            commit,
            reference,
            environment_file: env_file,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            command: format!("tracker-gitops render --env {}", env.name),
        })
    }
}

/// A URL without any user or password in it.
pub(crate) fn strip_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if !userinfo.contains('/') => format!("{scheme}://{host}"),
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Publishes one environment to `refs/heads/<branch>` in `repo`, pushing when asked.
pub fn publish(
    repo: &Repository,
    env: &Environment,
    branch: &str,
    rendered: &Rendered,
    provenance: &Provenance,
    options: &Options,
) -> Result<Published, Error> {
    let refname = format!("refs/heads/{branch}");
    for _ in 0..PUSH_ATTEMPTS {
        if let Some(remote) = &options.remote {
            fetch(repo, remote, branch)?;
        }
        let parent = tip(repo, options.remote.as_deref(), branch)?;
        let mut previous = match &parent {
            Some(commit) => read_tree(repo, &commit.tree()?)?,
            None => Tree::default(),
        };
        previous.remove(SOURCE_FILE);
        if let Some(parent) = parent.as_ref().filter(|_| previous == rendered.tree) {
            // Keep the local branch on the tip so later runs start from it.
            repo.reference(&refname, parent.id(), true, "tracker-gitops: up to date")?;
            return Ok(Published::Unchanged);
        }
        let mut tree = rendered.tree.clone();
        let mut source = serde_json::to_string_pretty(provenance).expect("provenance serializes");
        source.push('\n');
        tree.insert(SOURCE_FILE, source);
        let tree_id = write_tree(repo, &tree)?;
        let message = commit_message(env, &previous, rendered, provenance);
        let signature = Signature::now(&options.author_name, &options.author_email)?;
        let parents: Vec<&Commit> = parent.iter().collect();
        let commit = repo.commit(
            None,
            &signature,
            &signature,
            &message,
            &repo.find_tree(tree_id)?,
            &parents,
        )?;
        repo.reference(&refname, commit, true, "tracker-gitops: publish")?;
        let (Some(remote), true) = (&options.remote, options.push) else {
            return Ok(Published::Committed(commit));
        };
        let refused = push(repo, remote, branch)?;
        fetch(repo, remote, branch)?;
        let now = tip(repo, Some(remote), branch)?.map(|c| c.id());
        // Trust the remote's ref, not the call: a push can report success
        // without having moved the branch.
        if now == Some(commit) {
            return Ok(Published::Committed(commit));
        }
        let message = refused.unwrap_or_else(|| "the branch did not move".into());
        // Refused: when the remote moved since our fetch, another publish won the
        // race and we rebuild on its commit; otherwise the server said no.
        let busy = message.contains("failed to lock");
        if busy {
            // Another push holds the remote's ref lock: wait for it, then re-check.
            std::thread::sleep(std::time::Duration::from_millis(200));
        } else if now == parent.as_ref().map(Commit::id) {
            return Err(Error::Rejected {
                branch: branch.to_string(),
                remote: remote.clone(),
                message,
            });
        }
    }
    Err(Error::Contended {
        branch: branch.to_string(),
        remote: options.remote.clone().unwrap_or_default(),
        attempts: PUSH_ATTEMPTS,
    })
}

/// The commit to build on: the remote's tip when publishing to a remote, else the local branch.
fn tip<'r>(
    repo: &'r Repository,
    remote: Option<&str>,
    branch: &str,
) -> Result<Option<Commit<'r>>, Error> {
    let name = match remote {
        Some(remote) => format!("refs/remotes/{remote}/{branch}"),
        None => format!("refs/heads/{branch}"),
    };
    match repo.find_reference(&name) {
        Ok(reference) => Ok(Some(reference.peel_to_commit()?)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn callbacks<'a>() -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_url, username, _allowed| {
        let token = std::env::var("TRACKER_GITOPS_GIT_TOKEN")
            .or_else(|_| std::env::var("GITHUB_TOKEN"))
            .map_err(|_| {
                git2::Error::from_str(
                    "no GITHUB_TOKEN (or TRACKER_GITOPS_GIT_TOKEN) for an https remote",
                )
            })?;
        Cred::userpass_plaintext(username.unwrap_or("x-access-token"), &token)
    });
    callbacks
}

/// Fetches the remote's deploy branch into `refs/remotes/<remote>/<branch>`,
/// dropping that ref when the branch does not exist there.
fn fetch(repo: &Repository, remote: &str, branch: &str) -> Result<(), Error> {
    let mut handle = repo.find_remote(remote)?;
    let tracking = format!("refs/remotes/{remote}/{branch}");
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks());
    handle.connect_auth(git2::Direction::Fetch, Some(callbacks()), None)?;
    let exists = handle
        .list()?
        .iter()
        .any(|head| head.name() == format!("refs/heads/{branch}"));
    handle.disconnect()?;
    if !exists {
        if let Ok(mut stale) = repo.find_reference(&tracking) {
            stale.delete()?;
        }
        return Ok(());
    }
    let refspec = format!("+refs/heads/{branch}:{tracking}");
    handle.fetch(&[refspec.as_str()], Some(&mut options), None)?;
    Ok(())
}

/// Pushes the local deploy branch; `Some(message)` when the remote refused it.
fn push(repo: &Repository, remote: &str, branch: &str) -> Result<Option<String>, Error> {
    let mut handle = repo.find_remote(remote)?;
    let mut rejection: Option<String> = None;
    let result = {
        let mut callbacks = callbacks();
        // The call can succeed while the server refuses a reference: check each.
        callbacks.push_update_reference(|_refname, status| {
            if let Some(message) = status {
                rejection = Some(message.to_string());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        // No `+`: a push that is not a fast-forward is refused, never forced.
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        handle.push(&[refspec.as_str()], Some(&mut options))
    };
    match (result, rejection) {
        (Ok(()), rejection) => Ok(rejection),
        (Err(e), _)
            if matches!(
                e.code(),
                git2::ErrorCode::NotFastForward | git2::ErrorCode::Locked
            ) || e.class() == git2::ErrorClass::Reference =>
        {
            Ok(Some(e.message().to_string()))
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// Reads a git tree into memory.
pub fn read_tree(repo: &Repository, tree: &git2::Tree) -> Result<Tree, Error> {
    let mut files = Tree::default();
    let mut failure = None;
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        match repo.find_blob(entry.id()) {
            Ok(blob) => {
                let name = entry.name().unwrap_or_default();
                files.insert(format!("{dir}{name}"), blob.content());
                git2::TreeWalkResult::Ok
            }
            Err(e) => {
                failure = Some(e);
                git2::TreeWalkResult::Abort
            }
        }
    });
    // A failed blob read aborts the walk; report that error, not the abort.
    match (failure, walked) {
        (Some(e), _) | (None, Err(e)) => Err(e.into()),
        (None, Ok(())) => Ok(files),
    }
}

/// Writes an in-memory tree into the object database; returns its id.
fn write_tree(repo: &Repository, tree: &Tree) -> Result<Oid, Error> {
    #[derive(Default)]
    struct Dir<'t> {
        files: Vec<(&'t str, &'t [u8])>,
        dirs: BTreeMap<&'t str, Dir<'t>>,
    }
    fn write(repo: &Repository, dir: &Dir) -> Result<Oid, Error> {
        let mut builder: TreeBuilder = repo.treebuilder(None)?;
        for (name, bytes) in &dir.files {
            builder.insert(name, repo.blob(bytes)?, 0o100644)?;
        }
        for (name, child) in &dir.dirs {
            builder.insert(name, write(repo, child)?, 0o040000)?;
        }
        Ok(builder.write()?)
    }
    let mut root = Dir::default();
    for (path, bytes) in tree.iter() {
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().unwrap_or_default();
        let dir = parts
            .into_iter()
            .fold(&mut root, |dir, part| dir.dirs.entry(part).or_default());
        dir.files.push((name, bytes));
    }
    write(repo, &root)
}

/// `staging: deploy 1a2b3c4 (prometheus recreated)`, the changed files, and trailers.
fn commit_message(
    env: &Environment,
    previous: &Tree,
    rendered: &Rendered,
    provenance: &Provenance,
) -> String {
    // A tip without a readable stack (first publish) has every service added.
    let old_stack = crate::render::recorded_stack(previous).and_then(Result::ok);
    let services: Vec<String> = crate::stack::compare(old_stack.as_ref(), &rendered.stack)
        .into_iter()
        .filter_map(|(name, change)| match change {
            ServiceChange::Unchanged => None,
            change => Some(format!("{name} {}", change.verb())),
        })
        .collect();
    let short = &provenance.commit[..provenance.commit.len().min(7)];
    let summary = if services.is_empty() {
        "files only".to_string()
    } else {
        services.join(", ")
    };
    let mut message = format!("{}: deploy {short} ({summary})\n\n", env.name);
    message.push_str(&format!(
        "Rendered from {} at {}.\n\nChanged files:\n",
        provenance.environment_file, provenance.commit
    ));
    for change in check::compare(&rendered.tree, previous) {
        let mark = match change.kind {
            ChangeKind::Missing => 'A',
            ChangeKind::Orphaned => 'D',
            ChangeKind::Changed => 'M',
        };
        message.push_str(&format!("  {mark} {}\n", change.path));
    }
    message.push_str(&format!(
        "\nSource-Commit: {}\nSource-Ref: {}\nEnvironment: {}\n",
        provenance.commit, provenance.reference, env.name
    ));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped_from_urls() {
        assert_eq!(
            strip_credentials("https://x-access-token:ghs_abc@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(strip_credentials("/srv/git/r.git"), "/srv/git/r.git");
        assert_eq!(
            strip_credentials("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
    }
}
