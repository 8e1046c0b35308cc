//! What merging would change: each environment's committed render at a base
//! revision (read from git) against a fresh render. Services are compared
//! through the stack every render records in [`STACK_FILE`], never by parsing
//! YAML; files through their diffs. The result reads as Markdown, for a job
//! summary or a pull request comment.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use git2::Repository;

use crate::check::{self, ChangeKind, FileChange};
use crate::diagnostic::{display_path, display_text};
use crate::git;
use crate::render::{self, Rendered, STACK_FILE};
use crate::stack::{self, Port, Protocol, Reason, Service, ServiceChange, Stack};
use crate::text::plural;
use crate::tree::Tree;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error(
        "cannot find revision `{rev}`: {} (a shallow clone lacks the base: fetch it, e.g. actions/checkout with fetch-depth: 0)",
        .source.message()
    )]
    Revision { rev: String, source: git2::Error },
    #[error("no base to compare with: pass --base REF, or fetch `origin/main` or create `main`")]
    NoBase,
    #[error("cannot read {path} at `{rev}`: {source}")]
    Read {
        rev: String,
        path: PathBuf,
        source: git::Error,
    },
    #[error(
        "{dir} at `{rev}` has no {STACK_FILE}: it was rendered by an older tracker-gitops; render and commit it first"
    )]
    NoStack { rev: String, dir: String },
    #[error("{dir}/{STACK_FILE} at `{rev}` is not a stack: {source}")]
    Stack {
        rev: String,
        dir: String,
        source: serde_json::Error,
    },
}

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

/// Every selected environment, at the base and now.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The revision compared with, as given.
    pub base: String,
    /// The output directory inside the repository (e.g. `build`), shown in file paths.
    pub out: String,
    /// By name.
    pub environments: Vec<EnvironmentPlan>,
}

#[derive(Debug, Clone)]
pub struct EnvironmentPlan {
    pub name: String,
    /// The committed render at the base; `None` for a new environment.
    pub base: Option<Rendered>,
    /// The fresh render; `None` for a removed environment.
    pub current: Option<Rendered>,
}

impl Plan {
    /// `at_base` holds the output directory at `base` (one subdirectory per
    /// environment); `current` the fresh renders by name. With `complete` (every
    /// environment was rendered), one found only at the base was removed.
    pub fn new(
        base: impl Into<String>,
        out: impl Into<String>,
        at_base: &Tree,
        current: Vec<(String, Rendered)>,
        complete: bool,
    ) -> Result<Self, Error> {
        let (base, out) = (base.into(), out.into());
        let mut committed: BTreeMap<&str, Tree> = BTreeMap::new();
        for (path, bytes) in at_base.iter() {
            match path.split_once('/') {
                Some((env, rest)) if !env.starts_with('.') => {
                    committed.entry(env).or_default().insert(rest, bytes);
                }
                _ => {}
            }
        }
        let parse = |name: &str, tree| parse_committed(tree, &base, &env_dir(&out, name));
        let mut environments = Vec::new();
        for (name, rendered) in current {
            environments.push(EnvironmentPlan {
                base: committed
                    .remove(name.as_str())
                    .map(|tree| parse(&name, tree))
                    .transpose()?,
                current: Some(rendered),
                name,
            });
        }
        if complete {
            for (name, tree) in committed {
                environments.push(EnvironmentPlan {
                    base: Some(parse(name, tree)?),
                    current: None,
                    name: name.to_string(),
                });
            }
        }
        environments.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            base,
            out,
            environments,
        })
    }

    pub fn has_changes(&self) -> bool {
        self.environments.iter().any(EnvironmentPlan::is_changed)
    }

    /// The names of the environments that change.
    pub fn changed(&self) -> Vec<&str> {
        self.environments
            .iter()
            .filter(|env| env.is_changed())
            .map(|env| env.name.as_str())
            .collect()
    }

    /// The whole plan as Markdown.
    pub fn markdown(&self) -> String {
        self.markdown_within(usize::MAX, "")
    }

    /// The plan as Markdown of at most `limit` bytes: when longer, the largest
    /// diffs (then diagrams) are left out first, with a note pointing to
    /// `full_plan_at`; the summaries stay.
    pub fn markdown_within(&self, limit: usize, full_plan_at: &str) -> String {
        let mut blocks = self.blocks(full_plan_at);
        let size = |blocks: &[Block]| blocks.iter().map(|b| b.text.len()).sum::<usize>();
        let mut total = size(&blocks);
        if total > limit {
            let note = format!(
                "> [!NOTE]\n> This plan is too long to show whole here: the largest diffs are left out. The full plan is in {full_plan_at}.\n\n"
            );
            let budget = limit.saturating_sub(note.len());
            let mut order: Vec<usize> = (0..blocks.len())
                .filter(|&i| blocks[i].savings() > 0)
                .collect();
            order.sort_by_key(|&i| (blocks[i].diagram, Reverse(blocks[i].savings()), i));
            for i in order {
                if total <= budget {
                    break;
                }
                total -= blocks[i].savings();
                blocks[i].text = blocks[i].fallback.take().unwrap_or_default();
            }
            blocks.insert(1, Block::fixed(note));
        }
        let mut text: String = blocks.into_iter().map(|b| b.text).collect();
        if text.len() > limit {
            // Only when the summaries alone are too long: cut, on a character boundary.
            const CUT: &str = "\n\n…(cut)\n";
            let mut end = limit.saturating_sub(CUT.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str(CUT);
        }
        text
    }

    /// The Markdown in pieces; the ones with a fallback can be shortened.
    fn blocks(&self, full_plan_at: &str) -> Vec<Block> {
        let changed = self.changed();
        let mut head = format!(
            "## tracker-gitops plan\n\nCompared with the rendered output at `{}`: {} of {} {} {}.\n\n",
            self.base,
            changed.len(),
            self.environments.len(),
            plural(self.environments.len(), "environment", "environments"),
            plural(changed.len(), "changes", "change"),
        );
        for env in &self.environments {
            // A removed environment is named by a directory at the base: escaped.
            let _ = writeln!(head, "- **{}**: {}", display_text(&env.name), env.summary());
        }
        head.push('\n');
        let mut blocks = vec![Block::fixed(head)];
        for env in self.environments.iter().filter(|env| env.is_changed()) {
            blocks.push(Block::fixed(format!(
                "### {}\n\n{}",
                display_text(&env.name),
                env.table()
            )));
            if let Some(current) = env.current.as_ref().filter(|_| env.topology_changed()) {
                blocks.push(Block {
                    text: format!("Topology after deploy:\n\n{}\n", mermaid(&current.stack)),
                    fallback: Some(String::new()),
                    diagram: true,
                });
            }
            let prefix = format!("{}/", env_dir(&self.out, &env.name));
            for change in env.files() {
                let path = display_path(format!("{prefix}{}", change.path));
                let summary = format!("{path} ({})", verb(change.kind));
                let diff = check::unified_diff(&change, &prefix);
                let fence = fence(&diff);
                blocks.push(Block {
                    text: format!(
                        "<details><summary>{summary}</summary>\n\n{fence}diff\n{diff}{fence}\n\n</details>\n\n"
                    ),
                    fallback: Some(format!(
                        "<details><summary>{summary}</summary>\n\nDiff left out ({} lines): see {full_plan_at}.\n\n</details>\n\n",
                        diff.lines().count()
                    )),
                    diagram: false,
                });
            }
        }
        blocks
    }
}

/// A piece of Markdown and, when it can be shortened, its shorter form.
struct Block {
    text: String,
    fallback: Option<String>,
    /// A topology diagram: dropped only once every diff is left out.
    diagram: bool,
}

impl Block {
    fn fixed(text: String) -> Self {
        Self {
            text,
            fallback: None,
            diagram: false,
        }
    }

    fn savings(&self) -> usize {
        self.fallback
            .as_ref()
            .map_or(0, |f| self.text.len().saturating_sub(f.len()))
    }
}

/// An environment's directory in the repository, as shown.
fn env_dir(out: &str, name: &str) -> String {
    if out.is_empty() {
        name.to_string()
    } else {
        format!("{out}/{name}")
    }
}

/// The committed render of one environment, from its files.
fn parse_committed(tree: Tree, rev: &str, dir: &str) -> Result<Rendered, Error> {
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

static EMPTY: LazyLock<Tree> = LazyLock::new(Tree::default);

impl EnvironmentPlan {
    /// The files that differ, as [`check::compare`] sees them: "missing" is new
    /// in this change, "orphaned" is removed by it.
    pub fn files(&self) -> Vec<FileChange<'_>> {
        let current = self.current.as_ref().map_or(&*EMPTY, |r| &r.tree);
        let base = self.base.as_ref().map_or(&*EMPTY, |r| &r.tree);
        check::compare(current, base)
    }

    pub fn is_changed(&self) -> bool {
        !self.files().is_empty()
    }

    /// Every service at either side with what happens to it, by name.
    pub fn services(&self) -> Vec<(String, ServiceChange)> {
        let mut services = match (&self.base, &self.current) {
            (base, Some(current)) => {
                stack::compare(base.as_ref().map(|b| &b.stack), &current.stack)
            }
            (Some(base), None) => base
                .stack
                .services
                .iter()
                .map(|s| (s.name.clone(), ServiceChange::Removed))
                .collect(),
            (None, None) => Vec::new(),
        };
        services.sort_by(|a, b| a.0.cmp(&b.0));
        services
    }

    /// Whether services, published ports, networks or dependencies change.
    pub fn topology_changed(&self) -> bool {
        match (&self.base, &self.current) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(base), Some(current)) => {
                base.stack.networks != current.stack.networks
                    || self.services().iter().any(|(_, change)| match change {
                        ServiceChange::Added | ServiceChange::Removed => true,
                        ServiceChange::Recreated(reasons) => reasons.iter().any(|r| {
                            matches!(r, Reason::Ports | Reason::Networks | Reason::Dependencies)
                        }),
                        ServiceChange::Unchanged => false,
                    })
            }
        }
    }

    /// One line: e.g. `prometheus: recreated; tracker: unchanged`.
    pub fn summary(&self) -> String {
        let services = self.services();
        let line = services
            .iter()
            .map(|(name, change)| format!("{name}: {}", change.verb()))
            .collect::<Vec<_>>()
            .join("; ");
        match (&self.base, &self.current) {
            (_, None) => "removed environment".into(),
            (None, Some(_)) => format!("new environment — {line}"),
            _ if !self.is_changed() => "no changes".into(),
            _ if services
                .iter()
                .all(|(_, change)| *change == ServiceChange::Unchanged) =>
            {
                format!("{line} (files change, no service does)")
            }
            _ => line,
        }
    }

    /// The service table, and the stack's network and volume changes.
    fn table(&self) -> String {
        let before = self.base.as_ref().map(|r| &r.stack);
        let after = self.current.as_ref().map(|r| &r.stack);
        let mut out = String::from("| service | change | details |\n|---|---|---|\n");
        for (name, change) in self.services() {
            let details = details(
                &change,
                before.and_then(|s| s.service(&name)),
                after.and_then(|s| s.service(&name)),
            );
            let _ = writeln!(
                out,
                "| {name} | {} | {} |",
                change.verb(),
                details.replace('|', "\\|")
            );
        }
        out.push('\n');
        let empty = Vec::new();
        for (what, before, after) in [
            (
                "Networks",
                before.map_or(&empty, |s| &s.networks),
                after.map_or(&empty, |s| &s.networks),
            ),
            (
                "Volumes",
                before.map_or(&empty, |s| &s.volumes),
                after.map_or(&empty, |s| &s.volumes),
            ),
        ] {
            let changes = set_changes(before, after);
            if !changes.is_empty() {
                let _ = writeln!(out, "{what}: {changes}\n");
            }
        }
        out
    }
}

/// The table's details of a service: its image and published ports when added
/// or removed; why it is recreated, with image and published-port changes.
fn details(change: &ServiceChange, before: Option<&Service>, after: Option<&Service>) -> String {
    let image_and_ports = |service: &Service, verb: &str| {
        let mut text = format!("`{}`", service.image);
        let ports: Vec<_> = published(&service.ports)
            .iter()
            .map(|p| format!("`{p}`"))
            .collect();
        if !ports.is_empty() {
            let _ = write!(text, "; {verb} {}", ports.join(", "));
        }
        text
    };
    match (change, before, after) {
        (ServiceChange::Added, _, Some(after)) => image_and_ports(after, "publishes"),
        (ServiceChange::Removed, Some(before), _) => image_and_ports(before, "published"),
        (ServiceChange::Recreated(reasons), Some(before), Some(after)) => reasons
            .iter()
            .map(|reason| match *reason {
                Reason::Image => format!("image `{}` → `{}`", before.image, after.image),
                Reason::Ports => {
                    let changes = set_changes(&published(&before.ports), &published(&after.ports));
                    // Only a port's note (a comment in the compose file) may differ.
                    if changes.is_empty() {
                        "ports".into()
                    } else {
                        format!("ports {changes}")
                    }
                }
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    }
}

/// Published ports as `host:port→target/protocol`, sorted.
fn published(ports: &[Port]) -> BTreeSet<String> {
    ports.iter().map(port_label).collect()
}

fn port_label(port: &Port) -> String {
    let protocol = match port.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    format!(
        "{}→{}/{protocol}",
        SocketAddr::new(port.host_ip, port.published),
        port.target
    )
}

/// `+added −removed` between two lists, each item in backticks.
fn set_changes<'a>(
    before: impl IntoIterator<Item = &'a String>,
    after: impl IntoIterator<Item = &'a String>,
) -> String {
    let before: BTreeSet<_> = before.into_iter().collect();
    let after: BTreeSet<_> = after.into_iter().collect();
    after
        .difference(&before)
        .map(|item| format!("+`{item}`"))
        .chain(before.difference(&after).map(|item| format!("−`{item}`")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a file change means from the plan's side (the render is the new state).
fn verb(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Missing => "added",
        ChangeKind::Orphaned => "removed",
        ChangeKind::Changed => "changed",
    }
}

/// A code fence longer than any run of backticks in `text`, so it cannot end early.
fn fence(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// A Mermaid flowchart of a stack: services with their images, published ports
/// as edges from the host (loopback) or the internet, dependencies, networks.
fn mermaid(stack: &Stack) -> String {
    let id = |prefix: &str, name: &str| {
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("{prefix}_{name}")
    };
    let mut out = String::from("```mermaid\nflowchart LR\n");
    let ports = || {
        stack
            .services
            .iter()
            .flat_map(|s| s.ports.iter().map(move |p| (s, p)))
    };
    for (node, label, loopback) in [("internet", "internet", false), ("host", "host", true)] {
        if ports().any(|(_, p)| p.host_ip.is_loopback() == loopback) {
            let _ = writeln!(out, "    {node}((\"{label}\"))");
        }
    }
    for service in &stack.services {
        let _ = writeln!(
            out,
            "    {}[\"{}<br/>{}\"]",
            id("svc", &service.name),
            mermaid_text(&service.name),
            mermaid_text(&service.image)
        );
    }
    for network in &stack.networks {
        let _ = writeln!(
            out,
            "    {}{{{{\"network {}\"}}}}",
            id("net", network),
            mermaid_text(network)
        );
    }
    for (service, port) in ports() {
        let from = if port.host_ip.is_loopback() {
            "host"
        } else {
            "internet"
        };
        let _ = writeln!(
            out,
            "    {from} -->|\"{}\"| {}",
            mermaid_text(&port_label(port)),
            id("svc", &service.name)
        );
    }
    for service in &stack.services {
        for dependency in &service.depends_on {
            let _ = writeln!(
                out,
                "    {} -.->|\"depends on ({})\"| {}",
                id("svc", &service.name),
                if dependency.healthy {
                    "healthy"
                } else {
                    "started"
                },
                id("svc", &dependency.service)
            );
        }
        for network in &service.networks {
            let _ = writeln!(
                out,
                "    {} --- {}",
                id("svc", &service.name),
                id("net", network)
            );
        }
    }
    out.push_str("```\n");
    out
}

/// Text inside a quoted Mermaid label, with its special characters as entities.
fn mermaid_text(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::test_environment;
    use crate::render::{self, Templates};

    fn rendered(prometheus: &str) -> Rendered {
        render::render(
            &test_environment(prometheus),
            &Templates::load(None).unwrap(),
        )
        .unwrap()
    }

    /// The output directory at the base, holding `env`'s render.
    fn committed(env: &str, rendered: &Rendered) -> Tree {
        let mut tree = Tree::default();
        for (path, bytes) in rendered.tree.iter() {
            tree.insert(format!("{env}/{path}"), bytes);
        }
        tree
    }

    /// The plan of environment `test` going from `base` to `now`.
    fn plan_between(base: &Rendered, now: Rendered) -> Plan {
        Plan::new(
            "main",
            "build",
            &committed("test", base),
            vec![("test".into(), now)],
            true,
        )
        .unwrap()
    }

    #[test]
    fn a_config_change_recreates_only_its_service() {
        let base = rendered(r#""prometheus": { "scrape_interval": 15 },"#);
        let now = rendered(r#""prometheus": { "scrape_interval": 30 },"#);
        let plan = plan_between(&base, now);
        let env = &plan.environments[0];
        assert_eq!(env.summary(), "prometheus: recreated; tracker: unchanged");
        assert!(!env.topology_changed());
        let markdown = plan.markdown();
        assert!(markdown.contains("| prometheus | recreated | config |"));
        assert!(!markdown.contains("```mermaid"));
        assert_eq!(plan.changed(), ["test"]);
    }

    #[test]
    fn removing_a_service_changes_the_topology() {
        let base = rendered(r#""prometheus": {},"#);
        let now = rendered("");
        let plan = plan_between(&base, now);
        let env = &plan.environments[0];
        assert_eq!(
            env.summary(),
            "prometheus: removed; tracker: recreated",
            "the tracker leaves the metrics network"
        );
        let markdown = plan.markdown();
        assert!(
            markdown.contains("| tracker | recreated | networks |"),
            "{markdown}"
        );
        assert!(markdown.contains("Networks: −`metrics`"), "{markdown}");
        assert!(markdown.contains("```mermaid\nflowchart LR\n"));
        assert!(markdown.contains("internet -->|\"0.0.0.0:6969→6969/udp\"| svc_tracker"));
    }

    #[test]
    fn new_removed_and_unchanged_environments() {
        let one = rendered("");
        let mut at_base = committed("same", &one);
        for (path, bytes) in committed("gone", &one).iter() {
            at_base.insert(path, bytes);
        }
        let plan = Plan::new(
            "main",
            "build",
            &at_base,
            vec![("same".into(), one.clone()), ("fresh".into(), one)],
            true,
        )
        .unwrap();
        let lines: Vec<_> = plan
            .environments
            .iter()
            .map(|e| format!("{}: {}", e.name, e.summary()))
            .collect();
        assert_eq!(
            lines,
            [
                "fresh: new environment — tracker: added",
                "gone: removed environment",
                "same: no changes"
            ]
        );
        assert_eq!(plan.changed(), ["fresh", "gone"]);
    }

    #[test]
    fn a_long_plan_leaves_out_the_largest_diffs_first() {
        let now = rendered("");
        let mut at_base = committed("test", &now);
        at_base.insert("test/big.txt", "x\n".repeat(50_000));
        at_base.insert("test/small.txt", "y\n");
        let plan = Plan::new("main", "build", &at_base, vec![("test".into(), now)], true).unwrap();
        let full = plan.markdown();
        assert!(full.len() > 100_000);
        let short = plan.markdown_within(10_000, "the job summary");
        assert!(short.len() <= 10_000);
        assert!(short.contains("The full plan is in the job summary."));
        assert!(short.contains("Diff left out (50003 lines): see the job summary."));
        assert!(
            short.contains("+++ /dev/null\n@@ -1 +0,0 @@\n-y\n"),
            "{short}"
        );
        assert!(short.contains("**test**: tracker: unchanged (files change, no service does)"));
        let tiny = plan.markdown_within(100, "x");
        assert!(tiny.len() <= 100 && tiny.ends_with("…(cut)\n"));
    }

    #[test]
    fn fences_outgrow_backticks_in_the_text() {
        assert_eq!(fence("a ``` b"), "````");
        assert_eq!(fence("plain"), "```");
    }
}
