//! Problems found in an environment file, and the three ways they are printed:
//! for people (with a caret under the offending text), as JSON for tools, and as
//! GitHub workflow commands so they show up inline on a pull request.

use std::io::{self, Write};
use std::ops::Range;

use codespan_reporting::files::{Files, SimpleFile};
use codespan_reporting::term::termcolor::{Color, ColorSpec, WriteColor};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem at one place in a file. `span` is a byte range in the file's text;
/// `pointer` is the JSON pointer of the value it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub pointer: String,
    pub span: Range<usize>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(
        pointer: impl Into<String>,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            pointer: pointer.into(),
            span,
            hint: None,
        }
    }

    pub fn warning(
        pointer: impl Into<String>,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(pointer, span, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The diagnostics of one file, sorted by position, with the text they point into.
#[derive(Debug)]
pub struct FileReport {
    file: SimpleFile<String, String>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A diagnostic with its position resolved, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct Located<'a> {
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub severity: Severity,
    pub message: &'a str,
    pub pointer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'a str>,
}

impl FileReport {
    pub fn new(path: String, text: String, mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by(|a, b| {
            (a.span.start, a.severity, &a.message).cmp(&(b.span.start, b.severity, &b.message))
        });
        diagnostics.dedup_by(|a, b| a.span == b.span && a.message == b.message);
        Self {
            file: SimpleFile::new(path, text),
            diagnostics,
        }
    }

    pub fn path(&self) -> &str {
        self.file.name()
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.file.source().len());
        match self.file.location((), offset) {
            Ok(location) => (location.line_number, location.column_number),
            Err(_) => (1, 1),
        }
    }

    pub fn located(&self) -> impl Iterator<Item = Located<'_>> {
        self.diagnostics.iter().map(|d| {
            let (line, column) = self.line_column(d.span.start);
            Located {
                file: self.path(),
                line,
                column,
                severity: d.severity,
                message: &d.message,
                pointer: &d.pointer,
                hint: d.hint.as_deref(),
            }
        })
    }

    /// `file:line:col: error: message`, then (with `snippets`) the offending line
    /// with a caret under the span, then the pointer and the hint.
    pub fn write_human(&self, out: &mut dyn WriteColor, snippets: bool) -> io::Result<()> {
        for (d, at) in self.diagnostics.iter().zip(self.located()) {
            let (severity, color) = match d.severity {
                Severity::Error => ("error", Color::Red),
                Severity::Warning => ("warning", Color::Yellow),
            };
            write!(out, "{}:{}:{}: ", at.file, at.line, at.column)?;
            out.set_color(ColorSpec::new().set_fg(Some(color)).set_bold(true))?;
            write!(out, "{severity}")?;
            out.reset()?;
            writeln!(out, ": {}", d.message)?;
            if snippets {
                self.write_snippet(out, &d.span, at.line, color)?;
            }
            if !d.pointer.is_empty() {
                writeln!(out, "  at: {}", d.pointer)?;
            }
            if let Some(hint) = &d.hint {
                writeln!(out, "  hint: {hint}")?;
            }
        }
        Ok(())
    }

    fn write_snippet(
        &self,
        out: &mut dyn WriteColor,
        span: &Range<usize>,
        line: usize,
        color: Color,
    ) -> io::Result<()> {
        let text = self.file.source();
        let Ok(range) = self.file.line_range((), line - 1) else {
            return Ok(());
        };
        let source_line = text[range.clone()].trim_end_matches(['\n', '\r']);
        let span = self.clamp(span);
        // A span may start on the line break itself (a raw newline in a string).
        let start = floor_char_boundary(
            source_line,
            (span.start.max(range.start) - range.start).min(source_line.len()),
        );
        let end = floor_char_boundary(
            source_line,
            (span.end.min(range.start + source_line.len()) - range.start).max(start),
        );
        let indent: String = source_line[..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let carets = "^".repeat(source_line[start..end].chars().count().max(1));
        let gutter = " ".repeat(line.to_string().len());
        writeln!(out, "{gutter} |")?;
        writeln!(out, "{line} | {}", printable(source_line))?;
        write!(out, "{gutter} | {indent}")?;
        out.set_color(ColorSpec::new().set_fg(Some(color)).set_bold(true))?;
        writeln!(out, "{carets}")?;
        out.reset()
    }

    /// GitHub Actions workflow commands: inline annotations on the pull request.
    pub fn write_github(&self, out: &mut dyn Write) -> io::Result<()> {
        for at in self.located() {
            let command = match at.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let mut message = at.message.to_string();
            if let Some(hint) = at.hint {
                message.push_str("\nhint: ");
                message.push_str(hint);
            }
            writeln!(
                out,
                "::{command} file={},line={},col={},title={}::{}",
                escape_property(at.file),
                at.line,
                at.column,
                escape_property(&format!("tracker-gitops {command}")),
                escape_data(&message)
            )?;
        }
        Ok(())
    }

    fn clamp(&self, span: &Range<usize>) -> Range<usize> {
        let len = self.file.source().len();
        let start = floor_char_boundary(self.file.source(), span.start.min(len));
        let end = floor_char_boundary(self.file.source(), span.end.clamp(start, len));
        start..end
    }
}

/// Control characters would garble the terminal; show them escaped.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Escaping rules of workflow command data (the message).
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escaping rules of workflow command properties (`file=…`).
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> FileReport {
        let text = "{\n  \"a\": 1,\n  \"b\": \"x\"\n}\n".to_string();
        FileReport::new(
            "envs/x.json".into(),
            text,
            vec![
                Diagnostic::warning("/b", 19..22, "later"),
                Diagnostic::error("/a", 4..7, "earlier").with_hint("fix it"),
            ],
        )
    }

    #[test]
    fn sorted_by_position_with_line_and_column() {
        let report = report();
        let located: Vec<_> = report.located().map(|l| (l.line, l.column)).collect();
        assert_eq!(located, vec![(2, 3), (3, 8)]);
    }

    #[test]
    fn snippet_underlines_the_span() {
        let mut out = codespan_reporting::term::termcolor::NoColor::new(Vec::new());
        report().write_human(&mut out, true).unwrap();
        let out = String::from_utf8(out.into_inner()).unwrap();
        assert!(
            out.starts_with(
                "envs/x.json:2:3: error: earlier\n  |\n2 |   \"a\": 1,\n  |   ^^^\n  at: /a\n  hint: fix it\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_span_on_a_line_break_underlines_its_end() {
        let text = "{\n  \"a\": \"x\ny\"\n}\n".to_string();
        let report = FileReport::new(
            "x.json".into(),
            text,
            vec![Diagnostic::error("/a", 11..12, "control character")],
        );
        let mut out = codespan_reporting::term::termcolor::NoColor::new(Vec::new());
        report.write_human(&mut out, true).unwrap();
        let out = String::from_utf8(out.into_inner()).unwrap();
        assert!(out.contains("2 |   \"a\": \"x\n  |          ^\n"), "{out}");
    }

    #[test]
    fn github_commands_escape_newlines_and_separators() {
        let mut out = Vec::new();
        report().write_github(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with(
            "::error file=envs/x.json,line=2,col=3,title=tracker-gitops error::earlier%0Ahint: fix it\n"
        ));
        assert!(out.contains("::warning file=envs/x.json,line=3,col=8"));
    }
}
