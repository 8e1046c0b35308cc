//! What `deploy`, `rollback` and `status` share: the target environment,
//! loaded and valid, the SSH connection to its VM, and the checks a commit
//! passes before the VM is touched: it is publish's work from a reviewed
//! source, and it loses no data that is not acknowledged.

use std::io::Write;

use anyhow::Result;

use super::args::{Checks, VmTarget};
use super::{Invalid, load};
use crate::deploy;
use crate::environment::{self, Environment};
use crate::git;
use crate::stack::loss::Gate;
use crate::verify::{self, Verified};

/// Loads and validates the target's environment, against all the others too;
/// invalid → [`Invalid`]. One whose VM settings are still placeholders is
/// refused: there is no VM to touch.
pub fn load_target(target: &VmTarget) -> Result<Environment> {
    let checked = environment::check_selected(
        &target.dirs.dir,
        std::slice::from_ref(&target.name),
        &target.branches.namespace()?,
    )?;
    match load::valid(checked)? {
        Some(mut environments) if environments.len() == 1 => {
            let env = environments.remove(0);
            env.configured()?;
            Ok(env)
        }
        _ => Err(Invalid.into()),
    }
}

pub fn connect(target: &VmTarget, env: &Environment) -> Result<deploy::Connection> {
    let identity = match &target.identity {
        Some(file) => deploy::Identity::File(file.clone()),
        None => std::env::var(deploy::KEY_VARIABLE)
            .ok()
            .filter(|key| !key.trim().is_empty())
            .map(deploy::Identity::Text)
            .ok_or(deploy::Error::NoKey)?,
    };
    Ok(deploy::Connection::new(&env.file.deploy, identity)?)
}

/// Where the VM gets the environment's deploy commits from.
pub struct Source {
    /// The repository the VM clones.
    pub repository: String,
    /// The environment's deploy branch.
    pub branch: String,
}

impl Source {
    pub fn new(target: &VmTarget, env: &Environment) -> Result<Self> {
        let repository = deploy::repository_url(
            target.repository.as_deref(),
            &env.file.deploy,
            std::path::Path::new("."),
        )?;
        let branch = env.deploy_branch(&target.branches.branch_prefix);
        Ok(Self { repository, branch })
    }
}

/// The commit to deploy (default: the deploy branch's tip), once it is
/// verified to be publish's work from a reviewed source.
pub fn verify(
    checks: &Checks,
    env: &Environment,
    source: &Source,
    commit: Option<&str>,
    progress: &mut dyn Write,
) -> Result<Verified> {
    // Paths inside the repository, as publish recorded them.
    let repo = git::repository()?;
    let in_repo = |path: &std::path::Path| git::repo_path(&repo, path);
    let verified = verify::verify(&verify::Request {
        repository: &source.repository,
        branch: &source.branch,
        source_branch: checks.source_branch.as_deref(),
        commit,
        environment: &env.name,
        environment_file: &in_repo(&env.path)?,
        output: &in_repo(&checks.out.join(&env.name))?,
    })?;
    writeln!(
        progress,
        "verified {}: published from {} on {}",
        verified.commit, verified.source_commit, verified.source_branch
    )?;
    // The VM checks out exactly the verified commit.
    Ok(verified)
}

/// How a refused data loss is acknowledged, for the refusal's hint.
pub enum Acknowledge<'a> {
    /// In the environment file (a deploy): reviewed in a pull request.
    InFile(&'a Environment),
    /// With `--acknowledge-data-loss ID` (a rollback).
    Flag,
}

/// Compares the stack of the verified commit with the one the VM runs
/// (`deployed`; `None`: nothing yet) and refuses, before the VM is touched, a
/// loss of data not acknowledged, or an acknowledgement of a loss that this
/// deploy does not make. The acknowledged losses are printed, loudly.
pub fn check_data_loss(
    verified: &Verified,
    deployed: Option<&str>,
    acknowledged: Option<&[String]>,
    how: Acknowledge,
) -> Result<Gate> {
    let new = verified.stack_at(&verified.commit)?.ok_or_else(|| {
        anyhow::anyhow!(
            "refusing to deploy {}: it has no stack record (published by an older \
             tracker-gitops), so what it does to the data cannot be checked; publish it again",
            verified.commit
        )
    })?;
    let old = match deployed {
        Some(commit) => verified.stack_at(commit)?,
        None => None,
    };
    if deployed.is_some() && old.is_none() {
        eprintln!(
            "warning: the running commit has no stack record (rendered by an older \
             tracker-gitops): its data cannot be compared"
        );
    }
    let acknowledged = acknowledged.unwrap_or(&new.acknowledged_data_loss);
    let gate = Gate::between(old.as_ref(), &new, acknowledged);
    let commit = &verified.commit;
    for checked in &gate.losses {
        let loss = &checked.loss;
        let state = if checked.acknowledged {
            "acknowledged"
        } else {
            "NOT acknowledged"
        };
        eprintln!(
            "DATA LOSS ({state}) [{}]: {}\n  -> {}",
            loss.id, loss.change, loss.consequence
        );
    }
    let quoted = |ids: Vec<&String>| {
        ids.iter()
            .map(|id| format!("\"{id}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let who = match how {
        Acknowledge::InFile(env) => crate::diagnostic::display_path(&env.path),
        Acknowledge::Flag => "the command line".into(),
    };
    let missing: Vec<_> = gate.unacknowledged().map(|l| &l.id).collect();
    if !missing.is_empty() {
        let hint = match how {
            Acknowledge::InFile(_) => format!(
                "add to {who}, in a reviewed pull request: \"acknowledge_data_loss\": [{}]",
                quoted(missing)
            ),
            Acknowledge::Flag => missing
                .iter()
                .map(|id| format!("--acknowledge-data-loss '{id}'"))
                .collect::<Vec<_>>()
                .join(" "),
        };
        anyhow::bail!(
            "refusing to deploy {commit}: it loses data that {who} does not acknowledge \
             (above); nothing was changed on the VM. To deploy it anyway: {hint}"
        );
    }
    if !gate.stale.is_empty() {
        anyhow::bail!(
            "refusing to deploy {commit}: {who} acknowledges data losses this deploy does not \
             make: {}; nothing was changed on the VM. Remove them: an acknowledgement left in \
             would accept the same loss again later, unseen",
            quoted(gate.stale.iter().collect())
        );
    }
    Ok(gate)
}

/// What runs before a deploy that loses acknowledged data, on the VM it is
/// about to change.
pub fn before_data_loss(env: &Environment, gate: &Gate) -> Result<()> {
    if gate.losses.is_empty() {
        return Ok(());
    }
    // TODO(backup): take a backup first when the environment has a `backup`
    // section, and stop when it fails (issue 11, the `backup` op).
    eprintln!(
        "warning: {} has no backup section: no backup is taken before this loss",
        env.name
    );
    Ok(())
}
