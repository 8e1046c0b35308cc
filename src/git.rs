//! Repository access shared by publish, plan and deploy's verification:
//! branches fetched from a remote (by name or URL), trees read and written,
//! and trees compared exactly — modes and entry types included, since an
//! executable bit, a symlink or a submodule changes what a VM runs as much as
//! bytes do. libgit2's errors become what the user should do here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use git2::{Cred, FetchOptions, ObjectType, Oid, PushOptions, RemoteCallbacks, Repository};

use crate::tree::Tree;

/// A regular, non-executable file: the only kind of entry a render writes.
const REGULAR: i32 = 0o100644;
const DIRECTORY: i32 = 0o040000;
/// The token variables an https remote is authenticated with, in order.
const TOKEN_VARIABLES: [&str; 2] = ["TRACKER_GITOPS_GIT_TOKEN", "GITHUB_TOKEN"];

/// libgit2's errors, each saying what to do: [`From<git2::Error>`] translates
/// any of them, and [`translate`] those that name a remote.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("git: {}", .0.message())]
    Git(git2::Error),
    #[error(
        "not in a git repository (none in the current directory or above it): run tracker-gitops \
         in the repository holding environments/ and build/, or create one with `git init`"
    )]
    NoRepository(#[source] git2::Error),
    #[error(
        "the checked-out branch has no commit yet: commit environments/ and build/ first \
         (`git add environments build && git commit`)"
    )]
    Unborn,
    #[error(
        "git: {}: no such branch, tag or commit here; check the name, and fetch it first \
         if it lives on a remote (`git fetch`)",
        .0.message()
    )]
    NotFound(git2::Error),
    #[error(
        "git: {}: another git process is using this repository; wait for it, or remove \
         the lock file it names if none is running",
        .0.message()
    )]
    Locked(git2::Error),
    #[error(
        "no remote named `{name}` in this repository: add it (`git remote add {name} URL`) or name another"
    )]
    NoRemote { name: String },
    #[error("cannot locate {path} in the git work tree: {reason}")]
    Location { path: PathBuf, reason: String },
    #[error(
        "cannot read {url}: {message} (check the URL, that the repository exists and the network)"
    )]
    Unreachable { url: String, message: String },
    #[error(
        "{url} is not a git repository (nothing there, or not a repository): check the remote's URL \
         (`git remote -v`), or create the repository there (`git init --bare`)"
    )]
    NoRepositoryAt { url: String },
    #[error(
        "{url} asks for credentials: set GITHUB_TOKEN (or TRACKER_GITOPS_GIT_TOKEN) to a token that can read it \
         (the one set, if any, was refused)"
    )]
    Auth { url: String },
    #[error(
        "cannot read {url}: tracker-gitops reads repositories over https or from a local path, not over SSH; \
         use the https URL (public, or with GITHUB_TOKEN / TRACKER_GITOPS_GIT_TOKEN)"
    )]
    UnsupportedUrl { url: String },
    #[error("{url} has no default branch (its HEAD names no branch): pass --source-branch BRANCH")]
    NoDefaultBranch { url: String },
}

impl From<git2::Error> for Error {
    /// What an error of the local repository means for the user.
    fn from(error: git2::Error) -> Self {
        use git2::{ErrorClass, ErrorCode};
        match (error.code(), error.class()) {
            (ErrorCode::NotFound, ErrorClass::Repository) => Self::NoRepository(error),
            (ErrorCode::UnbornBranch, _) => Self::Unborn,
            (ErrorCode::NotFound, ErrorClass::Reference) => Self::NotFound(error),
            (ErrorCode::Locked, _) => Self::Locked(error),
            _ => Self::Git(error),
        }
    }
}

/// A URL without any user or password in it.
pub fn strip_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if !userinfo.contains('/') => format!("{scheme}://{host}"),
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The repository containing the current directory.
pub fn repository() -> Result<Repository, Error> {
    Ok(Repository::discover(".")?)
}

/// The remote configured under `name`.
fn find_remote<'r>(repo: &'r Repository, name: &str) -> Result<git2::Remote<'r>, Error> {
    repo.find_remote(name).map_err(|e| match e.code() {
        git2::ErrorCode::NotFound | git2::ErrorCode::InvalidSpec => Error::NoRemote {
            name: name.to_string(),
        },
        _ => e.into(),
    })
}

/// `path` (relative to the current directory) as a path inside the work tree of `repo`.
pub fn path_in_repo(repo: &Repository, path: &Path) -> Result<PathBuf, Error> {
    let location = |reason: String| Error::Location {
        path: path.to_path_buf(),
        reason,
    };
    let workdir = repo
        .workdir()
        .ok_or_else(|| location("the repository is bare".into()))?
        .canonicalize()
        .map_err(|e| location(e.to_string()))?;
    absolute(path)
        .map_err(|e| location(e.to_string()))?
        .strip_prefix(&workdir)
        .map(Path::to_path_buf)
        .map_err(|_| location(format!("it is outside {}", workdir.display())))
}

/// `path` (relative to the current directory) as an absolute path from the
/// canonical current directory. Lexically: the path may not exist (a removed
/// environment).
pub fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let current = std::env::current_dir()?.canonicalize()?;
    let mut absolute = PathBuf::new();
    for component in current.join(path).components() {
        match component {
            Component::ParentDir => {
                absolute.pop();
            }
            Component::CurDir => {}
            other => absolute.push(other),
        }
    }
    Ok(absolute)
}

/// [`path_in_repo`] as git spells it (see [`slash_path`]): what provenance
/// records and verification compares.
pub fn repo_path(repo: &Repository, path: &Path) -> Result<String, Error> {
    path_in_repo(repo, path).map(|path| slash_path(&path))
}

/// A path inside a repository as git spells it: `/`-separated.
pub fn slash_path(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

fn callbacks<'a>() -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    // libgit2 asks again while the server refuses: one token, one try.
    let mut tried = false;
    callbacks.credentials(move |_url, username, _allowed| {
        let auth =
            |message| git2::Error::new(git2::ErrorCode::Auth, git2::ErrorClass::Http, message);
        if std::mem::replace(&mut tried, true) {
            return Err(auth("the token was refused"));
        }
        let token = TOKEN_VARIABLES
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                auth("no GITHUB_TOKEN (or TRACKER_GITOPS_GIT_TOKEN) for an https remote")
            })?;
        Cred::userpass_plaintext(username.unwrap_or("x-access-token"), &token)
    });
    callbacks
}

/// A remote once connected: its branches and default branch as it advertised them.
pub struct Remote<'r> {
    handle: git2::Remote<'r>,
    /// Shown in messages: the URL without credentials.
    url: String,
    branches: BTreeMap<String, Oid>,
    default_branch: Option<String>,
}

impl<'r> Remote<'r> {
    /// The remote configured under `name` in `repo`.
    pub fn named(repo: &'r Repository, name: &str) -> Result<Self, Error> {
        Self::connect(find_remote(repo, name)?)
    }

    /// The repository at `url`, fetched into `repo` without configuring a remote.
    pub fn url(repo: &'r Repository, url: &str) -> Result<Self, Error> {
        Self::connect(repo.remote_anonymous(url)?)
    }

    fn connect(mut handle: git2::Remote<'r>) -> Result<Self, Error> {
        let url = strip_credentials(&String::from_utf8_lossy(handle.url_bytes()));
        let translate = |e| translate(&url, e);
        handle
            .connect_auth(git2::Direction::Fetch, Some(callbacks()), None)
            .map_err(translate)?;
        let branches = handle
            .list()
            .map_err(translate)?
            .iter()
            .filter_map(|head| {
                let branch = head.name().strip_prefix("refs/heads/")?;
                Some((branch.to_string(), head.oid()))
            })
            .collect();
        let default_branch = handle.default_branch().ok().and_then(|name| {
            let name = name.as_str().ok()?.strip_prefix("refs/heads/")?;
            Some(name.to_string())
        });
        handle.disconnect()?;
        Ok(Self {
            handle,
            url,
            branches,
            default_branch,
        })
    }

    /// The URL, without credentials.
    pub fn display_url(&self) -> &str {
        &self.url
    }

    pub fn has_branch(&self, branch: &str) -> bool {
        self.branches.contains_key(branch)
    }

    /// The branch the remote's HEAD names (e.g. `main`).
    pub fn default_branch(&self) -> Result<&str, Error> {
        self.default_branch
            .as_deref()
            .ok_or_else(|| Error::NoDefaultBranch {
                url: self.url.clone(),
            })
    }

    /// Fetches each `(branch, local ref)` in full, dropping the local ref of a
    /// branch the remote does not have.
    pub fn fetch(&mut self, repo: &Repository, branches: &[(&str, &str)]) -> Result<(), Error> {
        let mut refspecs = Vec::new();
        for (branch, local) in branches {
            if self.has_branch(branch) {
                refspecs.push(format!("+refs/heads/{branch}:{local}"));
            } else if let Ok(mut stale) = repo.find_reference(local) {
                stale.delete()?;
            }
        }
        if refspecs.is_empty() {
            return Ok(());
        }
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks());
        self.handle
            .fetch(&refspecs, Some(&mut options), None)
            .map_err(|e| translate(&self.url, e))
    }
}

/// What a failed connection, fetch or push to `url` means for the user.
fn translate(url: &str, error: git2::Error) -> Error {
    let url = url.to_string();
    if error.code() == git2::ErrorCode::Auth {
        Error::Auth { url }
    } else if error.message().contains("unsupported URL protocol") {
        // libgit2 says this of SSH (not built in) and of a path with no repository.
        let scp_like = !url.contains("://")
            && url
                .split_once(':')
                .is_some_and(|(host, _)| !host.contains('/'));
        if scp_like || url.starts_with("ssh://") || url.starts_with("git+ssh://") {
            Error::UnsupportedUrl { url }
        } else {
            Error::NoRepositoryAt { url }
        }
    } else {
        Error::Unreachable {
            url,
            message: error.message().to_string(),
        }
    }
}

/// Fetches the remote's `branch` into `refs/remotes/<remote>/<branch>`,
/// dropping that ref when the branch does not exist there.
pub fn fetch_branch(repo: &Repository, remote: &str, branch: &str) -> Result<(), Error> {
    let tracking = format!("refs/remotes/{remote}/{branch}");
    Remote::named(repo, remote)?.fetch(repo, &[(branch, &tracking)])
}

/// Pushes the local `branch` to `remote`; `Some(message)` when the remote refused it.
pub fn push(repo: &Repository, remote: &str, branch: &str) -> Result<Option<String>, Error> {
    let mut handle = find_remote(repo, remote)?;
    let url = strip_credentials(&String::from_utf8_lossy(handle.url_bytes()));
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
        (Err(e), _) => Err(translate(&url, e)),
    }
}

/// The commit a reference points to; `None` when there is no such reference.
pub fn commit_at<'r>(
    repo: &'r Repository,
    refname: &str,
) -> Result<Option<git2::Commit<'r>>, Error> {
    match repo.find_reference(refname) {
        Ok(reference) => Ok(Some(reference.peel_to_commit()?)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether `commit` is `tip` or one of its ancestors (false when `commit` is
/// not in the repository at all).
pub fn is_on(repo: &Repository, commit: Oid, tip: Oid) -> Result<bool, Error> {
    if commit == tip {
        return Ok(true);
    }
    if repo.find_commit(commit).is_err() {
        return Ok(false);
    }
    Ok(repo.graph_descendant_of(tip, commit)?)
}

/// A full commit id (40 hex digits); `None` for anything else, abbreviations included.
pub fn parse_oid(text: &str) -> Option<Oid> {
    let full = text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit());
    full.then(|| Oid::from_str(text).ok()).flatten()
}

/// The value of the trailer `key` in a commit message, when it has exactly one.
pub fn one_trailer(message: &str, key: &str) -> Option<String> {
    let trailers = git2::message_trailers_strs(message).ok()?;
    let mut values = trailers.iter().filter(|(k, _)| *k == key);
    match (values.next(), values.next()) {
        (Some((_, value)), None) => Some(value.to_string()),
        _ => None,
    }
}

/// The subtree at `path` (`/`-separated, `""` for `tree` itself); `None` when
/// nothing or something other than a directory is there.
pub fn subtree<'r>(
    repo: &'r Repository,
    tree: git2::Tree<'r>,
    path: &str,
) -> Result<Option<git2::Tree<'r>>, Error> {
    if path.is_empty() {
        return Ok(Some(tree));
    }
    match tree.get_path(Path::new(path)) {
        Ok(entry) => Ok(entry.to_object(repo)?.into_tree().ok()),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads the files of a git tree into memory (contents only: see [`differences`]
/// for modes and entry types).
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

/// Writes an in-memory tree into the object database, every file a regular
/// 0644 file; returns its id.
pub fn write_tree(repo: &Repository, tree: &Tree) -> Result<Oid, Error> {
    #[derive(Default)]
    struct Dir<'t> {
        files: Vec<(&'t str, &'t [u8])>,
        dirs: BTreeMap<&'t str, Dir<'t>>,
    }
    fn write(repo: &Repository, dir: &Dir) -> Result<Oid, Error> {
        let mut builder = repo.treebuilder(None)?;
        for (name, bytes) in &dir.files {
            builder.insert(name, repo.blob(bytes)?, REGULAR)?;
        }
        for (name, child) in &dir.dirs {
            builder.insert(name, write(repo, child)?, DIRECTORY)?;
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

/// The id of `tree` without the entry at `path`, and without a directory that
/// this leaves empty.
pub fn without(repo: &Repository, tree: &git2::Tree, path: &str) -> Result<Oid, Error> {
    let mut builder = repo.treebuilder(Some(tree))?;
    match path.split_once('/') {
        None => {
            if builder.get(path)?.is_some() {
                builder.remove(path)?;
            }
        }
        Some((dir, rest)) => {
            if let Some(entry) = tree.get_name(dir).filter(|e| e.filemode() == DIRECTORY) {
                let child = without(repo, &repo.find_tree(entry.id())?, rest)?;
                if repo.find_tree(child)?.is_empty() {
                    builder.remove(dir)?;
                } else {
                    builder.insert(dir, child, DIRECTORY)?;
                }
            }
        }
    }
    Ok(builder.write()?)
}

/// The entry at `path` when it is a regular 0644 file (as publish writes).
pub fn regular_file(tree: &git2::Tree, path: &str) -> Option<git2::TreeEntry<'static>> {
    tree.get_path(Path::new(path))
        .ok()
        .filter(|entry| entry.filemode() == REGULAR)
}

/// How `actual` differs from `expected`, for a message: the first few
/// entries (escaped paths), e.g. `docker-compose.yml: an executable file,
/// expected a regular file`.
pub fn differences(
    repo: &Repository,
    expected: &git2::Tree,
    actual: &git2::Tree,
) -> Result<String, Error> {
    const SHOWN: usize = 5;
    let mut all = Vec::new();
    compare(repo, expected, actual, "", &mut all)?;
    let mut text = all[..all.len().min(SHOWN)].join("; ");
    if all.len() > SHOWN {
        text.push_str(&format!("; and {} more", all.len() - SHOWN));
    }
    Ok(text)
}

fn compare(
    repo: &Repository,
    expected: &git2::Tree,
    actual: &git2::Tree,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<(), Error> {
    let names: BTreeSet<Vec<u8>> = expected
        .iter()
        .chain(actual.iter())
        .map(|entry| entry.name_bytes().to_vec())
        .collect();
    for name in names {
        let path = format!(
            "{prefix}{}",
            crate::diagnostic::display_text(&String::from_utf8_lossy(&name))
        );
        match (expected.get_name_bytes(&name), actual.get_name_bytes(&name)) {
            (Some(e), Some(a)) if e.id() == a.id() && e.filemode() == a.filemode() => {}
            (Some(e), Some(a)) if e.filemode() == DIRECTORY && a.filemode() == DIRECTORY => {
                let (e, a) = (repo.find_tree(e.id())?, repo.find_tree(a.id())?);
                compare(repo, &e, &a, &format!("{path}/"), out)?;
            }
            (Some(e), Some(a)) if e.filemode() == a.filemode() => {
                out.push(format!("{path}: different content"));
            }
            (Some(e), Some(a)) => out.push(format!(
                "{path}: {}, expected {}",
                kind(a.filemode()),
                kind(e.filemode())
            )),
            (None, Some(a)) => out.push(format!("{path}: {} not expected", kind(a.filemode()))),
            (Some(_), None) => out.push(format!("{path}: missing")),
            (None, None) => {}
        }
    }
    Ok(())
}

/// A tree entry's kind, from its mode.
fn kind(mode: i32) -> &'static str {
    match mode {
        REGULAR => "a regular file",
        0o100755 => "an executable file",
        0o120000 => "a symlink",
        0o160000 => "a submodule",
        DIRECTORY => "a directory",
        _ => "an entry of unknown kind",
    }
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

    /// SSH and unreachable repositories are named with what to do.
    #[test]
    fn remote_errors_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        for url in ["git@github.com:o/r.git", "ssh://git@example.org/o/r.git"] {
            let error = Remote::url(&repo, url).err().unwrap();
            assert!(
                matches!(error, Error::UnsupportedUrl { .. }),
                "{url}: {error}"
            );
        }
        let missing = dir.path().join("missing.git");
        let error = Remote::url(&repo, missing.to_str().unwrap()).err().unwrap();
        assert!(matches!(error, Error::NoRepositoryAt { .. }), "{error}");
    }

    /// The local repository's common problems, each with what to do.
    #[test]
    fn local_errors_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let error = Error::from(Repository::discover(dir.path()).err().unwrap());
        assert!(matches!(error, Error::NoRepository(_)), "{error}");
        assert!(error.to_string().contains("`git init`"), "{error}");

        let repo = Repository::init(dir.path()).unwrap();
        let error = Error::from(repo.head().err().unwrap());
        assert!(matches!(error, Error::Unborn), "{error}");
        let error = Error::from(repo.find_reference("refs/heads/nope").err().unwrap());
        assert!(matches!(error, Error::NotFound(_)), "{error}");
        let error = Error::from(repo.revparse_single("nope").err().unwrap());
        assert!(matches!(error, Error::NotFound(_)), "{error}");
        let error = find_remote(&repo, "origin").err().unwrap();
        assert_eq!(
            error.to_string(),
            "no remote named `origin` in this repository: add it (`git remote add origin URL`) or name another"
        );
        std::fs::write(dir.path().join(".git/index.lock"), "").unwrap();
        let error = Error::from(repo.index().unwrap().write().err().unwrap());
        assert!(matches!(error, Error::Locked(_)), "{error}");
    }

    /// A remote with nothing listening (publish.rs tests one that asks for
    /// credentials).
    #[test]
    fn an_unreachable_remote_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/r.git", closed.local_addr().unwrap());
        drop(closed);
        let error = Remote::url(&repo, &url).err().unwrap();
        assert!(matches!(error, Error::Unreachable { .. }), "{error}");
        assert!(error.to_string().contains("check the URL"), "{error}");
    }

    /// Modes and entry types are differences; removing a file keeps the rest.
    #[test]
    fn trees_compare_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut files = Tree::default();
        files.insert("a.yml", "x");
        files.insert(".tracker-gitops/stack.json", "{}");
        let expected = write_tree(&repo, &files).unwrap();
        let expected = repo.find_tree(expected).unwrap();
        let mut with_source = files.clone();
        with_source.insert(".tracker-gitops/source.json", "{}");
        let with_source = repo
            .find_tree(write_tree(&repo, &with_source).unwrap())
            .unwrap();
        assert_eq!(
            without(&repo, &with_source, ".tracker-gitops/source.json").unwrap(),
            expected.id()
        );
        assert_eq!(
            without(&repo, &with_source, "missing/file").unwrap(),
            with_source.id()
        );
        let mut builder = repo.treebuilder(Some(&expected)).unwrap();
        builder
            .insert("a.yml", expected.get_name("a.yml").unwrap().id(), 0o100755)
            .unwrap();
        builder
            .insert("sub\nline", expected.id(), 0o160000)
            .unwrap();
        let changed = repo.find_tree(builder.write().unwrap()).unwrap();
        assert_eq!(
            differences(&repo, &expected, &changed).unwrap(),
            "a.yml: an executable file, expected a regular file; sub\\nline: a submodule not expected"
        );
    }
}
