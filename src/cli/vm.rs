//! What `deploy`, `rollback`, `status`, `backup` and `restore` share: the
//! target environment, loaded and valid, the SSH connection to its VM, the
//! checks a commit passes before the VM is touched (it is publish's work from
//! a reviewed source, and it loses no data that is not acknowledged), and how
//! a data op runs and reports.

use std::io::Write;

use anyhow::Result;
use serde_json::json;

use super::args::{Checks, DataTarget, Format, VmTarget};
use super::{Conclusion, Invalid, NotDone, json, load};
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

/// Where the acknowledged data losses come from (and so the refusal's hint).
pub enum Acknowledge<'a> {
    /// The environment file (a deploy), as the verified commit's stack
    /// records it: reviewed in a pull request.
    InFile(&'a Environment),
    /// `--acknowledge-data-loss ID`, repeated (a rollback).
    Flag(&'a [String]),
}

/// Compares the stack of the verified commit with the one the VM runs
/// (`deployed`; `None`: nothing yet) and refuses, before the VM is touched, a
/// loss of data not acknowledged, or an acknowledgement of a loss that this
/// deploy does not make. The acknowledged losses are printed, loudly.
pub fn check_data_loss(
    verified: &Verified,
    deployed: Option<&str>,
    how: Acknowledge,
) -> Result<DataCheck> {
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
    let acknowledged = match how {
        Acknowledge::InFile(_) => &new.acknowledged_data_loss,
        Acknowledge::Flag(ids) => ids,
    };
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
        Acknowledge::Flag(_) => "the command line".into(),
    };
    let missing: Vec<_> = gate.unacknowledged().map(|l| &l.id).collect();
    if !missing.is_empty() {
        let hint = match how {
            Acknowledge::InFile(_) => format!(
                "add to {who}, in a reviewed pull request: \"acknowledge_data_loss\": [{}]",
                quoted(missing)
            ),
            Acknowledge::Flag(_) => missing
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
    let can_back_up = old
        .as_ref()
        .is_some_and(|old| old.service(crate::stack::backup::SERVICE).is_some());
    Ok(DataCheck { gate, can_back_up })
}

/// What [`check_data_loss`] found.
pub struct DataCheck {
    pub gate: Gate,
    /// The running stack has the backup service, which can take a backup now.
    pub can_back_up: bool,
}

/// Before a deploy that loses acknowledged data: a verified backup of the
/// running stack's database, when it has the backup service (its
/// environment had a `backup` section); a backup that fails stops the
/// deploy before it changes anything. Without the service, a warning.
pub fn before_data_loss(
    env: &Environment,
    connection: &deploy::Connection,
    check: &DataCheck,
    progress: &mut dyn Write,
) -> Result<()> {
    if check.gate.losses.is_empty() {
        return Ok(());
    }
    if !check.can_back_up {
        eprintln!(
            "warning: no backup before this loss: the stack {} runs has no backup service \
             (no `backup` section when it was deployed)",
            env.name
        );
        return Ok(());
    }
    eprintln!("taking a backup of {} before the data loss", env.name);
    let caller = deploy::Caller::from_env(|name| std::env::var(name).ok());
    let health_url = crate::stack::tracker_health_url(env);
    let request = deploy::DataRequest {
        root: &env.file.deploy.path,
        caller: &caller,
        lock_wait: deploy::LOCK_WAIT,
        health_url: &health_url,
    };
    let report = deploy::backup(connection, &request, progress)?;
    match (report.outcome, report.backups.first()) {
        (deploy::DataOutcome::BackedUp, Some(backup)) => {
            eprintln!(
                "backed up {} of {}: {} database, rows {} (verified)",
                backup.name,
                env.name,
                backup.driver,
                deploy::rows_text(&backup.rows)
            );
            Ok(())
        }
        (outcome, _) => anyhow::bail!(
            "refusing to deploy: the backup before the data loss ended `{}`; nothing was \
             deployed",
            outcome.word()
        ),
    }
}

/// Runs a data op (backup, backups, restore) on the target's VM: its steps
/// and their times go to the progress stream; `report` prints the result for
/// people and gives the op's own fields, which `--format json` prints as one
/// object on stdout.
pub fn data_op(
    data: &DataTarget,
    op: deploy::DataOp,
    report: impl Fn(&Environment, &deploy::DataReport) -> serde_json::Value,
) -> Result<Conclusion> {
    let (target, format) = (&data.target, data.output.format);
    let env = load_target(target)?;
    let connection = connect(target, &env)?;
    let caller = deploy::Caller::from_env(|name| std::env::var(name).ok());
    let health_url = crate::stack::tracker_health_url(&env);
    let request = deploy::DataRequest {
        root: &env.file.deploy.path,
        caller: &caller,
        lock_wait: deploy::LOCK_WAIT,
        health_url: &health_url,
    };
    let mut progress = json::progress(format);
    let done = deploy::data_op(&connection, &request, op, &mut progress)?;
    let not_done = |outcome| Err(NotDone(outcome).into());
    let conclusion = match done.outcome {
        deploy::DataOutcome::BackedUp
        | deploy::DataOutcome::Listed
        | deploy::DataOutcome::Restored => Conclusion::Success,
        deploy::DataOutcome::Failed => Conclusion::Failure,
        // Nothing was tried: the tool could not do its job (exit 2).
        deploy::DataOutcome::Refused => return not_done(deploy::Outcome::Refused),
        deploy::DataOutcome::LockBusy => return not_done(deploy::Outcome::LockBusy),
    };
    let mut object = report(&env, &done);
    if format == Format::Json {
        object["result"] = json!(done.outcome.word());
        object["steps"] = done
            .steps
            .iter()
            .map(|(step, time)| json!({ "step": step, "seconds": time.as_secs_f64() }))
            .collect();
        object["total_seconds"] = json!(done.total.as_secs_f64());
        json::print(&object)?;
    }
    Ok(conclusion)
}
