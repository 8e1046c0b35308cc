//! `validate`: check environment files against the schema and the stack rules.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Result;

use super::Conclusion;
use super::args::{Branches, Environments, Format, Paths, Typed};
use super::load::print_reports;
use crate::diagnostic::FileReport;
use crate::environment;
use crate::text::plural;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to check (default: every *.json in the environments directory).
    files: Vec<PathBuf>,
    /// Check <environments>/NAME.json (repeatable), instead of FILES.
    #[arg(long = "env", value_name = "NAME", conflicts_with = "files")]
    names: Vec<String>,
    #[command(flatten)]
    dirs: Environments,
    #[command(flatten)]
    branches: Branches,
    /// Output format of the diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        self.dirs.anchor(typed);
        for file in &mut self.files {
            typed.path("files", file);
        }
    }
}

pub fn run(args: Args) -> Result<Conclusion> {
    let files = if args.files.is_empty() {
        environment::select(&args.dirs.dir, &args.names)?
    } else {
        args.files
    };
    let reports: Vec<_> = environment::check_files(&files, &args.branches.namespace()?)?
        .into_iter()
        .map(|c| c.report)
        .collect();
    match args.format {
        Format::Human => print_reports(&reports)?,
        Format::Json => {
            let all: Vec<_> = reports.iter().flat_map(FileReport::located).collect();
            let mut out = io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
        }
    }
    let invalid = reports.iter().filter(|r| r.has_errors()).count();
    if args.format == Format::Human {
        eprintln!(
            "{} {} checked: {}",
            reports.len(),
            plural(reports.len(), "file", "files"),
            if invalid == 0 {
                "all valid".to_string()
            } else {
                format!("{invalid} invalid")
            }
        );
    }
    Ok(if invalid == 0 {
        Conclusion::Success
    } else {
        Conclusion::Failure
    })
}
