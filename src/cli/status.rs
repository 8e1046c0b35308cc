//! `status`: whether the VM runs the deploy branch's tip, unchanged and healthy.

use anyhow::Result;

use super::Conclusion;
use super::args::{Paths, Typed, VmTarget};
use super::vm;
use crate::deploy;
use crate::stack;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: VmTarget,
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
    match deploy::status(&connection, root, &branch, &stack::DATA_DIRS)? {
        Some(deploy::Verdict::InSync) => Ok(Conclusion::Success),
        Some(deploy::Verdict::OutOfSync) => Ok(Conclusion::Failure),
        None => anyhow::bail!("status failed on the VM (see above)"),
    }
}
