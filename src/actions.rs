//! GitHub Actions I/O, in one place: step outputs (`$GITHUB_OUTPUT`), the job
//! summary (`$GITHUB_STEP_SUMMARY`), files handed to later steps
//! (`$RUNNER_TEMP`) and workflow commands. Outside Actions the variables are
//! unset and each of these does nothing, except warnings, which always go to
//! stderr (as a workflow command under Actions): stdout carries data only.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::diagnostic::escape_data;

/// GitHub drops a larger `$GITHUB_STEP_SUMMARY` (1 MiB per step).
pub const SUMMARY_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open GITHUB_OUTPUT {}: {source}", .path.to_string_lossy())]
    OpenOutput { path: PathBuf, source: io::Error },
    #[error("cannot write GITHUB_OUTPUT {}: {source}", .path.to_string_lossy())]
    WriteOutput { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Whether we run as a step of a GitHub Actions job.
pub fn running() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// A path from a variable, when set and not empty.
fn var_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Sets the step output `name`; a value of several lines in the heredoc form.
pub fn set_output(name: &str, value: &str) -> Result<(), Error> {
    let Some(path) = std::env::var_os("GITHUB_OUTPUT").map(PathBuf::from) else {
        return Ok(());
    };
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|source| Error::OpenOutput {
            path: path.clone(),
            source,
        })?;
    let line = if value.contains('\n') {
        // The delimiter must not be a line of the value.
        let mut delimiter = String::from("TRACKER_GITOPS_EOF");
        while value.lines().any(|l| l == delimiter) {
            delimiter.push('_');
        }
        format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
    } else {
        format!("{name}={value}\n")
    };
    file.write_all(line.as_bytes())
        .map_err(|source| Error::WriteOutput { path, source })
}

/// Appends Markdown (and a newline) to the job summary.
pub fn append_summary(markdown: &str) -> Result<(), Error> {
    let Some(path) = var_path("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{markdown}"))
        .map_err(|source| Error::Write { path, source })
}

/// Writes `contents` to `$RUNNER_TEMP/<file>` (the system's temporary
/// directory when unset) and sets the step output `name` to its path; nothing
/// outside Actions, where no step could read it.
pub fn output_file(name: &str, file: &str, contents: &[u8]) -> Result<(), Error> {
    if std::env::var_os("GITHUB_OUTPUT").is_none() {
        return Ok(());
    }
    let path = var_path("RUNNER_TEMP")
        .unwrap_or_else(std::env::temp_dir)
        .join(file);
    std::fs::write(&path, contents).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    set_output(name, &path.to_string_lossy())
}

/// A warning on stderr: a workflow command under Actions, else `warning: …`.
pub fn warning(message: &str) {
    if running() {
        eprintln!("::warning::{}", escape_data(message));
    } else {
        eprintln!("warning: {message}");
    }
}
