//! `completions SHELL`: the shell's completion script, generated from the
//! same clap definitions the parser uses, so it never lags behind them.

use anyhow::Result;
use clap_complete::Shell;

use super::Conclusion;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete in (e.g. `tracker-gitops completions bash >
    /// ~/.local/share/bash-completion/completions/tracker-gitops`).
    shell: Shell,
}

pub fn run(args: &Args, mut command: clap::Command) -> Result<Conclusion> {
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Ok(Conclusion::Success)
}
