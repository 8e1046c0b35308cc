//! `--format json`, printed the same way by every command: ONE object on
//! stdout, `"format_version"` first, then the command's fields. When the tool
//! cannot do its job (exit 2) the object is `{"format_version": 1, "error":
//! {"code", "message"}}`, so a script always gets an object to read. The
//! shapes are documented in the README ("Machine-readable output"); a change
//! that breaks a reader bumps [`FORMAT_VERSION`].

use std::io::{self, Write};

use serde::Serialize;

use super::args::Format;
use super::{Invalid, NotDone};
use crate::{
    actions, deploy, environment, git, github, output, plan, project, publish, render, tree, verify,
};

/// The version of every command's JSON shape.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Versioned<'a, T: Serialize> {
    format_version: u32,
    #[serde(flatten)]
    fields: &'a T,
}

/// Prints `{"format_version": 1, …fields}` on stdout.
pub fn print(fields: &impl Serialize) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let versioned = Versioned {
        format_version: FORMAT_VERSION,
        fields,
    };
    serde_json::to_writer_pretty(&mut out, &versioned)?;
    writeln!(out)
}

#[derive(Serialize)]
struct Fatal<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    code: &'static str,
    message: &'a str,
}

/// Prints the object of a command that could not do its job.
pub fn print_error(error: &anyhow::Error) -> io::Result<()> {
    print(&Fatal {
        error: ErrorFields {
            code: code(error),
            message: &error.to_string(),
        },
    })
}

/// Whether a command line clap could not parse asks for JSON.
pub fn asked_for(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<_> = args.collect();
    args.iter().any(|arg| arg == "--format=json")
        || args
            .windows(2)
            .any(|pair| pair[0] == "--format" && pair[1] == "json")
}

/// Prints the object of a command line that could not be parsed (code
/// `usage`; the message is clap's first line, without usage and help).
pub fn print_usage_error(error: &clap::Error) -> io::Result<()> {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    print(&Fatal {
        error: ErrorFields {
            code: "usage",
            message: first.strip_prefix("error: ").unwrap_or(first),
        },
    })
}

/// The stage that failed, as the README's table of error codes names it;
/// a stage's git error is a git error.
fn code(error: &anyhow::Error) -> &'static str {
    let git = matches!(error.downcast_ref(), Some(publish::Error::Git(_)))
        || matches!(error.downcast_ref(), Some(verify::Error::Git(_)))
        || matches!(error.downcast_ref(), Some(plan::Error::Git(_)))
        || error.is::<git::Error>();
    if git {
        "git"
    } else if error.is::<Invalid>() {
        "invalid-environments"
    } else if error.is::<project::Error>() {
        "project"
    } else if error.is::<environment::Error>() {
        "environment"
    } else if error.is::<render::Error>() {
        "render"
    } else if error.is::<output::Error>() || error.is::<tree::Error>() {
        "output"
    } else if error.is::<plan::Error>() {
        "plan"
    } else if error.is::<github::Error>() {
        "github"
    } else if error.is::<publish::Error>() {
        "publish"
    } else if error.is::<verify::Error>() {
        "verify"
    } else if error.is::<deploy::Error>() {
        "deploy"
    } else if error.is::<actions::Error>() {
        "actions"
    } else if let Some(not_done) = error.downcast_ref::<NotDone>() {
        not_done.0.word()
    } else {
        "other"
    }
}

/// Where a command's progress goes: stdout for people, stderr when stdout
/// carries the JSON object.
pub fn progress(format: Format) -> Box<dyn Write> {
    match format {
        Format::Human => Box::new(io::stdout()),
        Format::Json => Box::new(io::stderr()),
    }
}
