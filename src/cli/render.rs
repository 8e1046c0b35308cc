//! `render`: write each selected environment to `OUT/<env>/`, or with `--check`
//! compare OUT with a fresh render; with `--format json`, what it found as
//! one object instead of lines for people.

use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

use super::args::{Branches, Format, Output as OutputFormat, Paths, Selection, Typed};
use super::{Conclusion, Invalid, json, load};
use crate::diagnostic::display_path;
use crate::diff;
use crate::output::{self, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    selection: Selection,
    #[command(flatten)]
    branches: Branches,
    /// Write nothing; exit 1 when OUT differs from a fresh render.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    pub output: OutputFormat,
}

/// What `--format json` prints.
#[derive(Serialize)]
struct Report {
    check: bool,
    /// OUT was already what render writes.
    up_to_date: bool,
    environments: Vec<EnvironmentReport>,
    /// Directories no environment file renders to (only when all are selected).
    orphans: Vec<OrphanReport>,
}

#[derive(Serialize)]
struct EnvironmentReport {
    environment: String,
    directory: String,
    state: State,
    /// What differed, by path in the environment's directory.
    files: Vec<FileReport>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
enum State {
    UpToDate,
    /// `--check`: OUT differs.
    OutOfDate,
    Written,
}

#[derive(Serialize)]
struct FileReport {
    path: String,
    /// What writing the render does (or did) to it, in the words of
    /// publish's JSON: `create`, `update` or `delete`.
    change: &'static str,
    /// With `--check`: the unified diff from OUT to the render.
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
}

#[derive(Serialize)]
struct OrphanReport {
    directory: String,
    /// Removed by this run (never with `--check`).
    deleted: bool,
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        self.selection.anchor(typed);
    }
}

pub fn run(args: &Args) -> Result<Conclusion> {
    let Some(rendered) = load::rendered(&args.selection, &args.branches)? else {
        eprintln!(
            "nothing {}: fix the errors above first",
            if args.check { "checked" } else { "written" }
        );
        return Err(Invalid.into());
    };
    let json = args.output.format == Format::Json;
    let output = Output::new(&args.selection.out);
    // Orphans only when all environments are selected.
    let orphans = if args.selection.names.is_empty() {
        let names: Vec<_> = rendered.iter().map(|(env, _)| env.name.as_str()).collect();
        output.orphans(&names)?
    } else {
        Vec::new()
    };
    // Everything is read before anything is written: a directory that cannot
    // be read (a symbolic link in it, say) stops the run with build/ untouched.
    let disk = rendered
        .iter()
        .map(|(env, _)| output.read(&env.name))
        .collect::<Result<Vec<_>, _>>()?;
    // People read lines on stdout; with JSON stdout holds the object alone.
    let mut out: Box<dyn Write> = if json {
        Box::new(io::sink())
    } else {
        Box::new(io::stdout().lock())
    };
    let mut report = Report {
        check: args.check,
        up_to_date: true,
        environments: Vec::new(),
        orphans: Vec::new(),
    };
    for ((env, result), (dir, on_disk)) in rendered.iter().zip(disk) {
        let changes = diff::compare(&result.tree, &on_disk);
        let label = display_path(&dir);
        let state = if changes.is_empty() {
            writeln!(out, "{label}: up to date")?;
            State::UpToDate
        } else if args.check {
            output::write_drift(&mut out, &dir, &changes)?;
            State::OutOfDate
        } else {
            result.tree.replace_dir(&dir)?;
            writeln!(
                out,
                "{label}: written ({})",
                diff::summary(&changes, diff::Tense::Done)
            )?;
            State::Written
        };
        let prefix = format!("{}/", dir.display());
        report.up_to_date &= changes.is_empty();
        report.environments.push(EnvironmentReport {
            environment: env.name.clone(),
            directory: dir.display().to_string(),
            state,
            files: changes
                .iter()
                .map(|change| FileReport {
                    path: change.path.to_string(),
                    change: change.kind.verb(),
                    diff: args.check.then(|| diff::unified_diff(change, &prefix)),
                })
                .collect(),
        });
    }
    for orphan in orphans {
        let label = display_path(&orphan);
        report.up_to_date = false;
        if args.check {
            writeln!(
                out,
                "{label}: to delete (no environment file renders to it)"
            )?;
        } else {
            output.remove(&orphan)?;
            writeln!(out, "{label}: removed (no environment file renders to it)")?;
        }
        report.orphans.push(OrphanReport {
            directory: orphan.display().to_string(),
            deleted: !args.check,
        });
    }
    let drift = args.check && !report.up_to_date;
    if drift {
        writeln!(out, "run `tracker-gitops render` and commit the result")?;
    }
    drop(out);
    if json {
        json::print(&report)?;
    }
    Ok(if drift {
        Conclusion::Failure
    } else {
        Conclusion::Success
    })
}
