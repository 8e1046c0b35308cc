//! Where the project is, so that a command works from any directory inside it,
//! as git and cargo do: the root is the nearest directory, from the current
//! one up to the git work tree's top, that holds `environments/`; without one,
//! the work tree's top; outside git, the current directory. Commands run in
//! the root, so every path they print (and every annotation) is relative to
//! it; paths the user typed are taken relative to where they were typed.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::diagnostic::display_path;

/// The directory of environment files, relative to the root.
pub const ENVIRONMENTS: &str = "environments";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot change to {}: {source}", display_path(.path))]
    Enter { path: PathBuf, source: io::Error },
    #[error("cannot read the current directory: {0}")]
    Current(io::Error),
    #[error(
        "{} is inside the rendered output {}, which `render` replaces: refusing to write there \
         (run it in the directory holding environments/ and build/, or pass -C DIR)",
        display_path(.path), display_path(.output)
    )]
    InsideOutput { path: PathBuf, output: PathBuf },
}

/// The project root, and where the command was started relative to it.
#[derive(Debug, Clone)]
pub struct Root {
    /// The root, absolute.
    pub dir: PathBuf,
    /// The starting directory relative to the root (empty at the root).
    prefix: PathBuf,
}

impl Root {
    /// Finds the root around `start` (absolute).
    pub fn find(start: &Path) -> Self {
        let top = git2::Repository::discover(start)
            .ok()
            .and_then(|repo| repo.workdir().map(Path::to_path_buf))
            .and_then(|dir| dir.canonicalize().ok());
        let dir = match &top {
            Some(top) => start
                .ancestors()
                .take_while(|dir| dir.starts_with(top))
                .find(|dir| dir.join(ENVIRONMENTS).is_dir())
                .unwrap_or(top)
                .to_path_buf(),
            None => start.to_path_buf(),
        };
        let prefix = start
            .strip_prefix(&dir)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Self { dir, prefix }
    }

    /// Changes to `directory` (`-C`), if any, then to the root found there.
    pub fn enter(directory: Option<&Path>) -> Result<Self, Error> {
        if let Some(path) = directory {
            std::env::set_current_dir(path).map_err(|source| Error::Enter {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let start = std::env::current_dir()
            .and_then(|dir| dir.canonicalize())
            .map_err(Error::Current)?;
        let root = Self::find(&start);
        std::env::set_current_dir(&root.dir).map_err(|source| Error::Enter {
            path: root.dir.clone(),
            source,
        })?;
        Ok(root)
    }

    /// A path the user typed where the command started, as seen from the root:
    /// `../environments/x.json` typed in `build/` is `environments/x.json`.
    pub fn typed(&self, path: &Path) -> PathBuf {
        if path.is_absolute() || self.prefix.as_os_str().is_empty() {
            return path.to_path_buf();
        }
        let seen = normalize(&self.prefix.join(path));
        if seen.starts_with("..") {
            // Above the root: keep it as typed, from where it was typed.
            return normalize(&self.dir.join(&self.prefix).join(path));
        }
        if seen.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            seen
        }
    }
}

/// `path` without `.`, and with each `..` taking away the name before it
/// (lexically: what a user typed, not what symbolic links would make of it).
pub fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir
                if matches!(normal.components().next_back(), Some(Component::Normal(_))) =>
            {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

/// The rendered output `path` would be inside, if any: a rendered environment
/// (a directory holding `.tracker-gitops/`) or a directory of them (`build/`).
/// Writing there would be replaced, or published, by the next render. Only
/// the current directory (the root) and those inside it are looked at.
pub fn output_around(path: &Path) -> Option<PathBuf> {
    let root = std::env::current_dir().ok()?;
    let absolute = root.join(path);
    let rendered = |dir: &Path| dir.join(".tracker-gitops").is_dir();
    let inside = |dir: &&Path| dir.starts_with(&root);
    let output = absolute.ancestors().filter(inside).find_map(|dir| {
        if rendered(dir) {
            return Some(dir.parent().unwrap_or(dir));
        }
        let holds_rendered = std::fs::read_dir(dir).ok()?.flatten().any(|entry| {
            let child = entry.path();
            child.is_dir() && !child.is_symlink() && rendered(&child)
        });
        holds_rendered.then_some(dir)
    })?;
    // Named from the root, unless it is the root itself.
    Some(match output.strip_prefix(&root) {
        Ok(relative) if !relative.as_os_str().is_empty() => relative.to_path_buf(),
        _ => output.to_path_buf(),
    })
}

/// Refuses `path` when it is inside rendered output.
pub fn refuse_inside_output(path: &Path) -> Result<(), Error> {
    match output_around(path) {
        Some(output) => Err(Error::InsideOutput {
            path: path.to_path_buf(),
            output,
        }),
        None => Ok(()),
    }
}

/// Writes a new file whole, never replacing one: written beside, then linked
/// into place (linking never overwrites, and a failed write leaves no half
/// file behind to block the next attempt). `AlreadyExists` when it exists.
pub fn create_new(path: &Path, content: &[u8]) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let staging = path.with_file_name(format!(".{name}.{}", std::process::id()));
    std::fs::write(&staging, content)?;
    let linked = std::fs::hard_link(&staging, path);
    let _ = std::fs::remove_file(&staging);
    linked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(prefix: &str) -> Root {
        Root {
            dir: PathBuf::from("/repo"),
            prefix: PathBuf::from(prefix),
        }
    }

    #[test]
    fn typed_paths_are_seen_from_the_root() {
        assert_eq!(root("").typed(Path::new("x.json")), Path::new("x.json"));
        assert_eq!(
            root("build").typed(Path::new("../environments/x.json")),
            Path::new("environments/x.json")
        );
        assert_eq!(
            root("environments").typed(Path::new("x.json")),
            Path::new("environments/x.json")
        );
        assert_eq!(root("build").typed(Path::new("..")), Path::new("."));
        assert_eq!(
            root("build").typed(Path::new("../../elsewhere")),
            Path::new("/elsewhere")
        );
        assert_eq!(root("build").typed(Path::new("/abs")), Path::new("/abs"));
    }
}
