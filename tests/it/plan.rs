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

/// The changes a reviewer meets most, each made to the committed examples.
fn reviewed_change(name: &str) -> Project {
    let project = Project::with_examples_in_git();
    match name {
        "announce-interval" => project.edit_json("environments/staging.json", |env| {
            env["tracker"]["core"]["announce_policy"]["interval"] = 300.into();
        }),
        "prometheus-off" => project.edit_json("environments/staging.json", |env| {
            env.as_object_mut().unwrap().remove("prometheus");
        }),
        "second-udp-tracker" => project.edit_json("environments/staging.json", |env| {
            let udp = env["tracker"]["udp_trackers"].as_array_mut().unwrap();
            udp.push(serde_json::json!({ "bind_address": "0.0.0.0:6868" }));
        }),
        "new-environment" => {
            project.write(
                "environments/canary.json",
                std::fs::read(repo_root().join("environments/stable.json")).unwrap(),
            );
            project.edit_json("environments/canary.json", |env| {
                env["description"] = "Canary of the next release".into();
                env["deploy"]["path"] = "/srv/tracker-gitops/canary".into();
            });
        }
        "https-on" => project.edit_json("environments/stable.json", |env| {
            env["tracker"]["http_trackers"][0]["domain"] = "tracker.example.net".into();
            env["https"] = serde_json::json!({ "email": "ops@example.net" });
        }),
        "acme-contact" => project.edit_json("environments/production.json", |env| {
            env["https"]["email"] = "security@example.org".into();
        }),
        "no-change" => {}
        other => panic!("no change {other}"),
    }
    project
}

const REVIEWED_CHANGES: [&str; 7] = [
    "announce-interval",
    "prometheus-off",
    "second-udp-tracker",
    "new-environment",
    "https-on",
    "acme-contact",
    "no-change",
];

/// Each change planned, as Markdown and as JSON: the snapshots are what a
/// reviewer and a script get.
#[test]
fn reviewed_changes_as_markdown_and_json() {
    for name in REVIEWED_CHANGES {
        let project = reviewed_change(name);
        let markdown = plan(&project, &["--base", "HEAD"]).expect(0).stdout();
        insta::assert_snapshot!(format!("{name}-markdown"), markdown);
        let json = plan(&project, &["--base", "HEAD", "--format", "json"])
            .expect(0)
            .stdout();
        serde_json::from_str::<Value>(&json).unwrap();
        assert!(json.starts_with("{\n  \"format_version\": 1,\n"), "{json}");
        insta::assert_snapshot!(format!("{name}-json"), json);
    }
}

#[test]
fn the_json_plan_keeps_what_the_markdown_leaves_out() {
    let project = reviewed_change("announce-interval");
    let markdown = plan(&project, &["--base", "HEAD"]).expect(0).stdout();
    let run = plan(&project, &["--base", "HEAD", "--format", "json"]).expect(0);
    let json: Value = serde_json::from_str(&run.stdout()).unwrap();
    let staging = &json["environments"][2];
    assert_eq!(staging["name"], "staging");
    let internal: Vec<_> = staging["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["internal"] == true)
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(internal, ["build/staging/.tracker-gitops/stack.json"]);
    assert!(!markdown.contains(".tracker-gitops"), "{markdown}");
    // The config hash changes once in the Markdown: in the compose file.
    assert_eq!(markdown.matches("config-hash").count(), 2, "{markdown}");
    assert_eq!(json["changed"], serde_json::json!(["staging"]));
    assert_eq!(
        json["counts"],
        serde_json::json!({"add": 0, "change": 0, "recreate": 1, "remove": 0})
    );
}

#[test]
fn detailed_exitcode_says_whether_anything_changes() {
    let changed = reviewed_change("announce-interval");
    plan(&changed, &["--base", "HEAD", "--detailed-exitcode"]).expect(2);
    let unchanged = reviewed_change("no-change");
    plan(&unchanged, &["--base", "HEAD", "--detailed-exitcode"]).expect(0);
    // Without the flag, changes or not: 0.
    plan(&changed, &["--base", "HEAD"]).expect(0);
    // Could not plan: 1 with the flag (2 is taken), 2 without.
    plan(&changed, &["--base", "no-such-ref", "--detailed-exitcode"])
        .expect(1)
        .expect_stderr("cannot find revision `no-such-ref`");
    plan(&changed, &["--base", "no-such-ref"]).expect(2);
}

#[test]
fn a_failed_json_plan_still_prints_an_object() {
    let project = reviewed_change("no-change");
    let run = plan(&project, &["--base", "no-such-ref", "--format", "json"]).expect(2);
    let json: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["error"]["code"], "plan");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot find revision `no-such-ref`"),
        "{json}"
    );
}

/// The README's annotated example is this plan, byte for byte. With
/// `UPDATE_README=1` the test writes the plan there instead (then review the
/// README's annotations).
#[test]
fn the_readme_example_is_a_real_plan() {
    const BEGIN: &str = "<!-- plan-example: begin -->\n````markdown\n";
    const END: &str = "````\n<!-- plan-example: end -->";
    let project = reviewed_change("second-udp-tracker");
    let markdown = plan(&project, &["--base", "HEAD", "--env", "staging"])
        .expect(0)
        .stdout();
    let path = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (before, rest) = readme.split_once(BEGIN).expect("the example's start");
    let (example, after) = rest.split_once(END).expect("the example's end");
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, format!("{before}{BEGIN}{markdown}{END}{after}")).unwrap();
    } else {
        assert_eq!(
            example, markdown,
            "the README's plan example is stale: run this test with UPDATE_README=1"
        );
    }
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
        out.contains("- **staging**: 0 to add, 0 to change, 1 to recreate, 0 to remove\n"),
        "{out}"
    );
    assert!(out.contains("- **stable**: no changes\n"), "{out}");
    assert!(out.contains("- **production**: no changes\n"), "{out}");
    assert!(
        out.contains(
            "| prometheus | recreated | config `build/staging/storage/prometheus/etc/prometheus.yml` |\n"
        ),
        "{out}"
    );
    assert!(out.contains("Unchanged: tracker.\n"), "{out}");
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
        out.contains("- **staging**: 0 to add, 0 to change, 1 to recreate, 1 to remove\n"),
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
        out.contains(
            "- **canary**: new environment: 1 to add, 0 to change, 0 to recreate, 0 to remove\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "- **stable**: removed environment: 0 to add, 0 to change, 0 to recreate, 1 to remove\n"
        ),
        "{out}"
    );
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
    assert!(out.contains("**staging**: 0 to add, 0 to change, 1 to recreate, 0 to remove"));
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
            .contains("**staging**: 0 to add, 0 to change, 1 to recreate, 0 to remove")
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

/// A base rendered before stacks recorded their endpoints (an older
/// tracker-gitops): upgrading shows no endpoint as new, and environments
/// whose own record alone changes get a line, no section.
#[test]
fn a_base_without_recorded_endpoints() {
    let project = reviewed_change("announce-interval");
    for env in ["production", "stable", "staging"] {
        let path = format!("build/{env}/.tracker-gitops/stack.json");
        project.edit_json(&path, |manifest| {
            manifest["stack"]
                .as_object_mut()
                .unwrap()
                .remove("endpoints");
        });
    }
    project.commit_all("rendered by an older tracker-gitops");
    let out = plan(&project, &["--base", "HEAD"]).expect(0).stdout();
    assert!(
        out.contains("- **stable**: only tracker-gitops's own record changes, no service does\n"),
        "{out}"
    );
    assert!(!out.contains("### stable"), "{out}");
    assert!(
        out.contains("| UDP tracker | `udp://0.0.0.0:6969/announce` (public) | unchanged |"),
        "{out}"
    );
    assert!(!out.contains("| — |"), "{out}");
}
