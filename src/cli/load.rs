//! Loading environments for a command: their diagnostics printed for people
//! (and as annotations under GitHub Actions), the valid ones rendered.

use std::io::{self, IsTerminal};

use anyhow::Result;
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};

use super::args::{Branches, Selection};
use crate::actions;
use crate::diagnostic::FileReport;
use crate::environment::{self, Environment};
use crate::render::{self, Rendered, Templates};

/// Diagnostics on stderr: for people, plus workflow commands (annotations)
/// under GitHub Actions. Stdout carries a command's data only.
pub fn print_reports(reports: &[FileReport]) -> Result<()> {
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
    if actions::running() {
        let mut err = io::stderr().lock();
        for report in reports {
            actions::annotate(&mut err, report)?;
        }
    }
    Ok(())
}

/// Prints the diagnostics of checked files; `None` when any is invalid.
pub fn valid(checked: Vec<environment::Checked>) -> Result<Option<Vec<Environment>>> {
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

/// Validates and renders the selected environments in memory, printing any
/// diagnostics; `None` when an environment is invalid.
pub fn rendered(
    selection: &Selection,
    branches: &Branches,
) -> Result<Option<Vec<(Environment, Rendered)>>> {
    let checked = environment::check_selected(
        &selection.dirs.dir,
        &selection.names,
        &branches.namespace()?,
    )?;
    let Some(environments) = valid(checked)? else {
        return Ok(None);
    };
    let templates = Templates::load(selection.templates.as_deref())?;
    Ok(Some(render::render_all(environments, &templates)?))
}
