//! What happens to each service between two versions of a stack, and why
//! compose recreates one: plans, commit messages and deploys report it.

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
    Unchanged,
}

impl ServiceChange {
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Recreated(_) => "recreated",
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
    Ports,
    Environment,
    Volumes,
    Networks,
    Dependencies,
    Secrets,
    /// Command, tty or stop signal.
    Command,
    Healthcheck,
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
                Some(before) => ServiceChange::Recreated(differences(before, service)),
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
    [
        (a.image != b.image, Reason::Image),
        (a.config_hash != b.config_hash, Reason::Config),
        (a.ports != b.ports, Reason::Ports),
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
    ]
    .into_iter()
    .filter_map(|(differs, reason)| differs.then_some(reason))
    .collect()
}
