//! A rendered environment in memory (relative path → bytes), and its two ways
//! to and from a directory: read it back, and replace it atomically. Reading
//! never follows a symbolic link: a link in `build/` could show any file of
//! the machine (a CI runner's, say) as a diff, so it is an error instead.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::diagnostic::display_path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", display_path(.path))]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{} is {kind}: a rendered environment holds only regular files and directories, and \
         nothing else in it is ever followed or read; remove it and run `tracker-gitops render`",
        display_path(.path)
    )]
    NotPlain { path: PathBuf, kind: &'static str },
    #[error("cannot write {}: {source}", display_path(.path))]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "cannot replace {} ({source}); its previous content is kept in {}",
        display_path(.dir),
        display_path(.kept)
    )]
    Restore {
        dir: PathBuf,
        kept: PathBuf,
        source: io::Error,
    },
}

impl Tree {
    /// Adds a file; `path` is relative, `/`-separated.
    pub fn insert(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), bytes.into());
    }

    pub fn remove(&mut self, path: &str) -> Option<Vec<u8>> {
        self.files.remove(path)
    }

    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(p, b)| (p.as_str(), b.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// A short, stable hash of the files under the given directories (their
    /// paths and contents).
    pub fn hash_under<'a>(&self, dirs: impl IntoIterator<Item = &'a str>) -> String {
        let mut hasher = Sha256::new();
        for dir in dirs {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            for (path, bytes) in self.files.range(prefix.clone()..) {
                if !path.starts_with(&prefix) {
                    break;
                }
                hasher.update(path.as_bytes());
                hasher.update([0]);
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
        }
        hex(&hasher.finalize()[..8])
    }

    /// Reads every file below `dir` (none if it does not exist). Anything
    /// but a regular file or a directory, `dir` included, is an error.
    pub fn read_dir(dir: &Path) -> Result<Self, Error> {
        let mut tree = Self::default();
        match fs::symlink_metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Read {
                    path: dir.to_path_buf(),
                    source,
                });
            }
            Ok(metadata) => {
                plain(dir, metadata.file_type(), true)?;
                read_into(&mut tree, dir, "")?;
            }
        }
        Ok(tree)
    }

    /// Makes `dir` hold exactly this tree. It is written in full to a temporary
    /// sibling and swapped in with two renames, so `dir` never holds a mix of
    /// old and new files, and a failure leaves the old tree in place.
    pub fn replace_dir(&self, dir: &Path) -> Result<(), Error> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let write_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Write { path, source }
        };
        fs::create_dir_all(parent).map_err(write_error(parent))?;
        let staging = parent.join(format!(".{name}.new-{}", std::process::id()));
        let retired = parent.join(format!(".{name}.old-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let result = (|| {
            for (path, bytes) in &self.files {
                let target = staging.join(path);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(write_error(parent))?;
                }
                fs::write(&target, bytes).map_err(write_error(&target))?;
            }
            if dir.exists() {
                fs::rename(dir, &retired).map_err(write_error(dir))?;
            }
            if let Err(e) = fs::rename(&staging, dir) {
                if retired.exists() && fs::rename(&retired, dir).is_err() {
                    // Never delete the only copy of the old tree: say where it is.
                    return Err(Error::Restore {
                        dir: dir.to_path_buf(),
                        kept: retired.clone(),
                        source: e,
                    });
                }
                return Err(write_error(dir)(e));
            }
            Ok(())
        })();
        let _ = fs::remove_dir_all(&staging);
        if result.is_ok() {
            let _ = fs::remove_dir_all(&retired);
        }
        result
    }
}

fn read_into(tree: &mut Tree, dir: &Path, prefix: &str) -> Result<(), Error> {
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Read { path, source }
    };
    let mut entries = fs::read_dir(dir)
        .map_err(read_error(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = format!("{prefix}{name}");
        // The entry's own type: a link is not followed to what it points at.
        let kind = entry.file_type().map_err(read_error(&path))?;
        if plain(&path, kind, false)? {
            read_into(tree, &path, &format!("{relative}/"))?;
        } else {
            let bytes = fs::read(&path).map_err(read_error(&path))?;
            tree.insert(relative, bytes);
        }
    }
    Ok(())
}

/// Whether `path` is a directory (`true`) or a regular file (`false`);
/// anything else is an error. `dir_only` refuses a file as well.
fn plain(path: &Path, kind: fs::FileType, dir_only: bool) -> Result<bool, Error> {
    let refuse = |kind| {
        Err(Error::NotPlain {
            path: path.to_path_buf(),
            kind,
        })
    };
    if kind.is_symlink() {
        refuse("a symbolic link")
    } else if kind.is_dir() {
        Ok(true)
    } else if dir_only {
        refuse("a file, not a directory")
    } else if kind.is_file() {
        Ok(false)
    } else {
        // A FIFO would block the read forever; a device is never rendered.
        refuse("a special file (FIFO, socket or device)")
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_only_the_directory() {
        let mut tree = Tree::default();
        tree.insert("storage/a/x", "1");
        tree.insert("storage/ab/y", "2");
        let before = tree.hash_under(["storage/a"]);
        tree.insert("storage/ab/y", "3");
        assert_eq!(before, tree.hash_under(["storage/a"]));
        tree.insert("storage/a/x", "changed");
        assert_ne!(before, tree.hash_under(["storage/a"]));
        assert_eq!(before.len(), 16);
    }

    #[test]
    fn links_are_refused_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let (dir, outside) = (root.path().join("env"), root.path().join("outside"));
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(&outside, "secret").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("sub/link")).unwrap();
        let error = Tree::read_dir(&dir).unwrap_err();
        assert!(matches!(&error, Error::NotPlain { path, .. } if path.ends_with("sub/link")));
        assert!(!error.to_string().contains("secret"));
        fs::remove_file(dir.join("sub/link")).unwrap();
        std::os::unix::fs::symlink(root.path(), dir.join("sub/loop")).unwrap();
        assert!(matches!(Tree::read_dir(&dir), Err(Error::NotPlain { .. })));
        let linked = root.path().join("linked-env");
        std::os::unix::fs::symlink(&dir, &linked).unwrap();
        assert!(matches!(
            Tree::read_dir(&linked),
            Err(Error::NotPlain { .. })
        ));
        assert_eq!(
            Tree::read_dir(&root.path().join("none")).unwrap(),
            Tree::default()
        );
    }

    #[test]
    fn replace_dir_leaves_exactly_the_tree() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("env");
        fs::create_dir_all(dir.join("old")).unwrap();
        fs::write(dir.join("old/orphan"), "x").unwrap();
        let mut tree = Tree::default();
        tree.insert("a/b.txt", "hello");
        tree.replace_dir(&dir).unwrap();
        assert_eq!(Tree::read_dir(&dir).unwrap(), tree);
        let leftovers: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
