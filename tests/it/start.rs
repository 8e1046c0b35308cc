//! Getting started and finding one's way: the project root found from any
//! directory inside it, `-C`, `init` (what it writes, where it refuses to),
//! `init --github`, unknown `--env` names, completions, the manual page and
//! `--version`.

use crate::harness::{Project, repo_root};

/// The shipped examples, rendered, in a git repository.
fn examples_in_git() -> Project {
    let project = Project::with_examples();
    project.run(&["render"]).expect(0);
    project.git(&["init", "-q", "-b", "main"]);
    project
}

#[test]
fn commands_find_the_root_from_any_directory_inside_it() {
    let project = examples_in_git();
    let from_root = project.run(&["validate"]).expect(0).stderr();
    for dir in ["build/staging/storage", "environments", "build"] {
        let run = project.run(&["-C", dir, "validate"]).expect(0);
        // The same diagnostics, with the same paths: relative to the root.
        assert_eq!(run.stderr(), from_root, "from {dir}");
        let run = project.run(&["-C", dir, "render", "--check"]).expect(0);
        insta::assert_snapshot!("render-check-from-a-subdirectory", run.stdout());
    }
    // A path typed in a subdirectory is taken from there.
    project
        .run(&["-C", "environments", "validate", "staging.json"])
        .expect(0);
    project
        .run(&["-C", "build", "validate", "../environments/stable.json"])
        .expect(0);
    let run = project
        .run(&["-C", "build", "validate", "staging.json"])
        .expect(2);
    insta::assert_snapshot!("typed-path-from-a-subdirectory", run.stderr());
    // `--out .` typed in build/ is build/.
    project
        .run(&["-C", "build", "render", "--check", "--out", "."])
        .expect(0);
}

#[test]
fn the_root_is_the_nearest_directory_holding_environments() {
    let project = Project::new();
    project.git(&["init", "-q", "-b", "main"]);
    project.write(
        "infra/environments/stable.json",
        std::fs::read(repo_root().join("environments/stable.json")).unwrap(),
    );
    project.run(&["-C", "infra", "render"]).expect(0);
    let run = project
        .run(&["-C", "infra/build/stable", "render", "--check"])
        .expect(0);
    assert_eq!(run.stdout(), "build/stable: up to date\n");
    assert!(!project.join("build").exists());
}

#[test]
fn without_environments_the_root_is_the_git_work_tree_top() {
    let project = Project::new();
    project.git(&["init", "-q", "-b", "main"]);
    project.write("docs/README", "");
    project.run(&["-C", "docs", "init", "edge"]).expect(0);
    assert!(project.join("environments/edge.json").is_file());
    assert!(!project.join("docs/environments").exists());
}

#[test]
fn init_never_writes_inside_rendered_output() {
    // In git, from build/: the environment lands beside the others.
    let project = examples_in_git();
    project
        .run(&["-C", "build/staging", "init", "edge"])
        .expect(0);
    assert!(project.join("environments/edge.json").is_file());
    // Told to write there, or outside git in build/: refused, nothing written.
    let run = project
        .run(&["init", "edge-2", "--environments", "build/staging"])
        .expect(2);
    insta::assert_snapshot!("init-inside-build", run.stderr());
    let outside_git = Project::with_examples();
    outside_git.run(&["render"]).expect(0);
    let run = outside_git.run(&["-C", "build", "init", "edge"]).expect(2);
    let project_dir = outside_git.path().canonicalize().unwrap();
    insta::assert_snapshot!(
        "init-in-build-outside-git",
        run.stderr()
            .replace(project_dir.to_str().unwrap(), "<project>")
    );
    assert!(!outside_git.join("build/environments").exists());
    assert!(!outside_git.join("build/schema").exists());
}

#[test]
fn a_missing_c_directory_is_an_error() {
    let run = Project::new().run(&["-C", "nowhere", "validate"]).expect(2);
    assert!(
        run.stderr().starts_with("error: cannot change to nowhere:"),
        "{}",
        run.stderr()
    );
}

#[test]
fn unknown_environments_get_a_suggestion_and_the_list_everywhere() {
    let project = Project::with_examples();
    for args in [
        &["validate", "--env", "prodution"][..],
        &["render", "--env", "prodution"],
        &["plan", "--env", "prodution"],
        &["publish", "--env", "prodution"],
        &["deploy", "--env", "prodution"],
        &["rollback", "--env", "prodution"],
        &["status", "--env", "prodution"],
    ] {
        let run = project.run(args).expect(2);
        insta::assert_snapshot!("unknown-env", run.stderr());
    }
    let run = project
        .run(&["render", "--env", "production.json"])
        .expect(2);
    assert!(
        run.stderr().contains("did you mean `production`?"),
        "{}",
        run.stderr()
    );
    let run = project.run(&["validate", "--env", "qa"]).expect(2);
    insta::assert_snapshot!("unknown-env-unlike-any", run.stderr());
}

#[test]
fn init_github_writes_the_shipped_workflows_pinned_to_this_version() {
    let project = Project::new();
    project.git(&["init", "-q", "-b", "main"]);
    let run = project.run(&["init", "--github"]).expect(0);
    insta::assert_snapshot!("init-github", run.stderr());
    let version = env!("CARGO_PKG_VERSION");
    for name in ["gitops.yml", "gitops-fork-comment.yml"] {
        let written = project.read(&format!(".github/workflows/{name}"));
        let shipped =
            std::fs::read_to_string(repo_root().join(".github/workflows").join(name)).unwrap();
        // The shipped file, but for the version the action is pinned to.
        assert_eq!(unversioned(&written), unversioned(&shipped), "{name}");
        let uses = written.matches("tracker-gitops/tracker-gitops@v").count();
        let at_this_version = written
            .matches(&format!("tracker-gitops/tracker-gitops@v{version}"))
            .count();
        assert_eq!(uses, at_this_version, "{name}");
    }
    assert!(
        project
            .read(".github/workflows/gitops.yml")
            .contains(&format!("uses: tracker-gitops/tracker-gitops@v{version}\n"))
    );
    // Never overwritten: a second run changes nothing.
    project.write(".github/workflows/gitops.yml", "mine\n");
    let run = project.run(&["init", "--github"]).expect(2);
    assert!(
        run.stderr().contains("refusing to overwrite"),
        "{}",
        run.stderr()
    );
    assert_eq!(project.read(".github/workflows/gitops.yml"), "mine\n");
    assert!(!project.join("environments").exists());
}

/// `text` without the versions the action is called at.
fn unversioned(text: &str) -> Vec<&str> {
    text.split("tracker-gitops/tracker-gitops@v")
        .map(|part| part.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.'))
        .collect()
}

#[test]
fn completions_and_the_manual_page_come_from_the_clap_definitions() {
    let project = Project::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = project.run(&["completions", shell]).expect(0);
        let script = run.stdout();
        for word in ["validate", "render", "deploy", "env", "completions"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    project.run(&["completions", "tcsh"]).expect(2);
    let man = project.run(&["man"]).expect(0).stdout();
    assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{man}");
    for section in [
        ".TH tracker-gitops 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(man.contains(section), "no {section} in:\n{man}");
    }
}

#[test]
fn version_names_the_commit() {
    let run = Project::new().run(&["--version"]).expect(0);
    let version = run.stdout();
    let rest = version
        .strip_prefix(&format!("tracker-gitops {} (", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{version}"));
    // Built from this work tree: the commit's first 12 hex digits.
    let head = std::process::Command::new("git")
        .current_dir(repo_root())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    assert_eq!(rest, format!("commit {})\n", head.trim()));
}
