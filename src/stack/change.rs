//! What happens to each service between two versions of a stack, and why
//! compose recreates one, or keeps its container although its definition
//! changes: plans, commit messages and deploys report it.

use std::fmt;

use serde::Serialize;

use super::{Service, Stack};

/// What happens to a service between two versions of a stack; as data,
/// `{"change": "recreated", "reasons": ["config"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", content = "reasons", rename_all = "lowercase")]
pub enum ServiceChange {
    Added,
    Removed,
    /// Compose will recreate its container; the reasons name what differs.
    Recreated(Vec<Reason>),
    /// Its definition changes, but not what compose hashes: the container
    /// stays (only [`Reason::keeps_container`] reasons differ).
    Changed(Vec<Reason>),
    Unchanged,
}

impl ServiceChange {
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Recreated(_) => "recreated",
            Self::Changed(_) => "changed",
            Self::Unchanged => "unchanged",
        }
    }
}

/// What differs in a recreated service, in the order plans list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Image,
    /// The files under its bind mounts (the config hash).
    Config,
    /// Published ports, their notes aside.
    Ports,
    Environment,
    Volumes,
    Networks,
    Dependencies,
    Secrets,
    /// Command, tty or stop signal.
    Command,
    Healthcheck,
    /// The notes beside published ports: comments in the compose file.
    Notes,
}

impl Reason {
    /// Whether compose keeps the container when only this differs: it leaves
    /// `depends_on` out of a service's hash, and comments are not config.
    pub fn keeps_container(self) -> bool {
        matches!(self, Self::Dependencies | Self::Notes)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Image => "image",
            Self::Config => "config",
            Self::Ports => "ports",
            Self::Environment => "environment",
            Self::Volumes => "volumes",
            Self::Networks => "networks",
            Self::Dependencies => "dependencies",
            Self::Secrets => "secrets",
            Self::Command => "command",
            Self::Healthcheck => "healthcheck",
            Self::Notes => "port notes",
        })
    }
}

/// Every service of either stack, in the new stack's order then the removed
/// ones, with what happens to it. `old` is `None` for a new environment.
pub fn compare(old: Option<&Stack>, new: &Stack) -> Vec<(String, ServiceChange)> {
    let mut changes: Vec<(String, ServiceChange)> = new
        .services
        .iter()
        .map(|service| {
            let change = match old.and_then(|old| old.service(&service.name)) {
                None => ServiceChange::Added,
                Some(before) if before == service => ServiceChange::Unchanged,
                Some(before) => {
                    let reasons = differences(before, service);
                    if reasons.iter().all(|r| r.keeps_container()) {
                        ServiceChange::Changed(reasons)
                    } else {
                        ServiceChange::Recreated(reasons)
                    }
                }
            };
            (service.name.clone(), change)
        })
        .collect();
    if let Some(old) = old {
        changes.extend(
            old.services
                .iter()
                .filter(|s| new.service(&s.name).is_none())
                .map(|s| (s.name.clone(), ServiceChange::Removed)),
        );
    }
    changes
}

fn differences(a: &Service, b: &Service) -> Vec<Reason> {
    let published = |s: &Service| -> Vec<_> {
        s.ports
            .iter()
            .map(|p| (p.host_ip, p.published, p.target, p.protocol))
            .collect()
    };
    [
        (a.image != b.image, Reason::Image),
        (a.config_hash != b.config_hash, Reason::Config),
        (published(a) != published(b), Reason::Ports),
        (a.environment != b.environment, Reason::Environment),
        (a.volumes != b.volumes, Reason::Volumes),
        (a.networks != b.networks, Reason::Networks),
        (a.depends_on != b.depends_on, Reason::Dependencies),
        (a.secrets != b.secrets, Reason::Secrets),
        (
            a.command != b.command || a.tty != b.tty || a.stop_signal != b.stop_signal,
            Reason::Command,
        ),
        (a.healthcheck != b.healthcheck, Reason::Healthcheck),
        // Notes of the same ports: with other ports, `Ports` says it.
        (
            published(a) == published(b) && a.ports != b.ports,
            Reason::Notes,
        ),
    ]
    .into_iter()
    .filter_map(|(differs, reason)| differs.then_some(reason))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::test_environment;

    #[test]
    fn only_what_compose_hashes_recreates() {
        let old = Stack::build(&test_environment(r#""prometheus": {},"#));
        let mut new = old.clone();
        let prometheus = new.services.iter_mut().find(|s| s.name == "prometheus");
        let prometheus = prometheus.unwrap();
        prometheus.depends_on.clear();
        prometheus.ports[0].note = None;
        let changes = compare(Some(&old), &new);
        assert_eq!(
            changes[1],
            (
                "prometheus".to_string(),
                ServiceChange::Changed(vec![Reason::Dependencies, Reason::Notes])
            )
        );
        new.services[1].ports[0].published = 9091;
        assert_eq!(
            compare(Some(&old), &new)[1].1,
            ServiceChange::Recreated(vec![Reason::Ports, Reason::Dependencies])
        );
    }
}
