//! GitHub: the pull request event a workflow runs for, and the one sticky
//! comment that carries the plan on the pull request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::issues::Comment;
use octocrab::secrecy::SecretString;
use serde::Deserialize;

use crate::plan::{Plan, markdown};

/// Marks the plan comment, so that every run finds and updates the same one.
pub const COMMENT_MARKER: &str = "<!-- tracker-gitops:plan -->";
/// GitHub's maximum comment length. It counts characters; a body's length in
/// bytes is never smaller, so bytes are a safe measure.
pub const COMMENT_LIMIT: usize = 65_536;
/// Who writes the plan comment by default: a workflow's `GITHUB_TOKEN`.
pub const DEFAULT_COMMENT_AUTHOR: &str = "github-actions[bot]";
const DEFAULT_API_URL: &str = "https://api.github.com";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the event payload {path}: {source}")]
    ReadEvent {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the event payload {path} is not valid: {source}")]
    ParseEvent {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0} is not set; commenting runs in a GitHub Actions workflow")]
    Unset(&'static str),
    #[error("GITHUB_REPOSITORY must read owner/name, not `{0}`")]
    Repository(String),
    #[error("commenting needs a pull_request event; the event at GITHUB_EVENT_PATH has none")]
    NotPullRequest,
    /// The token may not write: a pull request from a fork gets a read-only one.
    #[error("GitHub refused (HTTP 403): {message}")]
    Forbidden { message: String },
    #[error("GitHub API at {api_url}: {message}")]
    Api { api_url: String, message: String },
    #[error("cannot start the HTTP client: {0}")]
    Runtime(std::io::Error),
}

/// The parts of a workflow's event payload that matter here.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub pull_request: Option<PullRequest>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub base: Base,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Base {
    pub sha: String,
}

impl Event {
    /// The event at `$GITHUB_EVENT_PATH`; `None` outside a workflow.
    pub fn from_env() -> Result<Option<Self>, Error> {
        std::env::var_os("GITHUB_EVENT_PATH")
            .filter(|path| !path.is_empty())
            .map(|path| Self::read(Path::new(&path)))
            .transpose()
    }

    pub fn read(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadEvent {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::ParseEvent {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The pull request's base commit, for a pull request event.
    pub fn base_sha(&self) -> Option<&str> {
        self.pull_request.as_ref().map(|pr| pr.base.sha.as_str())
    }
}

/// The pull request to comment on, and how to reach the API. The token is a
/// [`SecretString`], so it shows in no `Debug` output.
#[derive(Debug)]
pub struct CommentTarget {
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    pub number: u64,
    /// The login whose comment is the plan comment (the token's identity).
    pub author: String,
    token: SecretString,
}

impl CommentTarget {
    /// From a workflow's environment: `GITHUB_API_URL` (so that GitHub
    /// Enterprise works), `GITHUB_REPOSITORY`, `GITHUB_TOKEN` and the event;
    /// `author` is the token's login.
    pub fn from_env(event: Option<&Event>, author: &str) -> Result<Self, Error> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let repository = var("GITHUB_REPOSITORY").ok_or(Error::Unset("GITHUB_REPOSITORY"))?;
        let (owner, repo) = repository
            .split_once('/')
            .filter(|(owner, repo)| !owner.is_empty() && !repo.is_empty() && !repo.contains('/'))
            .ok_or_else(|| Error::Repository(repository.clone()))?;
        let event = event.ok_or(Error::Unset("GITHUB_EVENT_PATH"))?;
        let number = event
            .pull_request
            .as_ref()
            .ok_or(Error::NotPullRequest)?
            .number;
        Ok(Self {
            api_url: var("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.into()),
            owner: owner.into(),
            repo: repo.into(),
            number,
            author: author.into(),
            token: var("GITHUB_TOKEN")
                .ok_or(Error::Unset("GITHUB_TOKEN"))?
                .into(),
        })
    }
}

/// What [`post_plan`] did, with the comment's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    Created(u64),
    Updated(u64),
    /// The comment already read the same.
    Unchanged(u64),
    /// Nothing changes and no comment exists: none is needed.
    Skipped,
}

/// Shows the plan in the pull request's one plan comment: updates the comment
/// carrying [`COMMENT_MARKER`], or creates it when the plan has changes.
pub fn post_plan(target: &CommentTarget, plan: &Plan) -> Result<Posted, Error> {
    let body = comment_body(plan);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime
        .block_on(upsert(target, &body, plan.has_changes()))
        .map_err(|e| api_error(&target.api_url, e))
}

/// The marker and the plan, cut to stay under GitHub's maximum.
fn comment_body(plan: &Plan) -> String {
    let limit = COMMENT_LIMIT - 1 - format!("{COMMENT_MARKER}\n").len();
    format!(
        "{COMMENT_MARKER}\n{}",
        markdown::render_within(plan, limit, "the job summary")
    )
}

async fn upsert(target: &CommentTarget, body: &str, create: bool) -> octocrab::Result<Posted> {
    let github = Octocrab::builder()
        .base_uri(target.api_url.as_str())?
        .personal_token(target.token.clone())
        // A stalled API must not hold the workflow until its job times out.
        .set_connect_timeout(Some(Duration::from_secs(30)))
        .set_read_timeout(Some(Duration::from_secs(60)))
        .build()?;
    let issues = github.issues(&target.owner, &target.repo);
    match find(&github, target).await? {
        Some(existing) if existing.body.as_deref() == Some(body) => {
            Ok(Posted::Unchanged(existing.id.into_inner()))
        }
        Some(existing) => {
            let id = existing.id;
            issues.update_comment(id, body).await?;
            Ok(Posted::Updated(id.into_inner()))
        }
        None if create => {
            let comment = issues.create_comment(target.number, body).await?;
            Ok(Posted::Created(comment.id.into_inner()))
        }
        None => Ok(Posted::Skipped),
    }
}

/// The oldest comment of `target.author` carrying the marker, through every
/// page of comments.
async fn find(github: &Octocrab, target: &CommentTarget) -> octocrab::Result<Option<Comment>> {
    let mut page = github
        .issues(&target.owner, &target.repo)
        .list_comments(target.number)
        .per_page(100)
        .send()
        .await?;
    loop {
        let next = page.next.take();
        if let Some(comment) = page.items.into_iter().find(|c| {
            // Only ours: another bot's or a person's comment carrying the
            // marker is theirs, and only at the start: quoting is not the plan.
            c.user.login == target.author
                && c.body
                    .as_deref()
                    .is_some_and(|body| body.trim_start().starts_with(COMMENT_MARKER))
        }) {
            return Ok(Some(comment));
        }
        match github.get_page(&next).await? {
            Some(following) => page = following,
            None => return Ok(None),
        }
    }
}

/// A library error as ours; 403 stays distinct, for forks' read-only tokens.
fn api_error(api_url: &str, error: octocrab::Error) -> Error {
    let message = match error {
        octocrab::Error::GitHub { source, .. } if source.status_code.as_u16() == 403 => {
            return Error::Forbidden {
                message: source.message,
            };
        }
        octocrab::Error::GitHub { source, .. } => {
            format!("HTTP {}: {}", source.status_code.as_u16(), source.message)
        }
        other => {
            // octocrab's own messages often leave the cause out.
            let mut message = other.to_string();
            let mut cause = std::error::Error::source(&other);
            while let Some(e) = cause {
                message.push_str(&format!(": {e}"));
                cause = e.source();
            }
            message
        }
    };
    Error::Api {
        api_url: api_url.to_string(),
        message,
    }
}
