//! `validate`: check environment files against the schema and the stack rules.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::Conclusion;
use super::args::{Branches, Environments, Format, Output, Paths, Typed};
use super::json;
use super::load::print_reports;
use crate::diagnostic::{FileReport, Located, Severity};
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
    #[command(flatten)]
    pub output: Output,
}

/// The JSON object: each file with its diagnostics, then the counts.
#[derive(Serialize)]
struct Validated<'a> {
    files: Vec<File<'a>>,
    summary: Summary,
}

#[derive(Serialize)]
struct File<'a> {
    file: &'a str,
    valid: bool,
    diagnostics: Vec<Located<'a>>,
}

#[derive(Serialize)]
struct Summary {
    files: usize,
    invalid: usize,
    errors: usize,
    warnings: usize,
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
    let invalid = reports.iter().filter(|r| r.has_errors()).count();
    match args.output.format {
        Format::Human => {
            print_reports(&reports)?;
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
        Format::Json => json::print(&validated(&reports, invalid))?,
    }
    Ok(if invalid == 0 {
        Conclusion::Success
    } else {
        Conclusion::Failure
    })
}

fn validated(reports: &[FileReport], invalid: usize) -> Validated<'_> {
    let count = |severity| {
        reports
            .iter()
            .flat_map(|r| &r.diagnostics)
            .filter(|d| d.severity == severity)
            .count()
    };
    Validated {
        files: reports
            .iter()
            .map(|report| File {
                file: report.path(),
                valid: !report.has_errors(),
                diagnostics: report.located().collect(),
            })
            .collect(),
        summary: Summary {
            files: reports.len(),
            invalid,
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
        },
    }
}
