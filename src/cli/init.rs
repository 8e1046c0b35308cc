//! `init`: write a complete environment file with the defaults filled in.

use anyhow::Result;

use super::Conclusion;
use super::args::Environments;
use crate::environment;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Environment name: lowercase letters, digits and dashes.
    name: String,
    #[command(flatten)]
    dirs: Environments,
}

pub fn run(args: &Args) -> Result<Conclusion> {
    if let Some(problem) = environment::check_name(&args.name) {
        anyhow::bail!("{}", problem.message);
    }
    let path = environment::init(&args.dirs.dir, &args.name)?;
    eprintln!("wrote {}", path.display());
    Ok(Conclusion::Success)
}
