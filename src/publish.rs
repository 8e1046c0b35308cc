//! Publishing: each rendered environment becomes a commit on its deploy branch,
//! written straight into the object database with git2 — HEAD, the index and
//! the working tree are never touched. Only a reviewed source is published to
//! a remote: its commit must be on the remote's tracked branch, so the
//! provenance always names a commit that branch holds. Pushing is
//! fast-forward only: when another publish wins the race, the commit is
//! rebuilt on the new tip.

use std::path::Path;

use git2::{Commit, Oid, Repository, Signature};
use serde::{Deserialize, Serialize};

use crate::diff::{self, ChangeKind};
use crate::environment::Environment;
use crate::git;
use crate::render::Rendered;
use crate::stack::ServiceChange;
use crate::tree::Tree;

/// The provenance file added to every published tree.
pub const SOURCE_FILE: &str = ".tracker-gitops/source.json";
/// The trailer naming the source commit of a published commit.
pub const SOURCE_COMMIT_TRAILER: &str = "Source-Commit";
/// The trailer naming the environment of a published commit.
pub const ENVIRONMENT_TRAILER: &str = "Environment";
/// How often a push is retried after losing a race.
const PUSH_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error(
        "{path} has uncommitted changes; commit them first so the provenance names the exact source"
    )]
    Dirty { path: String },
    #[error(
        "HEAD is detached (no branch is checked out), so the provenance would name no ref: check out \
         the branch you publish from, or name it with --source-ref REF"
    )]
    Detached,
    #[error(
        "{dir} at {commit} is not exactly what render writes ({differences}); run `tracker-gitops render` and commit the result"
    )]
    NotRendered {
        dir: String,
        commit: String,
        differences: String,
    },
    #[error(
        "{commit} is not on {branch} of {remote}: publish only reviewed sources — merge it into {branch} and push that first \
         (--allow-unreviewed publishes it without --push, for local experiments)"
    )]
    Unreviewed {
        commit: String,
        branch: String,
        remote: String,
    },
    #[error(
        "{remote} has no branch {branch} to check the source against: push it, or pass --source-branch"
    )]
    NoTrackedBranch { remote: String, branch: String },
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

impl From<git2::Error> for Error {
    fn from(error: git2::Error) -> Self {
        Self::Git(error.into())
    }
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
    /// The tracked branch the source was found on; `None` when not checked
    /// (no remote, or `--allow-unreviewed`).
    pub reviewed: Option<Reviewed>,
}

/// The remote's tracked branch, as fetched, with the source commit on it.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub branch: String,
    pub tip: Oid,
}

/// Where the rendered files came from, written into every published commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

    /// Provenance for an environment, refusing when its source or output is
    /// not committed, or when the committed output is not exactly `rendered`
    /// (an executable bit, a symlink or a submodule included).
    pub fn provenance(
        &self,
        env: &Environment,
        out_dir: &Path,
        rendered: &Tree,
        source_ref: Option<&str>,
    ) -> Result<Provenance, Error> {
        // Spelled as `deploy` will compare them (git::repo_path).
        let env_file = git::repo_path(&self.repo, &env.path)?;
        let out = git::repo_path(&self.repo, &out_dir.join(&env.name))?;
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
        let commit = head.peel_to_commit()?;
        let expected = self
            .repo
            .find_tree(git::write_tree(&self.repo, rendered)?)?;
        let committed = git::subtree(&self.repo, commit.tree()?, &out)?;
        if committed.as_ref().map(git2::Tree::id) != Some(expected.id()) {
            let differences = match &committed {
                Some(tree) => git::differences(&self.repo, &expected, tree)?,
                None => "not committed".into(),
            };
            return Err(Error::NotRendered {
                dir: out,
                commit: commit.id().to_string(),
                differences,
            });
        }
        let reference = match source_ref {
            Some(reference) => reference.to_string(),
            None if self.repo.head_detached()? => return Err(Error::Detached),
            None => head.name().unwrap_or("HEAD").to_string(),
        };
        let repository = self
            .repo
            .find_remote("origin")
            .ok()
            .and_then(|r| r.url().ok().map(git::strip_credentials))
            .unwrap_or_else(|| {
                let workdir = self.repo.workdir().unwrap_or(Path::new(""));
                workdir.display().to_string()
            });
        Ok(Provenance {
            repository,
            commit: commit.id().to_string(),
            reference,
            environment_file: env_file,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            command: format!("tracker-gitops render --env {}", env.name),
        })
    }

    /// Fetches `remote`'s tracked branch (`branch`, else the remote's default
    /// branch) and checks that HEAD is on it: reviewed and merged.
    pub fn reviewed(&self, remote: &str, branch: Option<&str>) -> Result<Reviewed, Error> {
        let mut handle = git::Remote::named(&self.repo, remote)?;
        let branch = match branch {
            Some(branch) => branch.to_string(),
            None => handle.default_branch()?.to_string(),
        };
        let missing = || Error::NoTrackedBranch {
            remote: remote.to_string(),
            branch: branch.clone(),
        };
        if !handle.has_branch(&branch) {
            return Err(missing());
        }
        let tracking = format!("refs/remotes/{remote}/{branch}");
        handle.fetch(&self.repo, &[(&branch, &tracking)])?;
        let tip = git::commit_at(&self.repo, &tracking)?
            .ok_or_else(missing)?
            .id();
        let head = self.repo.head()?.peel_to_commit()?.id();
        if !git::is_on(&self.repo, head, tip)? {
            return Err(Error::Unreviewed {
                commit: head.to_string(),
                branch,
                remote: remote.to_string(),
            });
        }
        Ok(Reviewed { branch, tip })
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
    let rendered_id = git::write_tree(repo, &rendered.tree)?;
    // The commit to build on: the remote's tip when publishing to a remote, else the local branch.
    let tip_ref = match &options.remote {
        Some(remote) => format!("refs/remotes/{remote}/{branch}"),
        None => refname.clone(),
    };
    let published_tree = {
        let mut tree = rendered.tree.clone();
        let mut source = serde_json::to_string_pretty(provenance).expect("provenance serializes");
        source.push('\n');
        tree.insert(SOURCE_FILE, source);
        repo.find_tree(git::write_tree(repo, &tree)?)?
    };
    if let Some(remote) = &options.remote {
        git::fetch_branch(repo, remote, branch)?;
    }
    // Each lost race below leaves the remote's tip fetched for the next attempt.
    for _ in 0..PUSH_ATTEMPTS {
        let parent = git::commit_at(repo, &tip_ref)?;
        if let Some(parent) = &parent {
            if up_to_date(repo, parent, rendered_id, options.reviewed.as_ref())? {
                // Keep the local branch on the tip so later runs start from it.
                repo.reference(&refname, parent.id(), true, "tracker-gitops: up to date")?;
                return Ok(Published::Unchanged);
            }
        }
        let mut previous = match &parent {
            Some(commit) => git::read_tree(repo, &commit.tree()?)?,
            None => Tree::default(),
        };
        previous.remove(SOURCE_FILE);
        let message = commit_message(env, &previous, rendered, provenance);
        let signature = Signature::now(&options.author_name, &options.author_email)?;
        let parents: Vec<&Commit> = parent.iter().collect();
        let commit = repo.commit(
            None,
            &signature,
            &signature,
            &message,
            &published_tree,
            &parents,
        )?;
        repo.reference(&refname, commit, true, "tracker-gitops: publish")?;
        let (Some(remote), true) = (&options.remote, options.push) else {
            return Ok(Published::Committed(commit));
        };
        let refused = git::push(repo, remote, branch)?;
        git::fetch_branch(repo, remote, branch)?;
        let now = git::commit_at(repo, &tip_ref)?.map(|c| c.id());
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
            git::fetch_branch(repo, remote, branch)?;
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

/// Whether `tip` already holds exactly the render (modes and entry types
/// included) and, when the source was checked, was made from a source on the
/// tracked branch: a tip whose provenance points off that branch (pushed by
/// hand, say) is replaced even when its files are right.
fn up_to_date(
    repo: &Repository,
    tip: &Commit,
    rendered: Oid,
    reviewed: Option<&Reviewed>,
) -> Result<bool, Error> {
    if git::without(repo, &tip.tree()?, SOURCE_FILE)? != rendered {
        return Ok(false);
    }
    let Some(reviewed) = reviewed else {
        return Ok(true);
    };
    // Read as verify reads it, so publish and deploy agree on the source.
    let message = String::from_utf8_lossy(tip.message_bytes());
    match git::one_trailer(&message, SOURCE_COMMIT_TRAILER).and_then(|s| git::parse_oid(&s)) {
        Some(source) => Ok(git::is_on(repo, source, reviewed.tip)?),
        None => Ok(false),
    }
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
    let changes = diff::compare(&rendered.tree, previous);
    // No content change: the tip had other modes or entry types, or its
    // provenance pointed off the tracked branch.
    let summary = match (services.is_empty(), changes.is_empty()) {
        (false, _) => services.join(", "),
        (true, false) => "files only".to_string(),
        (true, true) => "no content change".to_string(),
    };
    let mut message = format!("{}: deploy {short} ({summary})\n\n", env.name);
    message.push_str(&format!(
        "Rendered from {} at {}.\n\nChanged files:\n",
        provenance.environment_file, provenance.commit
    ));
    for change in changes {
        let mark = match change.kind {
            ChangeKind::Added => 'A',
            ChangeKind::Removed => 'D',
            ChangeKind::Changed => 'M',
        };
        message.push_str(&format!("  {mark} {}\n", change.path));
    }
    message.push_str(&format!(
        "\n{SOURCE_COMMIT_TRAILER}: {}\nSource-Ref: {}\n{ENVIRONMENT_TRAILER}: {}\n",
        provenance.commit, provenance.reference, env.name
    ));
    message
}
