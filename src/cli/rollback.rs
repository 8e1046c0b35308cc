//! `rollback`: a deploy of an older commit with the secrets the VM kept for
//! it (the CI job's secrets may be named differently by now).

use anyhow::Result;

use super::Conclusion;
use super::args::{Checks, Output, Paths, Rollout, Typed, VmTarget};
use super::deploy::Run;
use super::{json, vm};
use crate::deploy;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: VmTarget,
    /// Go back to this deployed commit (default: the newest one older than
    /// the running one).
    #[arg(long, value_name = "SHA")]
    to: Option<String>,
    #[command(flatten)]
    checks: Checks,
    #[command(flatten)]
    rollout: Rollout,
    /// Go back across a change that loses data: its id as the refusal names
    /// it (repeat for each). The commit rolled back to cannot acknowledge
    /// it: it was reviewed for the way forward.
    #[arg(long, value_name = "ID")]
    acknowledge_data_loss: Vec<String>,
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
    let target = &args.target;
    let env = vm::load_target(target)?;
    let source = vm::Source::new(target, &env)?;
    // The same checks as a deploy's, before the VM is touched: with --to
    // before anything connects, else once the VM said which commit it ran
    // before (a question that changes nothing).
    let format = args.output.format;
    let verify = |commit: &str| {
        vm::verify(
            &args.checks,
            &env,
            &source,
            Some(commit),
            &mut json::progress(format),
        )
    };
    let early = args.to.as_deref().map(verify).transpose()?;
    let connection = vm::connect(target, &env)?;
    let deployed = deploy::deployed(&connection, &env.file.deploy.path)?;
    let verified = match early {
        Some(verified) => verified,
        None => verify(deployed.previous.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "nothing to roll back to: the VM keeps no older deployed commit with its secrets"
            )
        })?)?,
    };
    let check = vm::check_data_loss(
        &verified,
        deployed.current.as_deref(),
        vm::Acknowledge::Flag(&args.acknowledge_data_loss),
    )?;
    vm::before_data_loss(&env, &connection, &check, &mut json::progress(format))?;
    eprintln!("rolling back {} to {}", env.name, verified.commit);
    let run = Run {
        env: &env,
        source: &source,
        verified: &verified,
        rollout: &args.rollout,
        allow_downgrade: true,
        format,
        expect: Some(deployed.current.as_deref()),
    };
    run.on(&connection, deploy::SecretSource::Stored)
}
