//! `render`: write each selected environment to `OUT/<env>/`, or with `--check`
//! compare OUT with a fresh render.

use std::io::{self, Write};

use anyhow::Result;

use super::args::{Branches, Paths, Selection, Typed};
use super::{Conclusion, Invalid, load};
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
    let mut out = io::stdout().lock();
    let mut drift = false;
    for ((_, result), (dir, on_disk)) in rendered.iter().zip(disk) {
        let changes = diff::compare(&result.tree, &on_disk);
        let label = display_path(&dir);
        if changes.is_empty() {
            writeln!(out, "{label}: up to date")?;
        } else if args.check {
            drift = true;
            output::write_drift(&mut out, &dir, &changes)?;
        } else {
            result.tree.replace_dir(&dir)?;
            writeln!(out, "{label}: written ({})", diff::summary(&changes))?;
        }
    }
    for orphan in orphans {
        let label = display_path(&orphan);
        if args.check {
            drift = true;
            writeln!(out, "{label}: orphaned (no environment file renders to it)")?;
        } else {
            output.remove(&orphan)?;
            writeln!(out, "{label}: removed (no environment file renders to it)")?;
        }
    }
    if drift {
        writeln!(out, "run `tracker-gitops render` and commit the result")?;
        return Ok(Conclusion::Failure);
    }
    Ok(Conclusion::Success)
}
