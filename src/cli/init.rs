//! `init`: write a complete environment file with the defaults filled in, and
//! with `--github` the workflows that run tracker-gitops in GitHub Actions;
//! every file written is named.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::Conclusion;
use super::args::{Environments, Paths, Typed};
use crate::diagnostic::display_path;
use crate::environment;
use crate::project;
use crate::workflows;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Environment name: lowercase letters, digits and dashes.
    #[arg(required_unless_present = "github")]
    name: Option<String>,
    /// Write the GitHub workflows (.github/workflows/gitops.yml and
    /// gitops-fork-comment.yml at the repository's top), using this version
    /// of the action.
    #[arg(long)]
    github: bool,
    #[command(flatten)]
    dirs: Environments,
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        self.dirs.anchor(typed);
    }
}

pub fn run(args: &Args) -> Result<Conclusion> {
    if let Some(name) = &args.name {
        environment_file(&args.dirs.dir, name)?;
    }
    if args.github {
        github()?;
    }
    if let Some(name) = &args.name {
        let file = display_path(args.dirs.dir.join(format!("{name}.json")));
        eprintln!(
            "next: set `deploy` in {file} to your VM (`validate` lists what is not configured \
             yet), then `tracker-gitops render` and commit environments/, schema/ and build/"
        );
    }
    Ok(Conclusion::Success)
}

fn environment_file(dir: &Path, name: &str) -> Result<()> {
    if let Some(problem) = environment::check_name(name) {
        anyhow::bail!("{}", problem.message);
    }
    project::refuse_inside_output(dir)?;
    project::refuse_inside_output(&project::normalize(
        &dir.join(environment::SCHEMA_REFERENCE),
    ))?;
    let written = environment::init(dir, name)?;
    eprintln!("wrote {}", display_path(&written.file));
    let schema = display_path(&written.schema);
    if written.schema_written {
        eprintln!("wrote {schema} (the JSON Schema the file's `$schema` names, for editors)");
    } else {
        eprintln!("kept {schema}: already this version's");
    }
    Ok(())
}

/// Writes the workflows at the top of the git work tree (GitHub reads them
/// only there), or here outside git.
fn github() -> Result<()> {
    let here = std::env::current_dir()?;
    let top = git2::Repository::discover(".")
        .ok()
        .and_then(|repo| repo.workdir().and_then(|dir| dir.canonicalize().ok()))
        .unwrap_or_else(|| here.clone());
    project::refuse_inside_output(&top.join(workflows::DIR))?;
    let written = workflows::write(&top, env!("CARGO_PKG_VERSION"))?;
    for path in &written {
        let shown: PathBuf = path.strip_prefix(&here).unwrap_or(path).to_path_buf();
        eprintln!("wrote {}", display_path(&shown));
    }
    if top != here {
        eprintln!(
            "note: the workflows run in the repository's top; set the action's \
             `working-directory` to {} (docs/github.md)",
            display_path(here.strip_prefix(&top).unwrap_or(&here))
        );
    }
    eprintln!(
        "next: pin the action to the commit of the v{} release (docs/github.md, \
         step 2) and create one GitHub environment per environment, holding its secrets",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}
