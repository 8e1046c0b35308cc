//! GitHub Actions I/O, in one place: step outputs (`$GITHUB_OUTPUT`), the job
//! summary (`$GITHUB_STEP_SUMMARY`), files handed to later steps
//! (`$RUNNER_TEMP`) and workflow commands (annotations, warnings). Outside Actions the variables are
//! unset and each of these does nothing, except warnings, which always go to
//! stderr (as a workflow command under Actions): stdout carries data only.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::diagnostic::{FileReport, Severity, escape_data, escape_property};

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

/// Each diagnostic of `report` as a workflow command: an annotation on the
/// pull request's file. GitHub finds the file by its path from the
/// repository root (`$GITHUB_WORKSPACE`), not from the directory the step
/// runs in (the action's `working-directory`).
pub fn annotate(out: &mut dyn Write, report: &FileReport) -> io::Result<()> {
    let workspace = var_path("GITHUB_WORKSPACE");
    let file = workspace_path(Path::new(report.path()), workspace.as_deref());
    write_annotations(out, report, &file)
}

fn write_annotations(out: &mut dyn Write, report: &FileReport, file: &str) -> io::Result<()> {
    for at in report.located() {
        let command = match at.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut message = at.message.to_string();
        for related in at.related {
            message.push_str("\nnote: ");
            message.push_str(&related.human());
        }
        if let Some(hint) = at.hint {
            message.push_str("\nhint: ");
            message.push_str(hint);
        }
        writeln!(
            out,
            "::{command} file={},line={},col={},title={}::{}",
            escape_property(file),
            at.line,
            at.column,
            escape_property(&format!("tracker-gitops {command} [{}]", at.code)),
            escape_data(&message)
        )?;
    }
    Ok(())
}

/// `path` (relative to the current directory) from the workspace, `/`
/// separated; as given without one or when the file lies outside it.
fn workspace_path(path: &Path, workspace: Option<&Path>) -> String {
    let from_workspace = workspace.and_then(|workspace| {
        let workspace = workspace.canonicalize().ok()?;
        let absolute = crate::git::absolute(path).ok()?;
        Some(crate::git::slash_path(
            absolute.strip_prefix(workspace).ok()?,
        ))
    });
    from_workspace.unwrap_or_else(|| path.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::{Code, Diagnostic};

    #[test]
    fn annotations_escape_newlines_and_separators() {
        let report = FileReport::new(
            "envs/x,y.json".into(),
            "{\n  \"a\": 1,\n  \"b\": \"x\"\n}\n".into(),
            vec![
                Diagnostic::warning(Code::MovingTag, "/b", 19..22, "later"),
                Diagnostic::error(Code::UnknownKey, "/a", 4..7, "earlier\r%").with_hint("fix it"),
            ],
        );
        let mut out = Vec::new();
        write_annotations(&mut out, &report, report.path()).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "::error file=envs/x%2Cy.json,line=2,col=3,title=tracker-gitops error [unknown-key]\
             ::earlier%0D%25%0Ahint: fix it\n\
             ::warning file=envs/x%2Cy.json,line=3,col=8,title=tracker-gitops warning [moving-tag]::later\n"
        );
    }

    #[test]
    fn annotated_paths_start_at_the_workspace() {
        let workspace = tempfile::tempdir().unwrap();
        let current = std::env::current_dir().unwrap();
        let path = Path::new("environments/x.json");
        assert_eq!(
            workspace_path(path, Some(&current.join(".."))),
            format!(
                "{}/environments/x.json",
                current.file_name().unwrap().to_string_lossy()
            )
        );
        // Outside the workspace, or none: as given.
        assert_eq!(
            workspace_path(path, Some(workspace.path())),
            "environments/x.json"
        );
        assert_eq!(workspace_path(path, None), "environments/x.json");
    }
}
