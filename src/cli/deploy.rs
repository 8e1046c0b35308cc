//! `deploy`: run an environment's verified deploy-branch commit on its VM,
//! and how a deploy or rollback reports its result.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use super::args::{Checks, Format, Output, Paths, Rollout, Typed, VmTarget};
use super::{Conclusion, NotDone, json, vm};
use crate::deploy;
use crate::environment::Environment;
use crate::stack;
use crate::verify::Verified;

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
    #[command(flatten)]
    pub output: Output,
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
    let format = args.output.format;
    let mut progress = json::progress(format);
    let verified = vm::verify(
        &args.checks,
        &env,
        &source,
        args.commit.as_deref(),
        &mut progress,
    )?;
    let connection = vm::connect(&args.target, &env)?;
    let deployed = deploy::deployed(&connection, &env.file.deploy.path)?.current;
    // Deploying the running commit again (a re-run) changes no data.
    if deployed.as_deref() != Some(verified.commit.as_str()) {
        let check = vm::check_data_loss(
            &verified,
            deployed.as_deref(),
            vm::Acknowledge::InFile(&env),
        )?;
        vm::before_data_loss(&env, &connection, &check, &mut progress)?;
    }
    let run = Run {
        env: &env,
        source: &source,
        verified: &verified,
        rollout: &args.rollout,
        allow_downgrade: args.allow_downgrade,
        format,
        expect: Some(deployed.as_deref()),
    };
    run.on(&connection, deploy::SecretSource::Sent(&secrets))
}

/// One deploy request, as deploy and rollback make it.
pub struct Run<'a> {
    pub env: &'a Environment,
    pub source: &'a vm::Source,
    pub verified: &'a Verified,
    pub rollout: &'a Rollout,
    pub allow_downgrade: bool,
    pub format: Format,
    /// The commit the VM must still run (`Some(None)`: none), as the data
    /// check saw it.
    pub expect: Option<Option<&'a str>>,
}

/// The JSON object of a deploy or rollback that ran on the VM.
#[derive(Serialize)]
struct Report<'a> {
    environment: &'a str,
    branch: &'a str,
    /// The verified commit asked for.
    commit: &'a str,
    source: Source<'a>,
    result: Outcome<'a>,
    steps: Vec<Step<'a>>,
    seconds: Seconds,
}

#[derive(Serialize)]
struct Source<'a> {
    commit: &'a str,
    branch: &'a str,
}

#[derive(Serialize)]
struct Outcome<'a> {
    outcome: &'static str,
    /// The commit the outcome is about (see the README).
    commit: &'a str,
}

#[derive(Serialize)]
struct Step<'a> {
    step: &'a str,
    seconds: f64,
}

#[derive(Serialize)]
struct Seconds {
    total: f64,
    compose: f64,
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
        let commit = self.verified.commit.as_str();
        let request = deploy::Request {
            root: &self.env.file.deploy.path,
            repository: &self.source.repository,
            branch: &self.source.branch,
            commit,
            pull: !self.rollout.no_pull,
            timeout: std::time::Duration::from_secs(self.rollout.timeout),
            health_url: &health_url,
            allow_downgrade: self.allow_downgrade,
            keep: &stack::DATA_DIRS,
            caller: &caller,
            lock_wait: deploy::LOCK_WAIT,
            expect: self.expect,
        };
        let mut progress = json::progress(self.format);
        let report = deploy::deploy(connection, secrets, &request, &mut progress)?;
        let sha = &report.sha;
        let name = &self.env.name;
        match report.outcome {
            deploy::Outcome::Deployed => writeln!(progress, "deployed {sha} to {name}")?,
            deploy::Outcome::Noop => writeln!(progress, "already at {sha} and healthy")?,
            deploy::Outcome::RolledBack => eprintln!("deploy failed, rolled back to {sha}"),
            deploy::Outcome::Failed => eprintln!("deploy of {sha} failed"),
            deploy::Outcome::RollbackFailed => eprintln!(
                "ROLLBACK FAILED: deploy of {commit} failed and so did the rollback to {sha}; \
                 {name} needs attention NOW"
            ),
            // Nothing was tried: the tool could not do its job (exit 2).
            outcome @ (deploy::Outcome::LockBusy | deploy::Outcome::Refused) => {
                return Err(NotDone(outcome).into());
            }
        }
        let compose = report.compose();
        let ours = report.total.saturating_sub(compose);
        writeln!(
            progress,
            "total {:.2}s: {:.2}s in docker compose (pull+up+health), {:.2}s ours",
            report.total.as_secs_f64(),
            compose.as_secs_f64(),
            ours.as_secs_f64()
        )?;
        if self.format == Format::Json {
            json::print(&Report {
                environment: name,
                branch: &self.source.branch,
                commit,
                source: Source {
                    commit: &self.verified.source_commit,
                    branch: &self.verified.source_branch,
                },
                result: Outcome {
                    outcome: report.outcome.word(),
                    commit: sha,
                },
                steps: report
                    .steps
                    .iter()
                    .map(|(step, took)| Step {
                        step,
                        seconds: seconds(*took),
                    })
                    .collect(),
                seconds: Seconds {
                    total: seconds(report.total),
                    compose: seconds(compose),
                },
            })?;
        }
        Ok(if report.outcome.success() {
            Conclusion::Success
        } else {
            Conclusion::Failure
        })
    }
}

/// Seconds, to the millisecond.
fn seconds(duration: std::time::Duration) -> f64 {
    duration.as_millis() as f64 / 1000.0
}
