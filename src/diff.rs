//! Comparing two trees — a fresh render against `build/` on disk, or against a
//! tree read from git — and showing the difference as unified diffs.

use std::fmt::Write as _;

use serde::Serialize;
use similar::TextDiff;

use crate::diagnostic::display_path;
use crate::tree::Tree;

/// What a file's change is, seen from the render (the new side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The render has the file; the other side does not.
    Added,
    /// The other side has a file the render no longer produces.
    Removed,
    Changed,
}

#[derive(Debug, Clone)]
pub struct FileChange<'a> {
    pub path: &'a str,
    pub kind: ChangeKind,
    /// The other side's content (`None` when added).
    pub old: Option<&'a [u8]>,
    /// The render's content (`None` when removed).
    pub new: Option<&'a [u8]>,
}

/// Every difference between `old` and the rendered `new`, by path.
pub fn compare<'a>(new: &'a Tree, old: &'a Tree) -> Vec<FileChange<'a>> {
    let mut changes: Vec<FileChange<'a>> = new
        .iter()
        .filter_map(|(path, bytes)| match old.get(path) {
            None => Some(FileChange {
                path,
                kind: ChangeKind::Added,
                old: None,
                new: Some(bytes),
            }),
            Some(before) if before != bytes => Some(FileChange {
                path,
                kind: ChangeKind::Changed,
                old: Some(before),
                new: Some(bytes),
            }),
            Some(_) => None,
        })
        .collect();
    changes.extend(
        old.iter()
            .filter(|(path, _)| new.get(path).is_none())
            .map(|(path, bytes)| FileChange {
                path,
                kind: ChangeKind::Removed,
                old: Some(bytes),
                new: None,
            }),
    );
    changes.sort_by_key(|c| c.path);
    changes
}

impl ChangeKind {
    /// What writing the render does to the file on the other side:
    /// `create` (added), `update` or `delete` (removed).
    pub fn verb(self) -> &'static str {
        match self {
            Self::Changed => "update",
            Self::Added => "create",
            Self::Removed => "delete",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Self::Changed => "updated",
            Self::Added => "created",
            Self::Removed => "deleted",
        }
    }
}

/// Whether a [`summary`] tells what writing the render would do or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tense {
    /// "2 to update, 1 to create" (`render --check`, `publish`).
    Pending,
    /// "2 updated, 1 created" (`render`).
    Done,
}

/// Counts of each kind, e.g. "2 to update, 1 to create, 1 to delete".
pub fn summary(changes: &[FileChange], tense: Tense) -> String {
    let count = |kind| changes.iter().filter(|c| c.kind == kind).count();
    [ChangeKind::Changed, ChangeKind::Added, ChangeKind::Removed]
        .iter()
        .map(|&kind| (count(kind), kind))
        .filter(|(n, _)| *n > 0)
        .map(|(n, kind)| match tense {
            Tense::Pending => format!("{n} to {}", kind.verb()),
            Tense::Done => format!("{n} {}", kind.past()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A unified diff of one change; `prefix` is prepended to the path in the
/// headers, which show it escaped. Content needs no escaping: every line, also
/// one ended by a lone `\r`, starts with a diff marker, so none can pass for a
/// line of ours or a workflow command.
pub fn unified_diff(change: &FileChange, prefix: &str) -> String {
    let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
    let (old, new) = (text(change.old), text(change.new));
    let path = display_path(format!("{prefix}{}", change.path));
    let old_header = match change.kind {
        ChangeKind::Added => "/dev/null".to_string(),
        _ => format!("a/{path}"),
    };
    let new_header = match change.kind {
        ChangeKind::Removed => "/dev/null".to_string(),
        _ => format!("b/{path}"),
    };
    let (old, new) = (old.unwrap_or_default(), new.unwrap_or_default());
    let diff = TextDiff::from_lines(&old, &new);
    let mut out = String::new();
    let _ = write!(
        out,
        "{}",
        diff.unified_diff()
            .context_radius(3)
            .header(&old_header, &new_header)
    );
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str("\n\\ No newline at end of file\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_diffs() {
        let mut new = Tree::default();
        new.insert("a", "1\n2\n");
        new.insert("b", "same\n");
        new.insert("c", "new\n");
        let mut old = Tree::default();
        old.insert("a", "1\n3\n");
        old.insert("b", "same\n");
        old.insert("d", "gone\n");
        let changes = compare(&new, &old);
        let kinds: Vec<_> = changes.iter().map(|c| (c.path, c.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("a", ChangeKind::Changed),
                ("c", ChangeKind::Added),
                ("d", ChangeKind::Removed)
            ]
        );
        assert_eq!(
            summary(&changes, Tense::Pending),
            "1 to update, 1 to create, 1 to delete"
        );
        assert_eq!(
            summary(&changes, Tense::Done),
            "1 updated, 1 created, 1 deleted"
        );
        let diff = unified_diff(&changes[0], "build/x/");
        assert_eq!(
            diff,
            "--- a/build/x/a\n+++ b/build/x/a\n@@ -1,2 +1,2 @@\n 1\n-3\n+2\n"
        );
        assert!(unified_diff(&changes[2], "").starts_with("--- a/d\n+++ /dev/null\n"));
    }
}
