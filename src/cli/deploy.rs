//! `deploy`: run an environment's verified deploy-branch commit on its VM,
//! and how a deploy or rollback reports its result.

use std::io;

use anyhow::Result;

use super::Conclusion;
use super::args::{Checks, Paths, Rollout, Typed, VmTarget};
use super::vm;
use crate::deploy;
use crate::environment::Environment;
use crate::stack;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: VmTarget,
    /// Deploy this commit of the deploy branch (default: the branch tip).
    #[arg(long, value_name = "SHA")]
    commit: Option<String>,
    #[command(flatten)]
    checks: Checks,
    #[command(flatten)]
    rollout: Rollout,
    /// Deploy even a commit older than the one running (a downgrade).
    #[arg(long)]
    allow_downgrade: bool,
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        self.target.anchor(typed);
        self.checks.anchor(typed);
    }
}

pub fn run(args: &Args) -> Result<Conclusion> {
    let env = vm::load_target(&args.target)?;
    // Before connecting: a deploy without its secrets would only fail on the VM.
    let secrets = deploy::Secrets::collect(&env, |name| std::env::var(name).ok())?;
    let source = vm::Source::new(&args.target, &env)?;
    let verified = vm::verify(&args.checks, &env, &source, args.commit.as_deref())?;
    let connection = vm::connect(&args.target, &env)?;
    let deployed = deploy::deployed(&connection, &env.file.deploy.path)?.current;
    // Deploying the running commit again (a re-run) changes no data.
    if deployed.as_deref() != Some(verified.commit.as_str()) {
        let gate = vm::check_data_loss(
            &verified,
            deployed.as_deref(),
            None,
            vm::Acknowledge::InFile(&env),
        )?;
        vm::before_data_loss(&env, &gate)?;
    }
    let run = Run {
        env: &env,
        source: &source,
        commit: &verified.commit,
        rollout: &args.rollout,
        allow_downgrade: args.allow_downgrade,
        expect: Some(deployed.as_deref()),
    };
    run.on(&connection, deploy::SecretSource::Sent(&secrets))
}

/// One deploy request, as deploy and rollback make it.
pub struct Run<'a> {
    pub env: &'a Environment,
    pub source: &'a vm::Source,
    pub commit: &'a str,
    pub rollout: &'a Rollout,
    pub allow_downgrade: bool,
    /// The commit the VM must still run (`Some(None)`: none), as the data
    /// check saw it.
    pub expect: Option<Option<&'a str>>,
}

impl Run<'_> {
    /// Runs it on the VM and reports the result.
    pub fn on(
        &self,
        connection: &deploy::Connection,
        secrets: deploy::SecretSource,
    ) -> Result<Conclusion> {
        let health_url = stack::tracker_health_url(self.env);
        let caller = deploy::Caller::from_env(|name| std::env::var(name).ok());
        let request = deploy::Request {
            root: &self.env.file.deploy.path,
            repository: &self.source.repository,
            branch: &self.source.branch,
            commit: self.commit,
            pull: !self.rollout.no_pull,
            timeout: std::time::Duration::from_secs(self.rollout.timeout),
            health_url: &health_url,
            allow_downgrade: self.allow_downgrade,
            keep: &stack::DATA_DIRS,
            caller: &caller,
            lock_wait: deploy::LOCK_WAIT,
            expect: self.expect,
        };
        let report = deploy::deploy(connection, secrets, &request, &mut io::stdout())?;
        let sha = &report.sha;
        let name = &self.env.name;
        match report.outcome {
            deploy::Outcome::Deployed => println!("deployed {sha} to {name}"),
            deploy::Outcome::Noop => println!("already at {sha} and healthy"),
            deploy::Outcome::RolledBack => eprintln!("deploy failed, rolled back to {sha}"),
            deploy::Outcome::Failed => eprintln!("deploy of {sha} failed"),
            deploy::Outcome::RollbackFailed => eprintln!(
                "ROLLBACK FAILED: deploy of {} failed and so did the rollback to {sha}; \
                 {name} needs attention NOW",
                self.commit
            ),
            // Nothing was tried: the tool could not do its job (exit 2).
            deploy::Outcome::LockBusy => anyhow::bail!("deploy in progress: nothing done"),
            deploy::Outcome::Refused => {
                anyhow::bail!("the VM refused the deploy (see above): nothing done")
            }
        }
        let compose = report.compose();
        println!(
            "total {:.2}s: {:.2}s in docker compose (pull+up+health), {:.2}s ours",
            report.total.as_secs_f64(),
            compose.as_secs_f64(),
            report.total.saturating_sub(compose).as_secs_f64()
        );
        Ok(if report.outcome.success() {
            Conclusion::Success
        } else {
            Conclusion::Failure
        })
    }
}
