//! `import`: an environment of the upstream imperative deployer
//! (torrust-tracker-deployer) turned into a tracker-gitops environment file,
//! checked before it is written.
//!
//! The upstream file is parsed with positions ([`Document`]) and checked
//! against our description of its format (`upstream`); the mapping keeps
//! books (`mapping::Ledger`) of where every value went. Problems of the
//! result (a port conflict, a MySQL `root` user…) are found by this tool's own
//! checks on the result, then moved back to the upstream key they came from,
//! so every error points into the file the user gave. Secret values stay in
//! memory: the result holds references.

mod mapping;
mod upstream;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, FileReport, Severity, display_path};
use crate::environment::schema::field_name;
use crate::environment::{self, Document, Namespace, escape_token};

pub use mapping::{Choice, SecretToCreate, SecretValue, Source, TRACKER_IMAGE};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{} is not an environment file of the upstream deployer (torrust-tracker-deployer): {why}",
        display_path(.path)
    )]
    NotUpstream {
        path: PathBuf,
        why: &'static str,
        /// Why it could not even be read as JSON, located.
        report: Option<Box<FileReport>>,
    },
    #[error("{0}")]
    Name(String),
    #[error(transparent)]
    Environment(#[from] environment::Error),
}

/// The verdict on an upstream file.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing may be written: the reports say why, in the upstream file
    /// (and in the result, for a value import chose).
    Invalid(Vec<FileReport>),
    Imported(Box<Imported>),
}

/// A valid environment file, not yet written.
#[derive(Debug)]
pub struct Imported {
    pub name: String,
    /// Where it goes.
    pub path: PathBuf,
    pub text: String,
    /// Warnings in the upstream file: what is not carried over, unknown keys.
    /// (The result's own warnings are the ones `validate` gives it.)
    pub upstream: FileReport,
    pub secrets: Vec<SecretToCreate>,
    pub choices: Vec<Choice>,
}

/// Imports the upstream file `bytes` (read from `path`) as the environment
/// `name` (default: the file's own) of `dir`, checked against the
/// environments already there.
pub fn import(
    path: &Path,
    bytes: &[u8],
    name: Option<&str>,
    dir: &Path,
    namespace: &Namespace,
) -> Result<Outcome, Error> {
    let display = path.display().to_string();
    let not_upstream = |why, report| Error::NotUpstream {
        path: path.to_path_buf(),
        why,
        report,
    };
    let document = Document::parse(bytes).map_err(|found| {
        let text = mask(&String::from_utf8_lossy(bytes), &string_spans(bytes));
        let report = FileReport::new(display.clone(), text, found);
        not_upstream("it is not a JSON document", Some(Box::new(report)))
    })?;
    // The text diagnostics quote (the offending line, on a terminal).
    let secrets: Vec<_> = upstream::SECRETS
        .iter()
        .filter(|p| document.value.pointer(p).is_some_and(Value::is_string))
        .map(|p| document.value_span(p))
        .collect();
    let text = mask(&String::from_utf8_lossy(bytes), &secrets);
    recognize(&document.value).map_err(|why| not_upstream(why, None))?;

    let violations = upstream::schema().validate(&document);
    let mut diagnostics: Vec<Diagnostic> = violations
        .diagnostics
        .into_iter()
        .map(|d| {
            if violations.unknown_keys.contains(&d.pointer) {
                // The upstream deployer ignores them: so does import, loudly.
                Diagnostic {
                    severity: Severity::Warning,
                    message: format!("{}: not carried over", d.message),
                    ..d
                }
            } else {
                d
            }
        })
        .collect();
    let invalid = |diagnostics| {
        Ok(Outcome::Invalid(vec![FileReport::new(
            display.clone(),
            text.clone(),
            diagnostics,
        )]))
    };
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return invalid(diagnostics);
    }
    // The schema and the types agree, so this is a bug; report it, don't panic.
    let file: upstream::File = match serde_json::from_value(document.value.clone()) {
        Ok(file) => file,
        Err(e) => {
            diagnostics.push(Diagnostic::error(
                Code::InternalError,
                "",
                0..0,
                format!("internal error: {e}"),
            ));
            return invalid(diagnostics);
        }
    };
    let name = match name {
        Some(name) => {
            if let Some(problem) = environment::check_name(name) {
                return Err(Error::Name(problem.message));
            }
            name.to_string()
        }
        None => {
            let name = &file.environment.name;
            if let Some(problem) = environment::check_name(name) {
                diagnostics.push(Diagnostic {
                    pointer: "/environment/name".into(),
                    span: document.value_span("/environment/name"),
                    hint: Some("or choose another name with --name NAME".into()),
                    ..problem
                });
                return invalid(diagnostics);
            }
            name.clone()
        }
    };
    let target = dir.join(format!("{name}.json"));
    if target.exists() {
        return Err(environment::Error::Exists { path: target }.into());
    }

    let (result, mut ledger) = mapping::map(&file, &name, &document);
    let unknown = violations.unknown_keys;
    for pointer in unaccounted(&document.value, &ledger, &unknown) {
        ledger.drop_unmapped(pointer);
    }
    diagnostics.extend(ledger.dropped.iter().map(|(pointer, reason)| {
        Diagnostic::warning(
            Code::NotImported,
            pointer.clone(),
            document.key_span(pointer),
            format!("`{}` is not carried over", field_name(pointer)),
        )
        .with_hint(reason.clone())
    }));
    diagnostics.append(&mut ledger.problems);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return invalid(diagnostics);
    }

    let mut written = serde_json::to_string_pretty(&result).expect("an environment serializes");
    written.push('\n');
    if result
        .grafana
        .as_ref()
        .is_some_and(|g| result.behind_tls(&g.domain))
    {
        written = without_grafana_publish(&written);
    }
    let checked = environment::check_new(dir, &target, written.as_bytes(), namespace)?;
    let (moved, kept): (Vec<_>, Vec<_>) = checked
        .report
        .diagnostics
        .into_iter()
        .partition(|d| origin(&ledger, &d.pointer).is_some());
    diagnostics.extend(moved.into_iter().map(|d| relocate(&document, &ledger, d)));
    let upstream = FileReport::new(display, text, diagnostics);
    let result_report = FileReport::new(target.display().to_string(), written.clone(), kept);
    if result_report.has_errors() {
        return Ok(Outcome::Invalid(vec![upstream, result_report]));
    }
    if upstream.has_errors() {
        return Ok(Outcome::Invalid(vec![upstream]));
    }
    Ok(Outcome::Imported(Box::new(Imported {
        name,
        path: target,
        text: written,
        upstream,
        secrets: ledger.secrets,
        choices: ledger.choices,
    })))
}

/// `text` with the characters in `spans` replaced by ones of the same width in
/// bytes and characters, so that every position stays where it was.
fn mask(text: &str, spans: &[std::ops::Range<usize>]) -> String {
    let mut spans: Vec<_> = spans.to_vec();
    spans.sort_by_key(|s| s.start);
    let mut spans = spans.into_iter().peekable();
    text.char_indices()
        .map(|(at, c)| {
            while spans.next_if(|s| s.end <= at).is_some() {}
            let inside = spans.peek().is_some_and(|s| s.contains(&at));
            match c.len_utf8() {
                _ if !inside || c == '"' => c,
                1 => '*',
                2 => '\u{b7}',
                3 => '\u{2022}',
                _ => '\u{1f512}',
            }
        })
        .collect()
}

/// The byte ranges of every string literal in `bytes`, which need not be
/// valid JSON: a file that does not parse may still hold secrets.
fn string_spans(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let (mut spans, mut start, mut escaped) = (Vec::new(), None, false);
    for (i, byte) in bytes.iter().enumerate() {
        match (start, byte) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), b'\\') => escaped = true,
            (Some(from), b'"') => {
                spans.push(from..i);
                start = None;
            }
            (None, b'"') => start = Some(i + 1),
            _ => {}
        }
    }
    spans.extend(start.map(|from| from..bytes.len()));
    spans
}

/// `text` without Grafana's `publish`: the model always has one, and behind
/// HTTPS the file must not (Grafana is then reached through Caddy only).
/// The member's line goes; a `domain` follows it, so the JSON stays valid.
fn without_grafana_publish(text: &str) -> String {
    let document = Document::parse(text.as_bytes()).expect("serde_json writes JSON");
    let Some(place) = document.place("/grafana/publish") else {
        return text.to_string();
    };
    let start = place
        .key
        .as_ref()
        .map_or(place.value.start, |key| key.start);
    let start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let end = text[place.value.end..]
        .find('\n')
        .map_or(text.len(), |i| place.value.end + i + 1);
    format!("{}{}", &text[..start], &text[end..])
}

/// Whether `value` is an upstream environment file, valid or not.
fn recognize(value: &Value) -> Result<(), &'static str> {
    let Some(object) = value.as_object() else {
        return Err("it is not a JSON object");
    };
    if upstream::MARKERS
        .iter()
        .any(|key| object.contains_key(*key))
    {
        Ok(())
    } else if object.contains_key("deploy") {
        Err("it is a tracker-gitops environment file already (it has `deploy`)")
    } else {
        Err("it has none of its sections `environment`, `ssh_credentials` and `provider`")
    }
}

/// Values of the upstream file (leaves: scalars and empty lists or objects;
/// `null` means unset) that the books do not account for.
fn unaccounted(value: &Value, ledger: &mapping::Ledger, unknown: &[String]) -> Vec<String> {
    fn leaves(value: &Value, pointer: String, found: &mut Vec<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    leaves(child, format!("{pointer}/{}", escape_token(key)), found);
                }
            }
            Value::Array(list) if !list.is_empty() => {
                for (i, child) in list.iter().enumerate() {
                    leaves(child, format!("{pointer}/{i}"), found);
                }
            }
            Value::Null => {}
            _ => found.push(pointer),
        }
    }
    let within = |pointer: &str, section: &str| {
        pointer == section || pointer.starts_with(&format!("{section}/"))
    };
    let mut found = Vec::new();
    leaves(value, String::new(), &mut found);
    found.retain(|pointer| {
        let used = ledger.carried.iter().any(|(_, from)| from == pointer)
            || ledger.consumed.iter().any(|from| from == pointer)
            || ledger.secrets.iter().any(|s| {
                matches!(&s.source, mapping::Source::File { pointer: from, .. } if from == pointer)
            });
        let left = ledger.dropped.iter().any(|(at, _)| within(pointer, at))
            || unknown.iter().any(|at| within(pointer, at));
        !used && !left
    });
    found
}

/// The upstream pointer a value of the result at `pointer` came from: its
/// own, or its nearest section's. None for values import chose.
fn origin<'l>(ledger: &'l mapping::Ledger, pointer: &str) -> Option<(&'l str, bool)> {
    let within = |pointer: &str, at: &str| pointer == at || pointer.starts_with(&format!("{at}/"));
    if ledger.choices.iter().any(|c| within(pointer, c.pointer)) {
        return None;
    }
    let mut at = pointer;
    loop {
        if let Some((_, from)) = ledger.carried.iter().find(|(ours, _)| ours == at) {
            return Some((from, at == pointer));
        }
        at = &at[..at.rfind('/')?];
        if at.is_empty() {
            return None;
        }
    }
}

/// A diagnostic about the result, moved to where its value came from.
fn relocate(document: &Document, ledger: &mapping::Ledger, d: Diagnostic) -> Diagnostic {
    let Some((from, exact)) = origin(ledger, &d.pointer) else {
        return d;
    };
    // A section is shown by its key, a value by itself.
    let section = document.value.pointer(from).is_some_and(|v| v.is_object());
    let span = if exact && !section {
        document.value_span(from)
    } else {
        document.object_span(from)
    };
    // A line the message names is one of the result's, not the upstream file's.
    let message = match d.message.rsplit_once(" (line ") {
        Some((before, line)) if line.trim_end_matches(')').parse::<usize>().is_ok() => {
            before.to_string()
        }
        _ => d.message,
    };
    let message = if d.pointer == from {
        message
    } else {
        format!("{message} (imported as `{}`)", d.pointer)
    };
    Diagnostic {
        pointer: from.to_string(),
        span,
        message,
        ..d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream");
        let mut found: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        found.sort();
        found
    }

    fn imported(path: &Path, bytes: &[u8]) -> Imported {
        let dir = tempfile::tempdir().unwrap();
        let namespace = Namespace::new("deploy/").unwrap();
        match import(path, bytes, None, dir.path(), &namespace).unwrap() {
            Outcome::Imported(imported) => *imported,
            Outcome::Invalid(reports) => panic!("{}: {reports:#?}", path.display()),
        }
    }

    #[test]
    fn the_mapping_accounts_for_every_value_of_the_fixtures_itself() {
        for (path, bytes) in fixtures() {
            let imported = imported(&path, &bytes);
            let generic: Vec<_> = imported
                .upstream
                .diagnostics
                .iter()
                .filter(|d| d.hint.as_deref() == Some(mapping::UNMAPPED))
                .map(|d| &d.pointer)
                .collect();
            assert!(generic.is_empty(), "{}: {generic:?}", path.display());
        }
    }

    #[test]
    fn a_value_the_books_miss_is_still_reported() {
        let (_, bytes) = &fixtures()[0];
        let document = Document::parse(bytes).unwrap();
        let file: upstream::File = serde_json::from_value(document.value.clone()).unwrap();
        let (_, mut ledger) = mapping::map(&file, "x", &document);
        assert!(unaccounted(&document.value, &ledger, &[]).is_empty());
        ledger
            .carried
            .retain(|(_, from)| from != "/tracker/core/private");
        assert_eq!(
            unaccounted(&document.value, &ledger, &[]),
            ["/tracker/core/private"]
        );
    }

    #[test]
    fn secret_values_stay_out_of_the_result_and_debug_output() {
        for (path, bytes) in fixtures() {
            let imported = imported(&path, &bytes);
            assert!(!imported.secrets.is_empty());
            let debug = format!("{imported:?}");
            for secret in &imported.secrets {
                let Source::File { value, .. } = &secret.source else {
                    continue;
                };
                let value = value.expose();
                assert!(!imported.text.contains(value), "{}", secret.name);
                assert!(!debug.contains(value), "{}", secret.name);
            }
        }
    }

    #[test]
    fn masking_hides_strings_and_keeps_every_position() {
        let text = "{\"a\": \"pässwörd€🔑\", \"b\": 1}";
        let masked = mask(text, &string_spans(text.as_bytes())[1..2]);
        assert_eq!(masked, "{\"a\": \"*·***·**•🔒\", \"b\": 1}");
        assert_eq!(masked.len(), text.len());
        assert_eq!(masked.chars().count(), text.chars().count());
        assert_eq!(string_spans(b"{\"x\\\"y\": \"unterminated"), [2..6, 10..22]);
    }
}
