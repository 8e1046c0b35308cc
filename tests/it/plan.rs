//! `plan`: the examples committed in a real git repository, changed in the work
//! tree, and planned against the commit.

use serde_json::Value;

use crate::harness::{Project, Run, repo_root};

/// The examples rendered and committed, with staging's scrape interval changed.
fn prometheus_change() -> Project {
    let project = Project::with_examples_in_git();
    project.edit_json("environments/staging.json", |env| {
        env["prometheus"]["scrape_interval"] = 30.into();
    });
    project
}

fn plan(project: &Project, args: &[&str]) -> Run {
    Run(project
        .command(&[&["plan"], args].concat())
        .output()
        .unwrap())
}

#[test]
fn a_prometheus_only_change_recreates_prometheus_alone() {
    let project = prometheus_change();
    let summary = project.join("summary.md");
    let outputs = project.join("outputs");
    let run = Run(project
        .command(&["plan", "--base", "HEAD"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .env("RUNNER_TEMP", project.join(""))
        .output()
        .unwrap())
    .expect(0);
    let out = run.stdout();
    assert!(
        out.contains("- **staging**: prometheus: recreated; tracker: unchanged\n"),
        "{out}"
    );
    assert!(out.contains("- **stable**: no changes\n"), "{out}");
    assert!(out.contains("- **production**: no changes\n"), "{out}");
    assert!(
        out.contains("| prometheus | recreated | config |\n"),
        "{out}"
    );
    assert!(out.contains("| tracker | unchanged |  |\n"), "{out}");
    assert!(
        out.contains(
            "<details><summary>build/staging/storage/prometheus/etc/prometheus.yml (changed)</summary>\n\n```diff\n\
             --- a/build/staging/storage/prometheus/etc/prometheus.yml\n\
             +++ b/build/staging/storage/prometheus/etc/prometheus.yml\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("-  scrape_interval: 15s\n+  scrape_interval: 30s\n"),
        "{out}"
    );
    // Only staging's files, and no diagram: the topology is the same.
    assert!(!out.contains("### production") && !out.contains("### stable"));
    assert!(!out.contains("```mermaid"), "{out}");
    assert_eq!(project.read("summary.md"), format!("{out}\n"));
    // Every output the action declares, the plan file holding stdout's Markdown.
    let plan_file = project.join("tracker-gitops-plan.md");
    assert_eq!(
        project.read("outputs"),
        format!("changed=[\"staging\"]\nplan-file={}\n", plan_file.display())
    );
    assert_eq!(project.read("tracker-gitops-plan.md"), out);
}

#[test]
fn removing_prometheus_changes_the_topology() {
    let project = Project::with_examples_in_git();
    project.edit_json("environments/staging.json", |env| {
        env.as_object_mut().unwrap().remove("prometheus");
    });
    let out = plan(&project, &["--base", "HEAD"]).expect(0).stdout();
    assert!(
        out.contains("- **staging**: prometheus: removed; tracker: recreated\n"),
        "{out}"
    );
    assert!(
        out.contains("| prometheus | removed | `prom/prometheus:v3.0.1`; published `127.0.0.1:9090→9090/tcp` |"),
        "{out}"
    );
    assert!(out.contains("| tracker | recreated | networks |"), "{out}");
    assert!(out.contains("Networks: −`metrics`"), "{out}");
    assert!(out.contains("Volumes: −`prometheus_data`"), "{out}");
    let mermaid = out
        .split_once("```mermaid\n")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .map(|(diagram, _)| diagram)
        .unwrap_or_else(|| panic!("no mermaid block:\n{out}"));
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(
        mermaid.contains("svc_tracker[\"tracker<br/>torrust/tracker:develop\"]"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("internet -->|\"0.0.0.0:6969→6969/udp\"| svc_tracker"),
        "{mermaid}"
    );
    assert!(
        !mermaid.contains("prometheus"),
        "the diagram is the new stack"
    );
    assert!(
        out.contains("<details><summary>build/staging/storage/prometheus/etc/prometheus.yml (removed)</summary>"),
        "{out}"
    );
}

#[test]
fn new_and_removed_environments() {
    let project = Project::with_examples_in_git();
    std::fs::remove_file(project.join("environments/stable.json")).unwrap();
    project.write(
        "environments/canary.json",
        std::fs::read(repo_root().join("environments/stable.json")).unwrap(),
    );
    let out = plan(&project, &["--base", "HEAD"]).expect(0).stdout();
    assert!(
        out.contains("- **canary**: new environment — tracker: added\n"),
        "{out}"
    );
    assert!(out.contains("- **stable**: removed environment\n"), "{out}");
    assert!(out.contains("2 of 4 environments change"), "{out}");
    // A selection says nothing about environments it leaves out.
    let out = plan(&project, &["--base", "HEAD", "--env", "staging"])
        .expect(0)
        .stdout();
    assert!(out.contains("0 of 1 environment change"), "{out}");
    assert!(!out.contains("stable"), "{out}");
}

#[test]
fn the_base_defaults_to_the_pull_requests_base_then_main() {
    let project = prometheus_change();
    let first = project.git(&["rev-parse", "HEAD"]).trim().to_string();
    // A later commit on main that already has the change: against it, nothing changes.
    project.run(&["render"]).expect(0);
    project.commit_all("scrape every 30 seconds");
    let out = plan(&project, &[]).expect(0).stdout();
    assert!(
        out.contains("at `main`: 0 of 3 environments change"),
        "{out}"
    );

    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/fixtures/github/pull_request.json"))
            .unwrap(),
    )
    .unwrap();
    event["pull_request"]["base"]["sha"] = first.clone().into();
    project.write("event.json", event.to_string());
    let run = Run(project
        .command(&["plan"])
        .env("GITHUB_EVENT_PATH", project.join("event.json"))
        .output()
        .unwrap())
    .expect(0);
    let out = run.stdout();
    assert!(out.contains(&format!("at `{first}`: 1 of 3")), "{out}");
    assert!(out.contains("**staging**: prometheus: recreated; tracker: unchanged"));
}

#[test]
fn works_from_a_subdirectory_with_relative_paths() {
    let project = prometheus_change();
    let run = Run(project
        .command(&[
            "plan",
            "--base",
            "HEAD",
            "--environments",
            "../environments",
            "--out",
            "../build",
        ])
        .current_dir(project.join("environments"))
        .output()
        .unwrap())
    .expect(0);
    assert!(
        run.stdout()
            .contains("**staging**: prometheus: recreated; tracker: unchanged")
    );
}

#[test]
fn failures_exit_2() {
    let project = prometheus_change();
    let run = plan(&project, &["--base", "no-such-ref"]).expect(2);
    assert!(
        run.stderr()
            .contains("cannot find revision `no-such-ref`: revspec 'no-such-ref' not found"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("fetch-depth: 0"));

    project.write("environments/staging.json", "{ \"tracker\": 1 }");
    let run = plan(&project, &["--base", "HEAD"]).expect(2);
    assert!(run.stderr().contains("environments/staging.json"));
    assert!(
        run.stderr()
            .contains("nothing planned: fix the errors above first")
    );
    assert_eq!(run.stdout(), "");

    let outside = Project::with_examples();
    let run = plan(&outside, &["--base", "HEAD"]).expect(2);
    assert!(
        run.stderr().contains("error: not in a git repository"),
        "{}",
        run.stderr()
    );
}
