//! `--format json`, printed the same way by every command: ONE object on
//! stdout, `"format_version"` first, then the command's fields. When the tool
//! cannot do its job (exit 2) the object is `{"format_version": 1, "error":
//! {"code", "message"}}`, so a script always gets an object to read. The
//! shapes are documented in the README ("Machine-readable output"); a change
//! that breaks a reader bumps [`FORMAT_VERSION`].

use std::io::{self, Write};

use serde::Serialize;

use super::Invalid;
use crate::{git, output, plan, render, tree};

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

/// The stage that failed, as the README's table of error codes names it.
fn code(error: &anyhow::Error) -> &'static str {
    if error.is::<git::Error>() || matches!(error.downcast_ref(), Some(plan::Error::Git(_))) {
        "git"
    } else if error.is::<Invalid>() {
        "invalid-environments"
    } else if error.is::<render::Error>() {
        "render"
    } else if error.is::<output::Error>() || error.is::<tree::Error>() {
        "output"
    } else if error.is::<plan::Error>() {
        "plan"
    } else {
        "other"
    }
}
