//! Rules across environment files. A file can be valid alone and still collide
//! with another: two environments on one deploy branch overwrite each other's
//! commits, and two in one VM directory share its checkout, lock and `deployed`
//! record, so a failed deploy of one "rolls back" to the other's commit. Deploy
//! branches also keep to their own namespace, so that publish can never commit
//! rendered files on top of a source branch.
//!
//! Every collision is an error in each file involved, with a note locating the
//! other: whichever file a change touched, its annotation shows the problem.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use super::model::Deploy;
use super::{Checked, DeploySection};
use crate::diagnostic::{Code, Diagnostic, Related};
use crate::text::plural;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "the deploy branch prefix is empty: deploy branches need a namespace of their own, such as `deploy/`"
    )]
    Empty,
    #[error("the deploy branch prefix {0:?} does not make valid git branch names")]
    Invalid(String),
}

/// Where deploy branches live (`<prefix>…`), and the branches they must never be.
#[derive(Debug, Clone)]
pub struct Namespace {
    prefix: String,
    /// (branch, why it is not a deploy branch).
    protected: Vec<(String, &'static str)>,
}

impl Namespace {
    pub fn new(prefix: &str) -> Result<Self, NamespaceError> {
        if prefix.is_empty() {
            return Err(NamespaceError::Empty);
        }
        if !git2::Branch::name_is_valid(&format!("{prefix}x")).unwrap_or(false) {
            return Err(NamespaceError::Invalid(prefix.to_string()));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            protected: Vec::new(),
        })
    }

    /// Also refuses the branch checked out in the repository around `dir` and
    /// the default branch of its `origin`, as far as the clone knows them.
    /// Outside a repository nothing is added: the namespace alone keeps deploy
    /// branches off `main`.
    pub fn protect_repository(mut self, dir: &Path) -> Self {
        if let Ok(repo) = git2::Repository::discover(dir) {
            let target = |reference: &str, prefix: &str| -> Option<String> {
                let reference = repo.find_reference(reference).ok()?;
                let target = reference.symbolic_target().ok()??;
                target.strip_prefix(prefix).map(str::to_string)
            };
            if let Some(branch) = target("HEAD", "refs/heads/") {
                self.protected
                    .push((branch, "the branch checked out here (the source)"));
            }
            if let Some(branch) = target("refs/remotes/origin/HEAD", "refs/remotes/origin/") {
                self.protected
                    .push((branch, "the default branch of the `origin` repository"));
            }
        }
        self
    }
}

/// An environment file taking part in the rules across files.
struct Member<'a> {
    index: usize,
    file: &'a str,
    section: &'a DeploySection,
    /// Its deploy branch, explicit or from the file name.
    branch: String,
}

impl Member<'_> {
    fn name(&self) -> &str {
        &self.section.name
    }

    fn deploy(&self) -> &Deploy {
        &self.section.deploy
    }

    /// Where a diagnostic about the deploy branch points: `deploy.branch`, or
    /// the `deploy` key when the branch comes from the file name.
    fn branch_pointer(&self) -> &'static str {
        match self.deploy().branch {
            Some(_) => "/deploy/branch",
            None => "/deploy",
        }
    }

    /// The value at `pointer`; for an object, its key.
    fn span(&self, pointer: &str) -> Range<usize> {
        let document = &self.section.document;
        match document.value.pointer(pointer) {
            Some(serde_json::Value::Object(_)) => document.object_span(pointer),
            _ => document.value_span(pointer),
        }
    }

    fn error(&self, code: Code, pointer: &str, message: String) -> Diagnostic {
        Diagnostic::error(code, pointer, self.span(pointer), message)
    }

    /// A note pointing at `pointer` in this file, for a diagnostic in another.
    fn related(&self, pointer: &str, message: String) -> Related {
        let (line, column) = self.section.document.line_column(self.span(pointer).start);
        Related {
            file: self.file.to_string(),
            line,
            column,
            message,
        }
    }

    /// The VM directory as path components after the host and port.
    fn destination(&self) -> Vec<String> {
        let deploy = self.deploy();
        // Host names are case-insensitive; the schema allows no trailing dot.
        let host = deploy.host.to_ascii_lowercase();
        [host, deploy.port.to_string()]
            .into_iter()
            .chain(
                deploy
                    .path
                    .split('/')
                    .filter(|part| !part.is_empty() && *part != ".")
                    .map(str::to_string),
            )
            .collect()
    }
}

/// Adds the diagnostics of the rules across files to `checked`. A file that
/// gets an error here is no longer a valid environment.
pub fn check_set(checked: &mut [Checked], namespace: &Namespace) {
    let members: Vec<Member> = checked
        .iter()
        .enumerate()
        .filter_map(|(index, c)| {
            let section = c.deploy.as_ref()?;
            Some(Member {
                index,
                file: c.report.path(),
                branch: section.deploy.branch_of(&section.name, &namespace.prefix),
                section,
            })
        })
        .collect();
    let mut found: Vec<Vec<Diagnostic>> = vec![Vec::new(); checked.len()];
    for member in &members {
        found[member.index].extend(
            outside_namespace(member, namespace).or_else(|| protected_branch(member, namespace)),
        );
    }
    // Git refs may live on a case-insensitive file system.
    let branches: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            m.branch
                .to_lowercase()
                .split('/')
                .map(str::to_string)
                .collect()
        })
        .collect();
    let prefix = &namespace.prefix;
    report_overlaps(&members, &branches, &mut found, |a, b, overlap| {
        branch_collision(a, b, overlap, prefix)
    });
    let destinations: Vec<Vec<String>> = members.iter().map(Member::destination).collect();
    report_overlaps(&members, &destinations, &mut found, destination_collision);
    for (checked, found) in checked.iter_mut().zip(found) {
        checked.report.extend(found);
        if checked.report.has_errors() {
            checked.environment = None;
        }
    }
}

/// How many collisions of one kind a file reports; a hundred copies of one
/// file need not print ten thousand errors.
const SHOWN: usize = 3;

/// Reports, in each member's file, its overlaps with the others' `keys`.
fn report_overlaps(
    members: &[Member],
    keys: &[Vec<String>],
    found: &mut [Vec<Diagnostic>],
    describe: impl Fn(&Member, &Member, Overlap) -> Diagnostic,
) {
    let mut others: Vec<Vec<(usize, Overlap)>> = vec![Vec::new(); members.len()];
    for (a, b, overlap) in overlaps(keys) {
        others[a].push((b, overlap));
        others[b].push((a, overlap.reversed()));
    }
    for (member, others) in members.iter().zip(others) {
        for (shown, &(other, overlap)) in others.iter().enumerate().take(SHOWN) {
            let mut diagnostic = describe(member, &members[other], overlap);
            if shown + 1 == SHOWN && others.len() > SHOWN {
                let more = others.len() - SHOWN;
                let environments = plural(more, "environment", "environments");
                diagnostic.message += &format!(" (and {more} more {environments})");
            }
            found[member.index].push(diagnostic);
        }
    }
}

/// An explicit `deploy.branch` outside `<prefix>…`: publish would commit
/// rendered files onto a branch people work on (`main`, say).
fn outside_namespace(member: &Member, namespace: &Namespace) -> Option<Diagnostic> {
    let branch = member.deploy().branch.as_deref()?;
    let prefix = &namespace.prefix;
    // An invalid name already has its own error.
    let inside = branch.len() > prefix.len() && branch.starts_with(prefix.as_str());
    if inside || !git2::Branch::name_is_valid(branch).unwrap_or(false) {
        return None;
    }
    let name = member.name();
    Some(
        member
            .error(
                Code::BranchOutsideNamespace,
                "/deploy/branch",
                format!("deploy branch `{branch}` is outside the deploy namespace `{prefix}`"),
            )
            .with_hint(format!(
                "publish commits the rendered files onto this branch, so it must be one only \
                 publish writes: use `{prefix}{name}` (the default when `branch` is left out) or \
                 another name under `{prefix}`"
            )),
    )
}

/// A deploy branch that is the source branch or the default branch.
fn protected_branch(member: &Member, namespace: &Namespace) -> Option<Diagnostic> {
    let (branch, why) = namespace
        .protected
        .iter()
        .find(|(branch, _)| branch.eq_ignore_ascii_case(&member.branch))?;
    Some(
        member
            .error(
                Code::ProtectedBranch,
                member.branch_pointer(),
                format!("deploy branch `{branch}` is {why}"),
            )
            .with_hint(
                "publish commits the rendered files onto the deploy branch: give the environment \
                 a branch of its own in the deploy namespace",
            ),
    )
}

/// How one claim (a branch, a directory) overlaps another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overlap {
    Same,
    /// The first lies inside the second.
    Inside,
    /// The first holds the second.
    Holds,
}

impl Overlap {
    fn reversed(self) -> Self {
        match self {
            Self::Same => Self::Same,
            Self::Inside => Self::Holds,
            Self::Holds => Self::Inside,
        }
    }
}

/// Every pair of keys (paths as components) that are equal or where one lies
/// inside the other, once each, in a stable order.
fn overlaps(keys: &[Vec<String>]) -> Vec<(usize, usize, Overlap)> {
    let mut by_key: HashMap<&[String], Vec<usize>> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        by_key.entry(key).or_default().push(i);
    }
    let mut pairs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        for len in 1..=key.len() {
            for &j in by_key.get(&key[..len]).into_iter().flatten() {
                match len == key.len() {
                    true if j > i => pairs.push((i, j, Overlap::Same)),
                    true => {}
                    false => pairs.push((i, j, Overlap::Inside)),
                }
            }
        }
    }
    pairs.sort_unstable_by_key(|&(i, j, _)| (i.min(j), i.max(j)));
    pairs
}

/// The error in `a`'s file about its deploy branch overlapping `b`'s.
fn branch_collision(a: &Member, b: &Member, overlap: Overlap, prefix: &str) -> Diagnostic {
    let (mine, theirs, other) = (&a.branch, &b.branch, b.name());
    let (message, hint) = match overlap {
        Overlap::Same => (
            format!("deploy branch `{mine}` is also the deploy branch of `{other}`"),
            format!(
                "each publish would replace the other environment's files there: give every \
                 environment its own branch (without `deploy.branch`, `{name}` gets `{prefix}{name}`)",
                name = a.name()
            ),
        ),
        Overlap::Inside | Overlap::Holds => (
            format!(
                "deploy branch `{mine}` cannot exist beside `{theirs}`, the deploy branch of `{other}`"
            ),
            "git cannot hold a branch `x` and a branch `x/…` at once: rename one of them".into(),
        ),
    };
    a.error(Code::BranchCollision, a.branch_pointer(), message)
        .with_related(b.related(
            b.branch_pointer(),
            format!("`{other}` deploys from `{theirs}`"),
        ))
        .with_hint(hint)
}

/// The error in `a`'s file about its VM directory overlapping `b`'s.
fn destination_collision(a: &Member, b: &Member, overlap: Overlap) -> Diagnostic {
    let (mine, theirs) = (a.deploy(), b.deploy());
    let other = b.name();
    let at = format!("{}:{}", mine.host, mine.port);
    let (path, their_path) = (&mine.path, &theirs.path);
    let message = match overlap {
        Overlap::Same => {
            format!("VM directory `{path}` on {at} is also the deploy directory of `{other}`")
        }
        Overlap::Inside => format!(
            "VM directory `{path}` on {at} is inside `{their_path}`, the deploy directory of `{other}`"
        ),
        Overlap::Holds => format!(
            "VM directory `{path}` on {at} holds `{their_path}`, the deploy directory of `{other}`"
        ),
    };
    a.error(Code::DestinationCollision, "/deploy/path", message)
        .with_related(b.related(
            "/deploy/path",
            format!(
                "`{other}` deploys to `{their_path}` on {}:{}",
                theirs.host, theirs.port
            ),
        ))
        .with_hint(
            "a deploy directory holds one environment's checkout, lock and `deployed` record: \
             give every environment its own, e.g. /srv/tracker-gitops/<name>",
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Severity;

    fn keys(list: &[&str]) -> Vec<Vec<String>> {
        list.iter()
            .map(|k| k.split('/').map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn overlaps_are_equal_or_nested_keys_once_each() {
        let found = overlaps(&keys(&["a/b", "a", "a-c", "a/b", "x/a/b", "a/bc"]));
        assert_eq!(
            found,
            [
                (0, 1, Overlap::Inside),
                (0, 3, Overlap::Same),
                (3, 1, Overlap::Inside),
                (5, 1, Overlap::Inside),
            ]
        );
        assert!(overlaps(&keys(&["deploy/a", "deploy/b"])).is_empty());
    }

    /// `copies` environments from one file, checked as a set.
    fn copies(copies: usize) -> Vec<Checked> {
        let text = include_str!("../../tests/corpus/cross/copied-file/production.json");
        let mut checked: Vec<Checked> = (0..copies)
            .map(|i| {
                super::super::check_bytes(Path::new(&format!("e/env-{i}.json")), text.as_bytes())
            })
            .collect();
        assert!(checked.iter().all(|c| c.environment.is_some()));
        check_set(&mut checked, &Namespace::new("deploy/").unwrap());
        checked
    }

    #[test]
    fn copies_of_one_file_collide_with_a_bounded_report_each() {
        for c in &copies(200) {
            assert!(c.environment.is_none());
            let errors: Vec<_> = c
                .report
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .collect();
            // Three on the branch, three on the directory, the last of each summing up.
            assert_eq!(errors.len(), 2 * SHOWN, "{errors:#?}");
            assert!(
                errors
                    .iter()
                    .any(|d| d.message.ends_with("(and 196 more environments)"))
            );
        }
        let one_more = &copies(SHOWN + 2)[0].report.diagnostics;
        assert!(
            one_more
                .iter()
                .all(|d| d.code == Code::BranchCollision || d.code == Code::DestinationCollision)
        );
        assert!(
            one_more
                .iter()
                .any(|d| d.message.ends_with("(and 1 more environment)")),
            "{one_more:#?}"
        );
    }

    #[test]
    fn the_prefix_must_make_a_namespace() {
        assert!(matches!(Namespace::new(""), Err(NamespaceError::Empty)));
        assert!(matches!(
            Namespace::new("a..b/"),
            Err(NamespaceError::Invalid(_))
        ));
        assert!(Namespace::new("deploy/").is_ok());
        assert!(Namespace::new("release-").is_ok());
    }

    #[test]
    fn outside_a_repository_nothing_is_protected() {
        let dir = tempfile::tempdir().unwrap();
        let namespace = Namespace::new("deploy/")
            .unwrap()
            .protect_repository(dir.path());
        assert!(namespace.protected.is_empty());
    }

    #[test]
    fn a_repository_protects_its_checked_out_and_default_branches() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        repo.set_head("refs/heads/trunk").unwrap();
        repo.reference_symbolic(
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/stable",
            true,
            "test",
        )
        .unwrap();
        let namespace = Namespace::new("deploy/")
            .unwrap()
            .protect_repository(dir.path());
        let names: Vec<_> = namespace
            .protected
            .iter()
            .map(|(b, _)| b.as_str())
            .collect();
        assert_eq!(names, ["trunk", "stable"]);
    }
}
