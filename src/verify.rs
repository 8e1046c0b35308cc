//! The check `deploy` makes before anything connects to the VM: the commit it
//! is about to deploy must be what `publish` made from a reviewed source,
//! whoever managed to push to the deploy branch. It is read from the
//! repository the VM clones (fetched in full into a scratch repository, so a
//! shallow CI checkout or local commits play no part) and must
//! (a) be on the deploy branch, (b) carry publish's provenance, consistent
//! with itself and the environment, (c) hold exactly `<out>/<env>` of its
//! source commit plus the provenance file (modes and entry types included),
//! and (d) have that source commit on the tracked branch.
//!
//! The fetched deploy branch stays open with the result, so that the stack
//! another commit of it recorded (the one the VM runs) can be read from it.

use git2::{Commit, Oid, Repository};

use crate::diagnostic::display_text;
use crate::git;
use crate::publish::{ENVIRONMENT_TRAILER, Provenance, SOURCE_COMMIT_TRAILER, SOURCE_FILE};
use crate::render::STACK_FILE;
use crate::stack::Stack;

/// Where the deploy branch and the tracked branch are fetched to in the scratch repository.
const FETCHED: &str = "refs/tracker-gitops/";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error("cannot create a scratch repository to verify in: {0}")]
    Scratch(#[source] std::io::Error),
    #[error(
        "{repository} has no branch {branch}: publish it first (`tracker-gitops publish --push`)"
    )]
    NoDeployBranch { repository: String, branch: String },
    #[error(
        "{repository} has no branch {branch} to check sources against: pass --source-branch BRANCH"
    )]
    NoTrackedBranch { repository: String, branch: String },
    #[error("--commit takes a commit id (hex digits), not `{0}`")]
    CommitSyntax(String),
    #[error(
        "refusing to deploy {commit}: it is not on {branch} of {repository}; --commit takes a commit publish put on that branch"
    )]
    NotOnBranch {
        commit: String,
        branch: String,
        repository: String,
    },
    #[error(
        "refusing to deploy {commit} of {branch}: {problem}. It was not made by `tracker-gitops publish` \
         (pushed by hand?): publish from the reviewed source instead, and let only CI push to {branch}"
    )]
    Provenance {
        commit: String,
        branch: String,
        problem: String,
    },
    #[error(
        "refusing to deploy {commit} of {branch}: its source {source_commit} is not on {tracked} of {repository}; \
         only sources reviewed and merged there are deployed"
    )]
    Unreviewed {
        commit: String,
        branch: String,
        source_commit: String,
        tracked: String,
        repository: String,
    },
    #[error(
        "refusing to deploy {commit} of {branch}: its files are not exactly {dir} of its source {source_commit} \
         ({differences}); the deploy branch was changed by hand: publish again from the reviewed source"
    )]
    Tampered {
        commit: String,
        branch: String,
        dir: String,
        source_commit: String,
        differences: String,
    },
    #[error(
        "the VM runs {commit}, which is not on {branch}: cannot tell what deploying would do to its data \
         (was the branch rewritten?)"
    )]
    DeployedElsewhere { commit: String, branch: String },
    #[error("{commit} of {branch} has no readable {STACK_FILE}: {problem}")]
    NoStack {
        commit: String,
        branch: String,
        problem: String,
    },
}

impl From<git2::Error> for Error {
    fn from(error: git2::Error) -> Self {
        Self::Git(error.into())
    }
}

/// What to verify.
#[derive(Debug)]
pub struct Request<'a> {
    /// The repository the VM clones.
    pub repository: &'a str,
    /// The deploy branch.
    pub branch: &'a str,
    /// The reviewed branch sources must be on (default: the repository's default branch).
    pub source_branch: Option<&'a str>,
    /// The commit to deploy (default: the deploy branch's tip).
    pub commit: Option<&'a str>,
    pub environment: &'a str,
    /// The environment file, as a path inside the repository.
    pub environment_file: &'a str,
    /// The environment's rendered directory, as a path inside the repository (`build/<env>`).
    pub output: &'a str,
}

/// A commit that passed: it, its source commit and the branch that source is
/// on; and the fetched branches, to read other commits' stacks from.
pub struct Verified {
    pub commit: String,
    pub source_commit: String,
    pub source_branch: String,
    fetched: Fetched,
    /// The deploy branch, for messages.
    branch: String,
}

impl Verified {
    /// The stack recorded in `commit`, which must be on the deploy branch
    /// (as the commit the VM runs is, unless the branch was rewritten).
    /// `None`: recorded by a tracker-gitops older than the stack file.
    pub fn stack_at(&self, commit: &str) -> Result<Option<Stack>, Error> {
        let repo = &self.fetched.repo;
        let branch = || self.branch.clone();
        let found = git::parse_oid(commit).and_then(|id| repo.find_commit(id).ok());
        let commit = match found {
            Some(c) if git::is_on(repo, c.id(), self.fetched.deploy_tip)? => c,
            _ => {
                return Err(Error::DeployedElsewhere {
                    commit: commit.to_string(),
                    branch: branch(),
                });
            }
        };
        let tree = commit.tree()?;
        let Some(entry) = git::regular_file(&tree, STACK_FILE) else {
            return Ok(None);
        };
        let blob = repo.find_blob(entry.id())?;
        crate::render::read_stack(blob.content())
            .map(Some)
            .map_err(|e| Error::NoStack {
                commit: commit.id().to_string(),
                branch: branch(),
                problem: e.to_string(),
            })
    }
}

/// Fetches the deploy branch and the tracked branch of `request.repository`
/// and checks the commit to deploy; see the module documentation.
pub fn verify(request: &Request) -> Result<Verified, Error> {
    let fetched = fetch(request)?;
    let (commit, source) = {
        let commit = on_deploy_branch(&fetched, request)?;
        let source = provenance(&fetched.repo, &commit, request)?;
        source_is_reviewed(&fetched, &commit, source, request)?;
        tree_is_the_render(&fetched.repo, &commit, source, request)?;
        (commit.id().to_string(), source.to_string())
    };
    Ok(Verified {
        commit,
        source_commit: source,
        source_branch: fetched.tracked.clone(),
        fetched,
        branch: request.branch.to_string(),
    })
}

/// Both branches, fetched into a scratch repository.
struct Fetched {
    // Declared before `_scratch`: the repository closes before its directory goes.
    repo: Repository,
    /// The repository the VM clones, as shown in messages.
    repository: String,
    /// The branch sources must be on.
    tracked: String,
    deploy_tip: Oid,
    tracked_tip: Oid,
    _scratch: tempfile::TempDir,
}

fn fetch(request: &Request) -> Result<Fetched, Error> {
    let scratch = tempfile::Builder::new()
        .prefix("tracker-gitops-verify.")
        .tempdir()
        .map_err(Error::Scratch)?;
    let repo = Repository::init_bare(scratch.path())?;
    let mut remote = git::Remote::url(&repo, request.repository)?;
    let repository = remote.display_url().to_string();
    let tracked = branches(&remote, request)?;
    let (deploy_ref, tracked_ref) = (
        format!("{FETCHED}deploy/{}", request.branch),
        format!("{FETCHED}tracked/{tracked}"),
    );
    remote.fetch(
        &repo,
        &[(request.branch, &deploy_ref), (&tracked, &tracked_ref)],
    )?;
    // The remote borrows the repository, which moves into the result.
    drop(remote);
    Ok(Fetched {
        deploy_tip: repo.refname_to_id(&deploy_ref)?,
        tracked_tip: repo.refname_to_id(&tracked_ref)?,
        repo,
        repository,
        tracked,
        _scratch: scratch,
    })
}

/// The branch sources must be on, once both it and the deploy branch are known to exist.
fn branches(remote: &git::Remote, request: &Request) -> Result<String, Error> {
    let repository = || remote.display_url().to_string();
    let tracked = match request.source_branch {
        Some(branch) => branch.to_string(),
        None => remote.default_branch()?.to_string(),
    };
    if !remote.has_branch(request.branch) {
        return Err(Error::NoDeployBranch {
            repository: repository(),
            branch: request.branch.to_string(),
        });
    }
    if !remote.has_branch(&tracked) {
        return Err(Error::NoTrackedBranch {
            repository: repository(),
            branch: tracked,
        });
    }
    Ok(tracked)
}

/// (a) The commit to deploy (the deploy branch's tip unless one is asked for) is on the deploy branch.
fn on_deploy_branch<'r>(fetched: &'r Fetched, request: &Request) -> Result<Commit<'r>, Error> {
    let repo = &fetched.repo;
    let Some(text) = request.commit else {
        return Ok(repo.find_commit(fetched.deploy_tip)?);
    };
    if text.len() < 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::CommitSyntax(text.to_string()));
    }
    let found = repo
        .revparse_single(text)
        .and_then(|object| object.peel_to_commit())
        .map(|commit| commit.id())
        .ok();
    match found {
        Some(id) if git::is_on(repo, id, fetched.deploy_tip)? => Ok(repo.find_commit(id)?),
        _ => Err(Error::NotOnBranch {
            commit: text.to_string(),
            branch: request.branch.to_string(),
            repository: fetched.repository.clone(),
        }),
    }
}

/// The refusal of `commit` for a `problem` with its provenance.
fn refusal(commit: &Commit, request: &Request, problem: String) -> Error {
    Error::Provenance {
        commit: commit.id().to_string(),
        branch: request.branch.to_string(),
        problem,
    }
}

/// (b) publish's provenance, consistent with itself and the environment: the source commit.
fn provenance(repo: &Repository, commit: &Commit, request: &Request) -> Result<Oid, Error> {
    let refuse = |problem: String| refusal(commit, request, problem);
    let provenance = source_file(repo, commit, request)?;
    let message = String::from_utf8_lossy(commit.message_bytes());
    let source_commit = one_trailer(&message, SOURCE_COMMIT_TRAILER).map_err(&refuse)?;
    let environment = one_trailer(&message, ENVIRONMENT_TRAILER).map_err(&refuse)?;
    if environment != request.environment {
        return Err(refuse(format!(
            "it was published for environment `{}`, not `{}`",
            display_text(&environment),
            request.environment
        )));
    }
    if provenance.environment_file != request.environment_file {
        return Err(refuse(format!(
            "its {SOURCE_FILE} names {}, not {}",
            display_text(&provenance.environment_file),
            request.environment_file
        )));
    }
    match git::parse_oid(&source_commit) {
        Some(source) if provenance.commit == source_commit => Ok(source),
        _ => Err(refuse(format!(
            "its {SOURCE_COMMIT_TRAILER} trailer ({}) and {SOURCE_FILE} ({}) do not name one commit",
            display_text(&source_commit),
            display_text(&provenance.commit)
        ))),
    }
}

/// The commit's provenance file, read as publish writes it.
fn source_file(repo: &Repository, commit: &Commit, request: &Request) -> Result<Provenance, Error> {
    let tree = commit.tree()?;
    let Some(entry) = git::regular_file(&tree, SOURCE_FILE) else {
        return Err(refusal(commit, request, format!("it has no {SOURCE_FILE}")));
    };
    let blob = repo.find_blob(entry.id())?;
    serde_json::from_slice(blob.content()).map_err(|e| {
        refusal(
            commit,
            request,
            format!("its {SOURCE_FILE} is not publish's provenance ({e})"),
        )
    })
}

/// The value of the one `trailer` in `message`, or the problem with it.
fn one_trailer(message: &str, trailer: &str) -> Result<String, String> {
    git::one_trailer(message, trailer)
        .ok_or_else(|| format!("its message does not have exactly one {trailer} trailer"))
}

/// (d) The source is reviewed: on the tracked branch.
fn source_is_reviewed(
    fetched: &Fetched,
    commit: &Commit,
    source: Oid,
    request: &Request,
) -> Result<(), Error> {
    if git::is_on(&fetched.repo, source, fetched.tracked_tip)? {
        return Ok(());
    }
    Err(Error::Unreviewed {
        commit: commit.id().to_string(),
        branch: request.branch.to_string(),
        source_commit: source.to_string(),
        tracked: fetched.tracked.clone(),
        repository: fetched.repository.clone(),
    })
}

/// (c) The commit holds exactly the source's rendered directory plus the provenance file.
fn tree_is_the_render(
    repo: &Repository,
    commit: &Commit,
    source: Oid,
    request: &Request,
) -> Result<(), Error> {
    let expected = git::subtree(repo, repo.find_commit(source)?.tree()?, request.output)?;
    let actual = repo.find_tree(git::without(repo, &commit.tree()?, SOURCE_FILE)?)?;
    if expected.as_ref().map(git2::Tree::id) == Some(actual.id()) {
        return Ok(());
    }
    let differences = match &expected {
        Some(expected) => git::differences(repo, expected, &actual)?,
        None => format!("the source has no {}", request.output),
    };
    Err(Error::Tampered {
        commit: commit.id().to_string(),
        branch: request.branch.to_string(),
        dir: request.output.to_string(),
        source_commit: source.to_string(),
        differences,
    })
}
