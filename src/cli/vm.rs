//! What `deploy`, `rollback` and `status` share: the target environment,
//! loaded and valid, the SSH connection to its VM, and the checks a commit
//! passes before the VM is touched.

use std::io::Write;

use anyhow::Result;

use super::args::{Checks, VmTarget};
use super::{Invalid, load};
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
