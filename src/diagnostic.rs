//! Problems found in an environment file, and the three ways they are printed:
//! for people (with a caret under the offending text), as JSON for tools, and as
//! GitHub workflow commands (`actions::annotate`) so they show up inline on a
//! pull request. File names come from directory listings, so every one printed
//! goes through
//! [`display_path`] or the workflow-command escapes: a name must never fake a
//! line of output or a workflow command. Every diagnostic carries a stable
//! [`Code`], printed in all three.

mod code;

use std::io;
use std::ops::Range;
use std::path::Path;

use codespan_reporting::files::{Files, SimpleFile};
use codespan_reporting::term::termcolor::{Color, ColorSpec, WriteColor};
use serde::Serialize;

pub use code::Code;

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
    pub code: Code,
    pub message: String,
    pub pointer: String,
    pub span: Range<usize>,
    pub hint: Option<String>,
    /// Places in other files the problem involves (a rule across files).
    pub related: Vec<Related>,
}

/// A place in another file that a diagnostic involves, already located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Related {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn error(
        code: Code,
        pointer: impl Into<String>,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            pointer: pointer.into(),
            span,
            hint: None,
            related: Vec::new(),
        }
    }

    pub fn warning(
        code: Code,
        pointer: impl Into<String>,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, pointer, span, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_related(mut self, related: Related) -> Self {
        self.related.push(related);
        self
    }
}

impl Related {
    /// `file:line:col: message`, the file name escaped.
    pub fn human(&self) -> String {
        format!(
            "{}:{}:{}: {}",
            display_path(&self.file),
            self.line,
            self.column,
            self.message
        )
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
    pub code: Code,
    pub message: &'a str,
    pub pointer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub related: &'a [Related],
}

impl FileReport {
    pub fn new(path: String, text: String, diagnostics: Vec<Diagnostic>) -> Self {
        let mut report = Self {
            file: SimpleFile::new(path, text),
            diagnostics: Vec::new(),
        };
        report.extend(diagnostics);
        report
    }

    /// Adds diagnostics found later (by the rules across files), keeping the order.
    pub fn extend(&mut self, diagnostics: impl IntoIterator<Item = Diagnostic>) {
        self.diagnostics.extend(diagnostics);
        self.diagnostics.sort_by(|a, b| {
            (a.span.start, a.severity, &a.message).cmp(&(b.span.start, b.severity, &b.message))
        });
        self.diagnostics
            .dedup_by(|a, b| a.span == b.span && a.message == b.message);
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
        crate::text::line_column(self.file.source(), offset)
    }

    pub fn located(&self) -> impl Iterator<Item = Located<'_>> {
        self.diagnostics.iter().map(|d| {
            let (line, column) = self.line_column(d.span.start);
            Located {
                file: self.path(),
                line,
                column,
                severity: d.severity,
                code: d.code,
                message: &d.message,
                pointer: &d.pointer,
                hint: d.hint.as_deref(),
                related: &d.related,
            }
        })
    }

    /// `file:line:col: error: message [code]` (the code where clang puts its
    /// warning flag, so `file:line:col: severity: message` parsers keep
    /// working), then (with `snippets`) the offending line
    /// with a caret under the span, then the pointer and the hint.
    pub fn write_human(&self, out: &mut dyn WriteColor, snippets: bool) -> io::Result<()> {
        for (d, at) in self.diagnostics.iter().zip(self.located()) {
            let (severity, color) = match d.severity {
                Severity::Error => ("error", Color::Red),
                Severity::Warning => ("warning", Color::Yellow),
            };
            write!(out, "{}:{}:{}: ", display_path(at.file), at.line, at.column)?;
            out.set_color(ColorSpec::new().set_fg(Some(color)).set_bold(true))?;
            write!(out, "{severity}")?;
            out.reset()?;
            writeln!(out, ": {} [{}]", d.message, d.code)?;
            if snippets {
                self.write_snippet(out, &d.span, at.line, color)?;
            }
            if !d.pointer.is_empty() {
                writeln!(out, "  at: {}", d.pointer)?;
            }
            for related in &d.related {
                writeln!(out, "  note: {}", related.human())?;
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

/// A file name as shown to people: [`display_text`], and a name that starts
/// with `::` (a workflow command at the start of a line) gets `./`.
pub fn display_path(path: impl AsRef<Path>) -> String {
    let text = display_text(&path.as_ref().to_string_lossy());
    if text.starts_with("::") {
        format!("./{text}")
    } else {
        text
    }
}

/// Text from outside (file names, file content) made unable to fake a line of
/// output: line breaks, which could start a fake line or a `::error::`
/// workflow command on GitHub Actions (whose runner also breaks lines at a
/// lone `\r`), other control characters and bidirectional overrides are
/// written as escapes (`\n`, `\u{1b}`, `\u{202e}`). Tabs stay.
pub fn display_text(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push('\t'),
            c if c.is_control() || is_bidi_control(c) => {
                shown.push_str(&format!("\\u{{{:x}}}", u32::from(c)))
            }
            c => shown.push(c),
        }
    }
    shown
}

/// Characters that reorder how the rest of a line is displayed.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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
                Diagnostic::warning(Code::MovingTag, "/b", 19..22, "later"),
                Diagnostic::error(Code::UnknownKey, "/a", 4..7, "earlier").with_hint("fix it"),
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
                "envs/x.json:2:3: error: earlier [unknown-key]\n  |\n2 |   \"a\": 1,\n  |   ^^^\n  at: /a\n  hint: fix it\n"
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
            vec![Diagnostic::error(
                Code::ControlCharacter,
                "/a",
                11..12,
                "control character",
            )],
        );
        let mut out = codespan_reporting::term::termcolor::NoColor::new(Vec::new());
        report.write_human(&mut out, true).unwrap();
        let out = String::from_utf8(out.into_inner()).unwrap();
        assert!(out.contains("2 |   \"a\": \"x\n  |          ^\n"), "{out}");
    }

    #[test]
    fn shown_names_stay_on_their_line() {
        assert_eq!(display_path("build/a b/c.txt"), "build/a b/c.txt");
        assert_eq!(
            display_path("x\n::error::pwned\r\u{1b}[2K\u{202e}.json"),
            "x\\n::error::pwned\\r\\u{1b}[2K\\u{202e}.json"
        );
        assert_eq!(display_path("::error::x.json"), "./::error::x.json");
        assert_eq!(display_text("a\tb"), "a\tb");
    }

    #[test]
    fn related_places_are_printed_in_every_format() {
        let related = Related {
            file: "envs/a\nb.json".into(),
            line: 4,
            column: 2,
            message: "here".into(),
        };
        let report = FileReport::new(
            "envs/x.json".into(),
            "{}".into(),
            vec![Diagnostic::error(Code::BranchCollision, "", 0..1, "clash").with_related(related)],
        );
        let mut human = codespan_reporting::term::termcolor::NoColor::new(Vec::new());
        report.write_human(&mut human, false).unwrap();
        let human = String::from_utf8(human.into_inner()).unwrap();
        assert_eq!(
            human,
            "envs/x.json:1:1: error: clash [branch-collision]\n  note: envs/a\\nb.json:4:2: here\n"
        );
        let mut github = Vec::new();
        crate::actions::annotate(&mut github, &report).unwrap();
        let github = String::from_utf8(github).unwrap();
        assert!(
            github.ends_with("::clash%0Anote: envs/a\\nb.json:4:2: here\n"),
            "{github}"
        );
        let json = serde_json::to_value(report.located().collect::<Vec<_>>()).unwrap();
        assert_eq!(json[0]["related"][0]["file"], "envs/a\nb.json");
        assert_eq!(json[0]["code"], "branch-collision");
    }
}
