//! `--format json`: one object on stdout, `format_version` first, in the
//! shape the README's "Machine-readable output" documents (its example of
//! each command, member for member), snapshot-tested; a command that cannot
//! do its job still prints an object, `{"format_version": 1, "error": …}`.
//! Deploy and rollback refusals are in `verify.rs`, where the VM is a
//! listener that proves it was never contacted; `deploy.rs` checks a real
//! deploy and status against the documented shapes.

use serde_json::Value;

use crate::harness::{Project, Run, repo_root};

/// The first ```json block after the README heading `heading`.
fn documented(heading: &str) -> Value {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (_, after) = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no README heading {heading:?}"));
    let (_, block) = after.split_once("```json\n").unwrap();
    let (json, _) = block.split_once("```").unwrap();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("README {heading}: {e}\n{json}"))
}

/// Asserts that `actual` has the members of `documented`, no others, each of
/// the same JSON type, recursively; each array item as one of the documented
/// items. A documented `null` stands for a string or null.
fn assert_shape(documented: &Value, actual: &Value, at: &str) {
    if let Err(problem) = shape(documented, actual, at) {
        panic!("{problem}\n{actual:#}");
    }
}

fn shape(documented: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (documented, actual) {
        (Value::Object(doc), Value::Object(act)) => {
            // Optional members: `hint` and `related` of a diagnostic.
            let keys = |map: &serde_json::Map<String, Value>| -> Vec<String> {
                let mut keys: Vec<_> = map
                    .keys()
                    .filter(|k| *k != "hint" && *k != "related")
                    .cloned()
                    .collect();
                keys.sort();
                keys
            };
            if keys(doc) != keys(act) {
                return Err(format!(
                    "{at}: members {:?}, documented {:?}",
                    keys(act),
                    keys(doc)
                ));
            }
            act.iter()
                .filter_map(|(key, value)| Some((doc.get(key)?, key, value)))
                .try_for_each(|(doc, key, value)| shape(doc, value, &format!("{at}.{key}")))
        }
        // An empty example: the prose documents the items (checked by the test).
        (Value::Array(doc), Value::Array(_)) if doc.is_empty() => Ok(()),
        (Value::Array(doc), Value::Array(act)) => {
            act.iter().enumerate().try_for_each(|(i, item)| {
                let at = format!("{at}[{i}]");
                doc.iter()
                    .map(|doc| shape(doc, item, &at))
                    .find(Result::is_ok)
                    .unwrap_or_else(|| Err(format!("{at}: like none of the documented items")))
            })
        }
        (Value::Null, Value::Null | Value::String(_))
        | (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => Ok(()),
        (doc, act) => Err(format!("{at}: documented as {doc}, got {act}")),
    }
}

/// Parses a run's stdout: one object, `format_version` 1 first, in the shape
/// documented under `heading`.
pub fn assert_documented(heading: &str, run: &Run) -> Value {
    let stdout = run.stdout();
    assert!(
        stdout.starts_with("{\n  \"format_version\": 1,\n"),
        "format_version first:\n{stdout}"
    );
    let value: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("one JSON object on stdout: {e}\n{stdout}"));
    assert_shape(&documented(heading), &value, "$");
    value
}

/// The object of a command that could not do its job (exit 2), whose code
/// is `code` and whose message is the error printed on stderr.
pub fn assert_error(run: &Run, code: &str) -> Value {
    let value = assert_documented("## Machine-readable output", run);
    assert_eq!(value["error"]["code"], code, "{value:#}");
    let message = value["error"]["message"].as_str().unwrap();
    // Invalid files: stderr holds their diagnostics instead.
    assert!(
        code == "invalid-environments" || run.stderr().contains(&format!("error: {message}")),
        "{}",
        run.stderr()
    );
    value
}

/// Commit ids (40 hex digits) replaced by `<sha>`: they hold the time.
fn redact_commits(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_hexdigit()) {
        out.push_str(&rest[..start]);
        let run = rest[start..]
            .find(|c: char| !c.is_ascii_hexdigit())
            .map_or(rest.len() - start, |n| n);
        let word = &rest[start..start + run];
        out.push_str(if run == 40 { "<sha>" } else { word });
        rest = &rest[start + run..];
    }
    out.push_str(rest);
    out
}

#[test]
fn validate_prints_the_files_their_diagnostics_and_a_summary() {
    let project = Project::new();
    let bytes = std::fs::read(repo_root().join("tests/corpus/unknown-key.json")).unwrap();
    project.write("environments/unknown-key.json", bytes);
    let run = project.run(&["validate", "--format", "json"]).expect(1);
    let value = assert_documented("### `validate --format json`", &run);
    assert_eq!(
        value["summary"],
        serde_json::json!({"files": 1, "invalid": 1, "errors": 1, "warnings": 1})
    );
    assert_eq!(value["files"][0]["valid"], false);
    assert!(run.stderr().is_empty(), "{}", run.stderr());
    insta::assert_snapshot!(run.stdout());
}

#[test]
fn validate_prints_a_fatal_error_as_an_object() {
    let project = Project::new();
    let run = project.run(&["validate", "--format", "json"]).expect(2);
    assert_error(&run, "environment");
    insta::assert_snapshot!(run.stdout());
}

#[test]
fn publish_prints_each_deploy_branch() {
    let project = Project::with_examples_in_git();
    let run = project.run(&["publish", "--format", "json"]).expect(0);
    let value = assert_documented("### `publish --format json`", &run);
    let staging = project.git(&["rev-parse", "deploy/staging"]);
    assert_eq!(value["environments"][2]["commit"], staging.trim());
    insta::assert_snapshot!("publish-committed", redact_commits(&run.stdout()));

    let run = project
        .run(&["publish", "--env", "staging", "--format", "json"])
        .expect(0);
    assert_documented("### `publish --format json`", &run);
    insta::assert_snapshot!("publish-unchanged", run.stdout());
}

#[test]
fn publish_lists_what_is_out_of_date() {
    let project = Project::with_examples_in_git();
    project.edit_json("environments/staging.json", |env| {
        env["tracker"]["core"]["announce_policy"]["interval"] = 300.into();
    });
    std::fs::remove_dir_all(project.join("build/stable")).unwrap();
    let run = project.run(&["publish", "--format", "json"]).expect(1);
    let value = assert_documented("### `publish --format json`", &run);
    assert_eq!(value["environments"], serde_json::json!([]));
    let drift = &value["out_of_date"][0];
    assert_shape(
        &serde_json::json!({"environment": "", "directory": "", "exists": true,
            "files": [{"path": "", "change": ""}]}),
        drift,
        "out_of_date[0]",
    );
    insta::assert_snapshot!(run.stdout());
}

#[test]
fn publish_outside_git_prints_an_error_object() {
    let project = Project::with_examples();
    project.run(&["render"]).expect(0);
    let run = project.run(&["publish", "--format", "json"]).expect(2);
    assert_error(&run, "git");
    insta::assert_snapshot!(run.stdout());
}

#[test]
fn invalid_environments_are_an_error_object_too() {
    let project = Project::with_examples_in_git();
    project.write("environments/broken.json", "{");
    let run = project.run(&["publish", "--format", "json"]).expect(2);
    assert_error(&run, "invalid-environments");
    run.expect_stderr("environments/broken.json:1:");
}

#[test]
fn status_without_a_key_prints_an_error_object() {
    let project = Project::with_examples();
    project.edit_json("environments/staging.json", |env| {
        env["deploy"]["host"] = "127.0.0.1".into();
        env["deploy"]["host_key"] = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    });
    let run = project
        .run(&["status", "--env", "staging", "--format", "json"])
        .expect(2);
    let error = assert_error(&run, "deploy");
    assert!(error.to_string().contains("no SSH key"), "{error:#}");
}

#[test]
fn a_command_line_that_cannot_be_parsed_is_an_error_object() {
    let project = Project::new();
    let run = project
        .run(&["status", "--format", "json", "--bogus"])
        .expect(2);
    assert_error(&run, "usage");
    insta::assert_snapshot!(run.stdout());
    // Without JSON asked for: clap's message alone.
    let run = project.run(&["status", "--bogus"]).expect(2);
    assert_eq!(run.stdout(), "");
}

#[test]
fn a_directory_that_cannot_be_entered_is_an_error_object() {
    let project = Project::new();
    let run = project
        .run(&["-C", "missing", "validate", "--format", "json"])
        .expect(2);
    assert_error(&run, "project");
}
