//! What `deploy`, `rollback`, `status`, `backup` and `restore` share: the
//! target environment, loaded and valid, the SSH connection to its VM, the
//! checks a commit passes before the VM is touched, and how a data op runs
//! and reports.

use std::io::Write;

use anyhow::Result;
use serde_json::json;

use super::args::{Checks, DataTarget, Format, VmTarget};
use super::{Conclusion, Invalid, NotDone, json, load};
use crate::deploy;
use crate::environment::{self, Environment};
use crate::git;
use crate::verify;

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
) -> Result<verify::Verified> {
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
