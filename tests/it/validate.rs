//! `validate`, `init` and `schema` against the shipped examples and the corpus of
//! bad files in `tests/corpus/`, each with the exact diagnostics it must produce:
//! one file per case, and in `tests/corpus/cross/<case>/` sets of files that
//! are each valid alone but collide (the rules across files).

use crate::harness::{Project, repo_root};

#[test]
fn the_shipped_examples_are_valid() {
    let run = Project::with_examples().run(&["validate"]).expect(0);
    assert!(
        run.stderr().contains("3 files checked: all valid"),
        "{}",
        run.stderr()
    );
}

/// Runs `validate` on one corpus file copied into `environments/`.
fn validate_corpus_file(name: &str, extra_env: &[(&str, &str)]) -> (i32, String, String) {
    let project = Project::new();
    let bytes = std::fs::read(repo_root().join("tests/corpus").join(name)).unwrap();
    project.write(&format!("environments/{name}"), bytes);
    let mut command = project.command(&["validate", &format!("environments/{name}")]);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_corpus_case_gives_its_diagnostics() {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("tests/corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 30, "the corpus is incomplete: {names:?}");
    for name in names {
        let (code, stdout, stderr) = validate_corpus_file(&name, &[]);
        assert_eq!(code, 1, "{name} should be invalid:\n{stderr}");
        assert!(stdout.is_empty(), "{name}: diagnostics go to stderr");
        assert!(
            stderr.starts_with(&format!("environments/{name}:")),
            "{name}: the first line names the file, line and column:\n{stderr}"
        );
        let stem = name.trim_end_matches(".json");
        insta::assert_snapshot!(format!("corpus-{stem}"), stderr);
    }
}

/// `tests/corpus/warnings/`: files that are valid but warned about, each
/// with its expected warnings.
#[test]
fn every_warning_corpus_case_gives_its_warnings() {
    let dir = repo_root().join("tests/corpus/warnings");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 2, "the corpus is incomplete: {names:?}");
    for name in names {
        let project = Project::new();
        project.write(
            &format!("environments/{name}"),
            std::fs::read(dir.join(&name)).unwrap(),
        );
        let run = project.run(&["validate"]).expect(0);
        assert!(
            run.stderr().contains(": warning: "),
            "{name}: {}",
            run.stderr()
        );
        let stem = name.trim_end_matches(".json");
        insta::assert_snapshot!(format!("corpus-warnings-{stem}"), run.stderr());
    }
}

#[test]
fn secrets_in_the_wrong_place_are_never_echoed() {
    let (_, stdout, stderr) = validate_corpus_file("literal-secret.json", &[]);
    assert!(stderr.contains("must be a secret reference"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stdout.contains("hunter2"));
    let run = Project::new()
        .write(
            "environments/literal-secret.json",
            std::fs::read(repo_root().join("tests/corpus/literal-secret.json")).unwrap(),
        )
        .run(&["validate", "--format", "json"]);
    assert!(!run.stdout().contains("hunter2"));
}

#[test]
fn github_actions_get_workflow_commands() {
    // On stderr, like every diagnostic: stdout carries data only.
    let (code, _, stderr) = validate_corpus_file("unknown-key.json", &[("GITHUB_ACTIONS", "true")]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "::error file=environments/unknown-key.json,line=53,col=5,title=tracker-gitops error [unknown-key]::unknown key `scrape_intervall` in `prometheus`%0Ahint: did you mean `scrape_interval`?"
        ),
        "{stderr}"
    );
    let examples = Project::with_examples();
    let mut examples = examples.command(&["validate"]);
    let run = examples.env("GITHUB_ACTIONS", "true").output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("::warning file=environments/staging.json,line=5,col=14"),
        "{stderr}"
    );
}

#[test]
fn json_output_lists_every_problem_with_its_position() {
    let project = Project::new();
    let bytes = std::fs::read(repo_root().join("tests/corpus/many-problems.json")).unwrap();
    project.write("environments/many-problems.json", bytes);
    let run = project.run(&["validate", "--format", "json"]).expect(1);
    let output: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let diagnostics = &output["files"][0]["diagnostics"];
    let positions: Vec<_> = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
                d["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(positions.len(), 3, "{diagnostics:#}");
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted, "sorted by position");
    assert_eq!(diagnostics[0]["pointer"], "/tracker/http_api");
    assert_eq!(diagnostics[2]["message"], "unknown key `prot` in `deploy`");
    assert_eq!(diagnostics[2]["hint"], "did you mean `port`?");
}

#[test]
fn a_50_megabyte_file_is_refused_quickly() {
    let project = Project::new();
    let mut big = b"{\"description\": \"".to_vec();
    big.resize(50 * 1024 * 1024, b'x');
    big.extend_from_slice(b"\"}");
    project.write("environments/big.json", big);
    let run = project.run(&["validate"]).expect(1);
    assert!(
        run.stderr().contains("environment files are limited to"),
        "{}",
        run.stderr()
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    let project = Project::new();
    project
        .run(&["validate", "environments/missing.json"])
        .expect(2);
    let run = project.run(&["validate"]).expect(2);
    assert_eq!(
        run.stderr(),
        "error: cannot list environments in environments: No such file or directory (os error 2)\n"
    );
    project.write("environments/README.md", "not an environment");
    let run = project.run(&["validate"]).expect(2);
    assert!(
        run.stderr().contains("no environment files"),
        "{}",
        run.stderr()
    );
    project.run(&["validate", "--format", "yaml"]).expect(2);
}

#[test]
fn init_writes_a_valid_environment_on_the_release_and_never_overwrites() {
    let project = Project::new();
    let run = project.run(&["init", "edge-1"]).expect(0);
    insta::assert_snapshot!("init-stderr", run.stderr());
    let written: serde_json::Value =
        serde_json::from_str(&project.read("environments/edge-1.json")).unwrap();
    // A release tag, which does not move: no moving-tag warning, and no
    // Prometheus, which the release cannot feed.
    assert_eq!(written["tracker"]["image"], "torrust/tracker:3.0.0");
    assert!(written.get("prometheus").is_none());
    assert_eq!(written["$schema"], "../schema/environment.schema.json");
    assert!(project.join("schema/environment.schema.json").is_file());
    // Valid, with the placeholders (and nothing else) reported.
    let run = project.run(&["validate"]).expect(0);
    insta::assert_snapshot!("init-validate", run.stderr());
    let run = project.run(&["init", "edge-1"]).expect(2);
    assert!(
        run.stderr().contains("refusing to overwrite"),
        "{}",
        run.stderr()
    );
    project.run(&["init", "Edge_1"]).expect(2);
    // A second environment keeps the schema copy and says so.
    let run = project.run(&["init", "edge-2"]).expect(0);
    assert!(
        run.stderr().contains("kept schema/environment.schema.json"),
        "{}",
        run.stderr()
    );
}

#[test]
fn schema_prints_the_committed_schema() {
    let run = Project::new().run(&["schema"]).expect(0);
    let committed =
        std::fs::read_to_string(repo_root().join("schema/environment.schema.json")).unwrap();
    assert_eq!(run.stdout(), committed);
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

/// A project holding the files of one cross-file corpus case in `environments/`.
fn cross_corpus_case(case: &str) -> Project {
    Project::with_environments_from(&repo_root().join("tests/corpus/cross").join(case))
}

#[test]
fn every_cross_file_corpus_case_gives_its_diagnostics() {
    let mut cases: Vec<String> = std::fs::read_dir(repo_root().join("tests/corpus/cross"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 6,
        "the cross-file corpus is incomplete: {cases:?}"
    );
    for case in cases {
        let project = cross_corpus_case(&case);
        let run = project.run(&["validate"]);
        assert_eq!(run.code(), 1, "{case} should be invalid:\n{}", run.stderr());
        // Each file alone is valid: only the set is wrong.
        for entry in std::fs::read_dir(project.join("environments")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let alone = project.run(&["validate", &format!("environments/{name}")]);
            if case != "branch-outside-namespace" {
                alone.expect(0);
            }
        }
        insta::assert_snapshot!(format!("cross-{case}"), run.stderr());
    }
}

#[test]
fn cross_file_diagnostics_locate_both_files_in_json_and_workflow_commands() {
    let project = cross_corpus_case("copied-file");
    let run = project.run(&["validate", "--format", "json"]).expect(1);
    insta::assert_snapshot!("cross-copied-file-json", run.stdout());
    let output = project
        .command(&["validate"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "::error file=environments/staging.json,line=28,col=15,title=tracker-gitops error [branch-collision]::\
             deploy branch `deploy/production` is also the deploy branch of `production`\
             %0Anote: environments/production.json:28:15: `production` deploys from `deploy/production`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("::error file=environments/production.json,line=27,col=13,"),
        "{stderr}"
    );
}

#[test]
fn files_named_on_the_command_line_are_checked_together() {
    let project = cross_corpus_case("copied-file");
    project
        .run(&["validate", "environments/staging.json"])
        .expect(0);
    project
        .run(&[
            "validate",
            "environments/staging.json",
            "environments/production.json",
        ])
        .expect(1)
        .expect_stderr("2 files checked: 2 invalid");
}

#[test]
fn the_branch_prefix_sets_the_namespace_and_cannot_be_empty() {
    let project = cross_corpus_case("branch-of-another");
    project
        .run(&["validate", "--branch-prefix", "release/"])
        .expect(1)
        .expect_stderr(
            "environments/canary.json:28:15: error: \
             deploy branch `deploy/stable` is outside the deploy namespace `release/`",
        );
    project
        .run(&["validate", "--branch-prefix", ""])
        .expect(2)
        .expect_stderr("the deploy branch prefix is empty");
}

#[test]
fn a_deploy_branch_is_never_the_checked_out_branch() {
    let project = cross_corpus_case("branch-of-another");
    std::fs::remove_file(project.join("environments/canary.json")).unwrap();
    project.git(&["init", "-q", "-b", "deploy/stable"]);
    project.run(&["validate"]).expect(1).expect_stderr(
        "environments/stable.json:23:3: error: \
         deploy branch `deploy/stable` is the branch checked out here (the source)",
    );
    project.git(&["checkout", "-q", "-b", "main"]);
    project.run(&["validate"]).expect(0);
}

/// Every command that loads environments refuses a collision, and one that
/// works on a single environment checks it against every other file.
#[test]
fn render_plan_publish_and_deploy_refuse_colliding_environments() {
    let project = Project::with_examples();
    project.write(
        "environments/staging.json",
        project.read("environments/production.json"),
    );
    for args in [
        &["render"][..],
        &["render", "--check"],
        &["plan", "--base", "HEAD"],
        &["publish"],
        &["render", "--env", "production"],
        &["publish", "--env", "staging"],
    ] {
        project
            .run(args)
            .expect(2)
            .expect_stderr("is also the deploy branch of");
    }
    assert!(!project.join("build").exists(), "nothing was written");
    // An environment that collides with nothing is still rendered alone.
    project.run(&["render", "--env", "stable"]).expect(0);
    // Refused before any secret is read or any connection is made.
    let run = project
        .command(&["deploy", "--env", "production"])
        .env("TRACKER_GITOPS_SSH_KEY", "not a key")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("environments/production.json:")
            && stderr.contains("is also the deploy branch of `staging`")
            && stderr.contains("note: environments/staging.json:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret") && !stderr.contains("ssh"),
        "{stderr}"
    );
}

#[test]
fn file_names_cannot_inject_workflow_commands() {
    let project = Project::new();
    project.write(
        "environments/x\n::error::pwned.json",
        std::fs::read(repo_root().join("environments/stable.json")).unwrap(),
    );
    let output = project
        .command(&["validate"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    // The runner reads commands from both streams, and breaks lines at `\r` too.
    for line in stdout.split(['\n', '\r']).chain(stderr.split(['\n', '\r'])) {
        assert!(!line.starts_with("::error::pwned"), "{stdout}\n{stderr}");
    }
    assert!(
        stderr.starts_with("environments/x\\n::error::pwned.json:1:1: error: environment name"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("\n::error file=environments/x%0A%3A%3Aerror%3A%3Apwned.json,line=1,col=1,"),
        "{stderr}"
    );
    assert_eq!(stdout, "");
}
