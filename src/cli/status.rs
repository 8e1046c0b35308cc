//! `status`: whether the VM runs the deploy branch's tip, unchanged and healthy.

use anyhow::Result;
use serde::Serialize;

use super::args::{Format, Output, Paths, Typed, VmTarget};
use super::{Conclusion, NotDone, json, vm};
use crate::deploy;
use crate::stack;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: VmTarget,
    #[command(flatten)]
    pub output: Output,
}

/// The JSON object.
#[derive(Serialize)]
struct Report<'a> {
    environment: &'a str,
    branch: &'a str,
    /// `in-sync` or `out-of-sync`.
    verdict: &'static str,
    deployed: Option<&'a str>,
    branch_tip: Option<&'a str>,
    services: &'a [deploy::Service],
    drift: &'a [deploy::Drift],
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        self.target.anchor(typed);
    }
}

pub fn run(args: &Args) -> Result<Conclusion> {
    let env = vm::load_target(&args.target)?;
    let connection = vm::connect(&args.target, &env)?;
    let branch = env.deploy_branch(&args.target.branches.branch_prefix);
    let root = &env.file.deploy.path;
    let Some(status) = deploy::status(&connection, root, &branch, &stack::DATA_DIRS)? else {
        return Err(NotDone(deploy::Outcome::Refused).into());
    };
    match args.output.format {
        Format::Human => print!("{}", status.text),
        Format::Json => json::print(&Report {
            environment: &env.name,
            branch: &branch,
            verdict: status.verdict.word(),
            deployed: status.deployed.as_deref(),
            branch_tip: status.branch_tip.as_deref(),
            services: &status.services,
            drift: &status.drift,
        })?,
    }
    Ok(match status.verdict {
        deploy::Verdict::InSync => Conclusion::Success,
        deploy::Verdict::OutOfSync => Conclusion::Failure,
    })
}
