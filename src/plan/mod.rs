//! What merging would change, as a plain value: each environment's committed
//! render at a base revision (read from git: `base.rs`) against a fresh render.
//! Per environment: how many services are added, changed, recreated and
//! removed; what happens to each and why, and what a recreation costs; the
//! endpoints before and after (`endpoints.rs`); the networks and volumes, the
//! topology after deploy, and every file's diff. Services are compared
//! through the stack every render records, never by parsing YAML.
//! [`markdown`] shows a plan for people; it serializes as data too (the JSON
//! shape the README documents under "Machine-readable output").

mod base;
mod endpoints;
pub mod markdown;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use base::{default_base, tree_at};
pub use endpoints::{EndpointPlan, EndpointSide};

use crate::diff::{self, ChangeKind};
use crate::git;
use crate::render::{Rendered, STACK_FILE};
use crate::stack::loss::Gate;
use crate::stack::{self, Cost, Port, Reason, Service, ServiceChange, Stack};
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

/// Every selected environment, from the base to now.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The revision compared with, as given.
    pub base: String,
    /// The output directory inside the repository (e.g. `build`), in file paths.
    pub out: String,
    /// The names of the environments that change.
    pub changed: Vec<String>,
    /// The services of every environment, counted by what happens to them.
    pub counts: Counts,
    /// By name.
    pub environments: Vec<EnvironmentPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentPlan {
    pub name: String,
    /// From the environment file; `None` when it has none, or is gone.
    pub description: Option<String>,
    pub change: Change,
    pub counts: Counts,
    /// Every service at either side, by name.
    pub services: Vec<ServicePlan>,
    /// Every endpoint at either side, by kind.
    pub endpoints: Vec<EndpointPlan>,
    pub networks: SetChange,
    pub volumes: SetChange,
    /// The stack after deploy, when its services, published ports, networks or
    /// dependencies change. Only drawn: the data is the stack file's diff.
    #[serde(skip)]
    pub topology: Option<Stack>,
    /// The changes that lose data, and the acknowledgements that name none
    /// of them; shown before anything else.
    pub data_loss: Gate,
    /// The files that differ, by path.
    pub files: Vec<FilePlan>,
}

/// What happens to an environment or an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// There now, absent at the base.
    Added,
    /// At the base, gone now (an environment: no environment file renders to it).
    Removed,
    Changed,
    Unchanged,
}

/// Services by what happens to them, as terraform counts resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub add: usize,
    pub change: usize,
    pub recreate: usize,
    pub remove: usize,
}

/// An environment rendered now, as a plan takes it.
#[derive(Debug, Clone)]
pub struct Current {
    pub name: String,
    pub description: Option<String>,
    pub rendered: Rendered,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    pub name: String,
    #[serde(flatten)]
    pub change: ServiceChange,
    /// At the base; `None` when added.
    pub before: Option<ServiceState>,
    /// Now; `None` when removed.
    pub after: Option<ServiceState>,
    /// The changed files under its bind mounts (the `config` reason), by path.
    pub config_files: Vec<String>,
    /// What recreating it costs; empty unless it is recreated.
    pub costs: Vec<Cost>,
}

/// What a plan shows of a service at one side: its image and published ports.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceState {
    pub image: String,
    pub ports: Vec<Port>,
}

/// Names that appear and disappear, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SetChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilePlan {
    /// In the repository, e.g. `build/staging/docker-compose.yml`.
    pub path: String,
    pub change: ChangeKind,
    /// The tool's own record (`.tracker-gitops/`), not what the VM runs: left
    /// out of the Markdown, which shows what it records in other words.
    pub internal: bool,
    /// Unified, its header paths escaped.
    pub diff: String,
}

/// The plan from `at_base`, the output directory at `base` (one subdirectory
/// per environment), to `current`, the fresh renders. With `complete` (every
/// environment was rendered), one found only at the base was removed.
pub fn build(
    base: impl Into<String>,
    out: impl Into<String>,
    at_base: &Tree,
    current: Vec<Current>,
    complete: bool,
) -> Result<Plan, Error> {
    let (base, out) = (base.into(), out.into());
    let mut committed = base::by_environment(at_base);
    // Parsed only when planned: a selection says nothing about the others.
    let parse = |name: &str, tree| base::parse_committed(tree, &base, &env_dir(&out, name));
    let mut sides = Vec::new();
    for env in current {
        let before = committed
            .remove(env.name.as_str())
            .map(|tree| parse(&env.name, tree))
            .transpose()?;
        sides.push((env.name, env.description, before, Some(env.rendered)));
    }
    if complete {
        for (name, tree) in committed {
            sides.push((name.to_string(), None, Some(parse(name, tree)?), None));
        }
    }
    let mut environments: Vec<_> = sides
        .into_iter()
        .map(|(name, description, before, after)| {
            let dir = env_dir(&out, &name);
            let mut env = EnvironmentPlan::between(name, before.as_ref(), after.as_ref(), &dir);
            env.description = description;
            env
        })
        .collect();
    environments.sort_by(|a, b| a.name.cmp(&b.name));
    let changed = environments
        .iter()
        .filter(|env| env.is_changed())
        .map(|env| env.name.clone())
        .collect();
    let counts = environments.iter().map(|env| env.counts).sum();
    Ok(Plan {
        base,
        out,
        changed,
        counts,
        environments,
    })
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }
}

impl EnvironmentPlan {
    /// From the render at the base (`None`: new) to the fresh one (`None`:
    /// removed); `dir` is the environment's directory in the repository.
    fn between(
        name: String,
        before: Option<&Rendered>,
        after: Option<&Rendered>,
        dir: &str,
    ) -> Self {
        let files = files(before.map(|r| &r.tree), after.map(|r| &r.tree), dir);
        let (before, after) = (before.map(|r| &r.stack), after.map(|r| &r.stack));
        let mut services = services(before, after);
        for service in &mut services {
            if matches!(&service.change, ServiceChange::Recreated(r) if r.contains(&Reason::Config))
            {
                service.config_files = config_files(&service.name, before, after, &files, dir);
            }
        }
        let change = match (before, after) {
            (None, _) => Change::Added,
            (_, None) => Change::Removed,
            _ if files.is_empty() => Change::Unchanged,
            _ => Change::Changed,
        };
        let now = after.map_or(&[][..], |s| &s.endpoints);
        let topology = match (before, after) {
            (Some(before), Some(after))
                if before.networks == after.networks
                    && !services.iter().any(ServicePlan::changes_topology) =>
            {
                None
            }
            (_, after) => after.cloned(),
        };
        let data_loss = match after {
            Some(after) => Gate::between(before, after, &after.acknowledged_data_loss),
            None => Gate::default(),
        };
        Self {
            name,
            description: None,
            change,
            data_loss,
            counts: services.iter().map(|s| Counts::of(&s.change)).sum(),
            endpoints: endpoints::compare(
                &before.map_or_else(Vec::new, |s| endpoints::at_base(s, now)),
                now,
            ),
            networks: SetChange::of_stacks(before, after, |s| &s.networks),
            volumes: SetChange::of_stacks(before, after, |s| &s.volumes),
            services,
            topology,
            files,
        }
    }

    pub fn is_changed(&self) -> bool {
        self.change != Change::Unchanged
    }
}

impl Counts {
    fn of(change: &ServiceChange) -> Self {
        let mut counts = Self::default();
        match change {
            ServiceChange::Added => counts.add = 1,
            ServiceChange::Changed(_) => counts.change = 1,
            ServiceChange::Recreated(_) => counts.recreate = 1,
            ServiceChange::Removed => counts.remove = 1,
            ServiceChange::Unchanged => {}
        }
        counts
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl std::iter::Sum for Counts {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| Self {
            add: a.add + b.add,
            change: a.change + b.change,
            recreate: a.recreate + b.recreate,
            remove: a.remove + b.remove,
        })
    }
}

/// `0 to add, 0 to change, 1 to recreate, 0 to remove`, as terraform says it.
impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to add, {} to change, {} to recreate, {} to remove",
            self.add, self.change, self.recreate, self.remove
        )
    }
}

/// The files that differ from `before` to `after` (`None`: no files), with
/// `dir`, the environment's directory, in their paths.
fn files(before: Option<&Tree>, after: Option<&Tree>, dir: &str) -> Vec<FilePlan> {
    let empty = Tree::default();
    let prefix = format!("{dir}/");
    diff::compare(after.unwrap_or(&empty), before.unwrap_or(&empty))
        .iter()
        .map(|file| FilePlan {
            path: format!("{prefix}{}", file.path),
            change: file.kind,
            internal: Path::new(file.path).starts_with(internal_dir()),
            diff: diff::unified_diff(file, &prefix),
        })
        .collect()
}

/// Every service at either side with what happens to it, by name.
fn services(before: Option<&Stack>, after: Option<&Stack>) -> Vec<ServicePlan> {
    let mut changes = match after {
        Some(after) => stack::compare(before, after),
        None => before
            .iter()
            .flat_map(|stack| &stack.services)
            .map(|s| (s.name.clone(), ServiceChange::Removed))
            .collect(),
    };
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    let state = |stack: Option<&Stack>, name: &str| {
        stack
            .and_then(|stack| stack.service(name))
            .map(ServiceState::of)
    };
    changes
        .into_iter()
        .map(|(name, change)| {
            let costs = match (&change, after) {
                (ServiceChange::Recreated(_), Some(after)) => after
                    .service(&name)
                    .map(|service| stack::cost::of_recreating(after, service))
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            ServicePlan {
                before: state(before, &name),
                after: state(after, &name),
                name,
                change,
                config_files: Vec::new(),
                costs,
            }
        })
        .collect()
}

/// The files in `files` under the bind mounts of service `name` at either side.
fn config_files(
    name: &str,
    before: Option<&Stack>,
    after: Option<&Stack>,
    files: &[FilePlan],
    dir: &str,
) -> Vec<String> {
    let sources: Vec<String> = [before, after]
        .into_iter()
        .flatten()
        .filter_map(|stack| stack.service(name))
        .flat_map(Service::bind_sources)
        .map(|source| format!("{dir}/{source}/"))
        .collect();
    files
        .iter()
        .filter(|file| sources.iter().any(|source| file.path.starts_with(source)))
        .map(|file| file.path.clone())
        .collect()
}

impl ServicePlan {
    /// Whether the diagram of the stack changes with it.
    fn changes_topology(&self) -> bool {
        match &self.change {
            ServiceChange::Added | ServiceChange::Removed => true,
            ServiceChange::Recreated(reasons) => reasons
                .iter()
                .any(|r| matches!(r, Reason::Ports | Reason::Networks | Reason::Dependencies)),
            ServiceChange::Changed(_) | ServiceChange::Unchanged => false,
        }
    }
}

impl ServiceState {
    fn of(service: &Service) -> Self {
        Self {
            image: service.image.clone(),
            ports: service.ports.clone(),
        }
    }
}

impl SetChange {
    /// The names `of` lists in each stack (`None`: none).
    fn of_stacks(
        before: Option<&Stack>,
        after: Option<&Stack>,
        of: fn(&Stack) -> &Vec<String>,
    ) -> Self {
        Self::between(
            before.into_iter().flat_map(of),
            after.into_iter().flat_map(of),
        )
    }

    fn between<'a>(
        before: impl IntoIterator<Item = &'a String>,
        after: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let before: BTreeSet<_> = before.into_iter().collect();
        let after: BTreeSet<_> = after.into_iter().collect();
        Self {
            added: after.difference(&before).map(|s| s.to_string()).collect(),
            removed: before.difference(&after).map(|s| s.to_string()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The directory of the tool's own files in a render: the stack file's.
fn internal_dir() -> &'static Path {
    Path::new(STACK_FILE)
        .parent()
        .unwrap_or(Path::new(STACK_FILE))
}

/// An environment's directory in the repository, as shown.
fn env_dir(out: &str, name: &str) -> String {
    if out.is_empty() {
        name.to_string()
    } else {
        format!("{out}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::test_environment;
    use crate::render::{self, Templates};

    pub(super) fn rendered(prometheus: &str) -> Rendered {
        render::render(
            &test_environment(prometheus),
            &Templates::load(None).unwrap(),
        )
        .unwrap()
    }

    /// `rendered` as environment `name` now, without a description.
    pub(super) fn current(name: &str, rendered: Rendered) -> Current {
        Current {
            name: name.into(),
            description: None,
            rendered,
        }
    }

    /// The output directory at the base, holding `env`'s render.
    pub(super) fn committed(env: &str, rendered: &Rendered) -> Tree {
        let mut tree = Tree::default();
        for (path, bytes) in rendered.tree.iter() {
            tree.insert(format!("{env}/{path}"), bytes);
        }
        tree
    }

    /// The plan of environment `test` going from `base` to `now`.
    pub(super) fn plan_between(base: &Rendered, now: Rendered) -> Plan {
        build(
            "main",
            "build",
            &committed("test", base),
            vec![current("test", now)],
            true,
        )
        .unwrap()
    }

    fn changes(env: &EnvironmentPlan) -> Vec<(&str, &ServiceChange)> {
        env.services
            .iter()
            .map(|s| (s.name.as_str(), &s.change))
            .collect()
    }

    #[test]
    fn a_config_change_recreates_only_its_service() {
        let base = rendered(r#""prometheus": { "scrape_interval": 15 },"#);
        let now = rendered(r#""prometheus": { "scrape_interval": 30 },"#);
        let plan = plan_between(&base, now);
        let env = &plan.environments[0];
        assert_eq!(
            changes(env),
            [
                (
                    "prometheus",
                    &ServiceChange::Recreated(vec![Reason::Config])
                ),
                ("tracker", &ServiceChange::Unchanged)
            ]
        );
        assert!(env.topology.is_none());
        assert_eq!(env.change, Change::Changed);
        assert_eq!(plan.changed, ["test"]);
    }

    #[test]
    fn removing_a_service_changes_the_topology() {
        let base = rendered(r#""prometheus": {},"#);
        let now = rendered("");
        let plan = plan_between(&base, now);
        let env = &plan.environments[0];
        assert_eq!(
            changes(env),
            [
                ("prometheus", &ServiceChange::Removed),
                // It leaves the metrics network.
                ("tracker", &ServiceChange::Recreated(vec![Reason::Networks]))
            ]
        );
        assert_eq!(env.networks.removed, ["metrics"]);
        assert!(env.networks.added.is_empty());
        let after = env.topology.as_ref().expect("the topology changes");
        assert!(after.service("prometheus").is_none());
        assert_eq!(
            env.services[0].before.as_ref().unwrap().image,
            base.stack.service("prometheus").unwrap().image
        );
    }

    /// `fresh` is new, `gone` removed, `same` unchanged.
    pub(super) fn three_environments() -> Plan {
        let one = rendered("");
        let mut at_base = committed("same", &one);
        for (path, bytes) in committed("gone", &one).iter() {
            at_base.insert(path, bytes);
        }
        build(
            "main",
            "build",
            &at_base,
            vec![current("same", one.clone()), current("fresh", one)],
            true,
        )
        .unwrap()
    }

    #[test]
    fn new_removed_and_unchanged_environments() {
        let plan = three_environments();
        let envs: Vec<_> = plan
            .environments
            .iter()
            .map(|e| (e.name.as_str(), e.change, e.topology.is_some()))
            .collect();
        assert_eq!(
            envs,
            [
                ("fresh", Change::Added, true),
                ("gone", Change::Removed, false),
                ("same", Change::Unchanged, false)
            ]
        );
        assert_eq!(plan.changed, ["fresh", "gone"]);
        assert_eq!(
            changes(&plan.environments[1]),
            [("tracker", &ServiceChange::Removed)]
        );
        assert!(plan.environments[2].files.is_empty());
    }

    #[test]
    fn serializes_as_data() {
        let base = rendered(r#""prometheus": { "scrape_interval": 15 },"#);
        let now = rendered(r#""prometheus": { "scrape_interval": 30 },"#);
        let plan = plan_between(&base, now);
        let json = serde_json::to_value(&plan).unwrap();
        let env = &json["environments"][0];
        assert_eq!(env["change"], "changed");
        assert_eq!(env["services"][0]["change"], "recreated");
        assert_eq!(env["services"][0]["reasons"], serde_json::json!(["config"]));
        assert_eq!(env["services"][1]["change"], "unchanged");
        assert_eq!(
            env["files"][0]["path"],
            "build/test/.tracker-gitops/stack.json"
        );
        assert_eq!(env["files"][0]["change"], "changed");
        assert_eq!(env["files"][0]["internal"], true);
        assert_eq!(env["files"][1]["internal"], false);
        assert_eq!(env["counts"]["recreate"], 1);
    }
}
