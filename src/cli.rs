//! The command line: parsing, output streams and exit codes. Each command is a few
//! lines over the library.
//!
//! Exit codes, everywhere: 0 success or up to date; 1 the thing checked is wrong
//! (invalid file, drift, failed deploy); 2 the tool could not do its job.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};

use crate::diagnostic::FileReport;
use crate::environment::{self, Environment};

#[derive(Debug, Parser)]
#[command(name = "tracker-gitops", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check environment files against the schema and the stack rules.
    Validate {
        /// Files to check (default: every *.json in the environments directory).
        files: Vec<PathBuf>,
        #[command(flatten)]
        dirs: Environments,
        /// Output format of the diagnostics.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Write a complete environment file with the defaults filled in.
    Init {
        /// Environment name: lowercase letters, digits and dashes.
        name: String,
        #[command(flatten)]
        dirs: Environments,
    },
    /// Print the JSON Schema that environment files are validated against.
    Schema,
}

#[derive(Debug, clap::Args)]
struct Environments {
    /// Directory holding the environment files.
    #[arg(
        long = "environments",
        value_name = "DIR",
        default_value = "environments"
    )]
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

/// What a command concluded, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Validate {
            files,
            dirs,
            format,
        } => validate(files, &dirs.dir, format),
        Command::Init { name, dirs } => init(&name, &dirs.dir),
        Command::Schema => {
            io::stdout().write_all(environment::schema::SCHEMA.as_bytes())?;
            Ok(Outcome::Success)
        }
    }
}

fn validate(files: Vec<PathBuf>, dir: &std::path::Path, format: Format) -> Result<Outcome> {
    let files = if files.is_empty() {
        environment::discover(dir)?
    } else {
        files
    };
    let reports = files
        .iter()
        .map(|path| environment::check_file(path).map(|c| c.report))
        .collect::<Result<Vec<_>, _>>()?;
    match format {
        Format::Human => print_reports(&reports)?,
        Format::Json => {
            let all: Vec<_> = reports.iter().flat_map(FileReport::located).collect();
            let mut out = io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
        }
    }
    let invalid = reports.iter().filter(|r| r.has_errors()).count();
    if format == Format::Human {
        eprintln!(
            "{} file{} checked: {}",
            reports.len(),
            plural(reports.len()),
            if invalid == 0 {
                "all valid".to_string()
            } else {
                format!("{invalid} invalid")
            }
        );
    }
    Ok(if invalid == 0 {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

fn init(name: &str, dir: &std::path::Path) -> Result<Outcome> {
    if let Some(problem) = environment::check_name(name) {
        anyhow::bail!("{}", problem.message);
    }
    let path = environment::init(dir, name)?;
    eprintln!("wrote {}", path.display());
    Ok(Outcome::Success)
}

/// Diagnostics for people on stderr, plus workflow commands on stdout under GitHub Actions.
fn print_reports(reports: &[FileReport]) -> Result<()> {
    let terminal = io::stderr().is_terminal();
    let color = if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) || !terminal {
        ColorChoice::Never
    } else {
        ColorChoice::Auto
    };
    let mut err = StandardStream::stderr(color);
    for report in reports {
        report.write_human(&mut err, terminal)?;
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        let mut out = io::stdout().lock();
        for report in reports {
            report.write_github(&mut out)?;
        }
    }
    Ok(())
}

/// Loads and validates files, printing their diagnostics; `None` when any is invalid.
pub fn load_valid(files: &[PathBuf]) -> Result<Option<Vec<Environment>>> {
    let checked = files
        .iter()
        .map(|path| environment::check_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    let (reports, environments): (Vec<_>, Vec<_>) = checked
        .into_iter()
        .map(|c| (c.report, c.environment))
        .unzip();
    let printable: Vec<_> = reports
        .into_iter()
        .filter(|r| !r.diagnostics.is_empty())
        .collect();
    print_reports(&printable)?;
    Ok(environments.into_iter().collect())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
