//! `import`: an environment file of the upstream deployer becomes one of ours,
//! then is rendered, as `init` followed by `render` would do.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};

use super::args::{Branches, Environments, Paths, Selection, Typed};
use super::load::print_reports;
use super::{Conclusion, render};
use crate::diagnostic::{display_path, display_text};
use crate::environment;
use crate::import::{self, Imported, Outcome, Source};
use crate::project;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The upstream deployer's environment file (the input of its `create environment`).
    file: PathBuf,
    /// Environment name (default: the file's `environment.name`).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    dirs: Environments,
    /// Directory holding the rendered environments.
    #[arg(long, value_name = "DIR", default_value = "build")]
    out: PathBuf,
    #[command(flatten)]
    branches: Branches,
    /// Also print each secret's value, to paste into GitHub. Only to a terminal.
    #[arg(long)]
    show_secret_values: bool,
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        typed.path("file", &mut self.file);
        self.dirs.anchor(typed);
        typed.path("out", &mut self.out);
    }
}

pub fn run(args: &Args) -> Result<Conclusion> {
    if args.show_secret_values && !io::stdout().is_terminal() {
        bail!(
            "--show-secret-values prints secrets, so only to a terminal: standard output is not \
             one, and a file, a pipe or a CI log would keep them"
        );
    }
    let bytes = fs::read(&args.file).map_err(|source| environment::Error::Read {
        path: args.file.clone(),
        source,
    })?;
    let dir = &args.dirs.dir;
    project::refuse_inside_output(dir)?;
    let outcome = import::import(
        &args.file,
        &bytes,
        args.name.as_deref(),
        dir,
        &args.branches.namespace()?,
    );
    let imported = match outcome {
        Ok(Outcome::Imported(imported)) => imported,
        Ok(Outcome::Invalid(reports)) => {
            print_reports(&reports)?;
            eprintln!("nothing written: fix the errors above first");
            return Ok(Conclusion::Failure);
        }
        Err(import::Error::NotUpstream {
            path,
            why,
            report: Some(report),
        }) => {
            print_reports(&[*report])?;
            return Err(import::Error::NotUpstream {
                path,
                why,
                report: None,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let Imported {
        name,
        text,
        upstream,
        secrets,
        choices,
        ..
    } = *imported;
    print_reports(&[upstream])?;
    let written = environment::create(dir, &name, &text)?;
    let path = written.file;
    println!(
        "wrote {} from {}",
        display_path(&path),
        display_path(&args.file)
    );
    if written.schema_written {
        println!("wrote {} (for editors)", display_path(&written.schema));
    }
    let selection = Selection {
        names: vec![name.clone()],
        dirs: Environments { dir: dir.clone() },
        out: args.out.clone(),
        templates: None,
    };
    let rendered = render::render(&selection, &args.branches, false, false)?;

    let mut out = io::stdout().lock();
    writeln!(out, "\nchosen by import (the upstream file does not say):")?;
    for choice in &choices {
        writeln!(
            out,
            "  {} = {}\n    {}",
            choice.pointer, choice.value, choice.why
        )?;
    }
    writeln!(
        out,
        "\nsecrets: create these in the GitHub environment `{name}` \
         (`gh secret set NAME --env {name}` asks for the value):"
    )?;
    for secret in &secrets {
        write!(out, "  {:<24} ", secret.name)?;
        match &secret.source {
            Source::File { pointer, value } => {
                write!(out, "the value of {pointer}")?;
                if args.show_secret_values {
                    write!(out, ": {}", display_text(value.expose()))?;
                }
            }
            Source::Vm(place) => write!(out, "{place}")?,
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "  {:<24} the private key at ssh_credentials.private_key_path (its content)",
        "TRACKER_GITOPS_SSH_KEY"
    )?;
    writeln!(
        out,
        "\nnext: set deploy.host and deploy.host_key in {}, review the plan of the pull \
         request, then follow \"Moving from the upstream deployer\" in the README",
        display_path(&path)
    )?;
    Ok(rendered)
}
