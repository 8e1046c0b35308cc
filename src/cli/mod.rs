//! The command line: one file per command, each holding its arguments (which
//! only parse) and its `run` (a few lines over the library). This file maps
//! what a command concluded to the exit code, for all of them:
//!
//! 0 success or up to date; 1 the thing checked is wrong (invalid file, drift,
//! failed deploy); 2 the tool could not do its job, or refused. One opt-in
//! swaps them, as terraform users expect: `plan --detailed-exitcode` exits 2
//! when there are changes and 1 when it could not plan.

mod args;
mod backup;
mod completions;
mod deploy;
mod init;
mod json;
mod load;
mod man;
mod plan;
mod publish;
mod render;
mod restore;
mod rollback;
mod schema;
mod status;
mod validate;
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::project::Root;
use args::{Format, Paths, Typed};

#[derive(Debug, Parser)]
// The last of a repeated flag wins (as in ripgrep): a caller such as the
// action's run.sh can set defaults that arguments after them override.
#[command(
    name = "tracker-gitops",
    version = env!("TRACKER_GITOPS_VERSION"),
    about,
    propagate_version = true,
    args_override_self = true
)]
struct Cli {
    /// Run as if started in DIR (like git -C and make -C); from there, the
    /// project root is found as git finds a work tree.
    #[arg(short = 'C', value_name = "DIR", global = true)]
    directory: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check environment files against the schema and the stack rules.
    Validate(validate::Args),
    /// Write a complete environment file with the defaults filled in (and
    /// with --github the GitHub workflows).
    Init(init::Args),
    /// Print the JSON Schema that environment files are validated against.
    Schema,
    /// Commit each rendered environment to its deploy branch (and push it).
    Publish(publish::Args),
    /// Show what merging would deploy: each environment's render at a base
    /// revision against a fresh one, as Markdown.
    Plan(plan::Args),
    /// Render environments into OUT/<env>/ (or, with --check, compare with it).
    Render(render::Args),
    /// Deploy an environment's deploy branch to its VM over SSH.
    Deploy(deploy::Args),
    /// Deploy again the commit the VM ran before, with the secrets it ran with.
    Rollback(rollback::Args),
    /// Ask the VM whether it runs the deploy branch's tip, unchanged and healthy.
    Status(status::Args),
    /// Take a verified backup of an environment's database now (--list: list them).
    Backup(backup::Args),
    /// Restore an environment's database from a backup, stopping only the tracker.
    Restore(restore::Args),
    /// Print the completion script for a shell.
    Completions(completions::Args),
    /// Print the manual page (roff).
    Man,
}

impl Command {
    /// The output format asked for; fatal errors are printed in it too.
    fn format(&self) -> Format {
        match self {
            Self::Validate(args) => args.output.format,
            Self::Plan(args) => args.output.format,
            Self::Render(args) => args.output.format,
            Self::Publish(args) => args.output.format,
            Self::Deploy(args) => args.output.format,
            Self::Rollback(args) => args.output.format,
            Self::Status(args) => args.output.format,
            Self::Backup(args) => args.data.output.format,
            Self::Restore(args) => args.data.output.format,
            Self::Init(_) | Self::Schema | Self::Completions(_) | Self::Man => Format::Human,
        }
    }

    /// The exit code when the tool could not do its job.
    fn error_code(&self) -> u8 {
        match self {
            Self::Plan(args) if args.detailed_exitcode => 1,
            _ => 2,
        }
    }
}

/// What a command concluded about the thing it checked or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conclusion {
    /// Exit 0.
    Success,
    /// Exit 1.
    Failure,
    /// Exit 2, only when asked for (`plan --detailed-exitcode`): there are changes.
    Changes,
}

/// Invalid environment files stop a command that needs valid ones; the
/// diagnostics are already printed (exit 2, no further message).
#[derive(Debug, thiserror::Error)]
#[error("invalid environment files")]
struct Invalid;

/// The VM did nothing: it refused the request (its reason is already
/// printed), or another deploy holds its lock.
#[derive(Debug, thiserror::Error)]
#[error("{}", match .0 {
    crate::deploy::Outcome::LockBusy => "deploy in progress: nothing done",
    _ => "the VM refused the request (see above): nothing done",
})]
struct NotDone(crate::deploy::Outcome);

pub fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (mut cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS;
            }
            if json::asked_for(std::env::args()) {
                let _ = json::print_usage_error(&e);
            }
            return ExitCode::from(2);
        }
    };
    let (format, error_code) = (cli.command.format(), cli.command.error_code());
    let root = match Root::enter(cli.directory.as_deref()) {
        Ok(root) => root,
        Err(e) => return failed(&e.into(), format, error_code),
    };
    if let Some((_, matches)) = matches.subcommand() {
        cli.command.anchor(&Typed {
            root: &root,
            matches,
        });
    }
    match run(cli) {
        Ok(Conclusion::Success) => ExitCode::SUCCESS,
        Ok(Conclusion::Failure) => ExitCode::from(1),
        Ok(Conclusion::Changes) => ExitCode::from(2),
        Err(e) => failed(&e, format, error_code),
    }
}

/// Reports an error that stopped a command, in its format, and exits `code`.
fn failed(e: &anyhow::Error, format: Format, code: u8) -> ExitCode {
    // Invalid files: their diagnostics are already printed. Library errors
    // carry their causes in their messages.
    if !e.is::<Invalid>() {
        eprintln!("error: {e}");
    }
    if format == Format::Json {
        let _ = json::print_error(e);
    }
    ExitCode::from(code)
}

impl Paths for Command {
    fn anchor(&mut self, typed: &Typed) {
        match self {
            Command::Validate(args) => args.anchor(typed),
            Command::Init(args) => args.anchor(typed),
            Command::Render(args) => args.anchor(typed),
            Command::Plan(args) => args.anchor(typed),
            Command::Publish(args) => args.anchor(typed),
            Command::Deploy(args) => args.anchor(typed),
            Command::Rollback(args) => args.anchor(typed),
            Command::Status(args) => args.anchor(typed),
            Command::Backup(args) => args.anchor(typed),
            Command::Restore(args) => args.anchor(typed),
            Command::Schema | Command::Completions(_) | Command::Man => {}
        }
    }
}

fn run(cli: Cli) -> Result<Conclusion> {
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Init(args) => init::run(&args),
        Command::Schema => schema::run(),
        Command::Render(args) => render::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Publish(args) => publish::run(&args),
        Command::Deploy(args) => deploy::run(&args),
        Command::Rollback(args) => rollback::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Backup(args) => backup::run(&args),
        Command::Restore(args) => restore::run(&args),
        Command::Completions(args) => completions::run(&args, Cli::command()),
        Command::Man => man::run(Cli::command()),
    }
}
