//! `plan --comment` against a stand-in for the GitHub API (wiremock), with real
//! git and the real binary.

use std::path::PathBuf;

use serde_json::{Value, json};
use tokio::runtime::Runtime;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::harness::{Project, Run, repo_root};

const TOKEN: &str = "ghs_fakeTokenThatMustNeverBePrinted0123456789";
const MARKER: &str = "<!-- tracker-gitops:plan -->";
const LIST: &str = "/repos/torrust/tracker-deploy/issues/7/comments";

/// The stand-in API. wiremock serves from a thread of its own, so the tests
/// run the binary synchronously; the runtime only drives set-up and checks.
struct GitHub {
    runtime: Runtime,
    server: MockServer,
}

impl GitHub {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(MockServer::start());
        Self { runtime, server }
    }

    fn mount(&self, mock: Mock) {
        self.runtime.block_on(mock.mount(&self.server));
    }

    /// Comment pages answer GET on `LIST`, with `per_page=100` asked for.
    fn comments(&self, comments: Vec<Value>) {
        self.mount(
            Mock::given(method("GET"))
                .and(path(LIST))
                .and(query_param("per_page", "100"))
                .respond_with(ResponseTemplate::new(200).set_body_json(comments)),
        );
    }

    fn requests(&self) -> Vec<Request> {
        self.runtime
            .block_on(self.server.received_requests())
            .unwrap()
    }

    /// The requests that write (anything but GET), as (method path, body).
    fn writes(&self) -> Vec<(String, Value)> {
        self.requests()
            .iter()
            .filter(|r| r.method.as_str() != "GET")
            .map(|r| {
                (
                    format!("{} {}", r.method, r.url.path()),
                    serde_json::from_slice(&r.body).unwrap(),
                )
            })
            .collect()
    }

    fn reset(&self) {
        self.runtime.block_on(self.server.reset());
    }
}

/// A comment as the API returns it.
fn comment(id: u64, body: &str) -> Value {
    let mut comment: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/fixtures/github/comment.json")).unwrap(),
    )
    .unwrap();
    comment["id"] = id.into();
    comment["body"] = body.into();
    comment["url"] =
        format!("https://api.github.com/repos/torrust/tracker-deploy/issues/comments/{id}").into();
    comment
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/github").join(name)
}

/// The examples committed, with staging's scrape interval changed.
fn prometheus_change() -> Project {
    let project = Project::with_examples_in_git();
    project.edit_json("environments/staging.json", |env| {
        env["prometheus"]["scrape_interval"] = 30.into();
    });
    project
}

/// `plan --base HEAD --comment` in a pull_request workflow, checking that the
/// token shows nowhere.
fn plan_comment(project: &Project, github: &GitHub, event: &str, extra: &[(&str, &str)]) -> Run {
    let mut command = project.command(&["plan", "--base", "HEAD", "--comment"]);
    command
        .env("GITHUB_API_URL", github.server.uri())
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_REPOSITORY", "torrust/tracker-deploy")
        .env("GITHUB_EVENT_PATH", fixture(event))
        .env("GITHUB_STEP_SUMMARY", project.join("summary.md"));
    for (name, value) in extra {
        command.env(name, value);
    }
    let run = Run(command.output().unwrap());
    let summary = std::fs::read_to_string(project.join("summary.md")).unwrap_or_default();
    for (what, text) in [
        ("stdout", run.stdout()),
        ("stderr", run.stderr()),
        ("summary", summary),
    ] {
        assert!(!text.contains(TOKEN), "the token is in {what}:\n{text}");
    }
    run
}

#[test]
fn the_first_run_creates_the_comment_and_later_runs_update_it() {
    let project = prometheus_change();
    let github = GitHub::start();
    github.comments(vec![comment(11, "LGTM")]);
    github.mount(
        Mock::given(method("POST"))
            .and(path(LIST))
            .respond_with(ResponseTemplate::new(201).set_body_json(comment(1001, "created"))),
    );
    let run = plan_comment(&project, &github, "pull_request.json", &[]).expect(0);
    assert!(
        run.stderr().contains("plan posted on #7 (comment 1001)"),
        "{}",
        run.stderr()
    );
    let writes = github.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let (request, body) = &writes[0];
    assert_eq!(request, &format!("POST {LIST}"));
    let posted = body["body"].as_str().unwrap().to_string();
    assert!(posted.starts_with(&format!("{MARKER}\n## tracker-gitops plan\n")));
    assert!(posted.contains("**staging**: 0 to add, 0 to change, 1 to recreate, 0 to remove"));
    let authorization = github.requests()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(authorization.ends_with(TOKEN), "the token authenticates");

    // The next push changes the plan: the same comment is updated, none created.
    github.reset();
    project.edit_json("environments/staging.json", |env| {
        env["prometheus"]["scrape_interval"] = 45.into();
    });
    github.comments(vec![comment(11, "LGTM"), comment(1001, &posted)]);
    // octocrab updates a comment with POST to its URL (GitHub takes POST for PATCH).
    github.mount(
        Mock::given(method("POST"))
            .and(path("/repos/torrust/tracker-deploy/issues/comments/1001"))
            .respond_with(ResponseTemplate::new(200).set_body_json(comment(1001, "updated"))),
    );
    let run = plan_comment(&project, &github, "pull_request.json", &[]).expect(0);
    assert!(run.stderr().contains("plan updated on #7 (comment 1001)"));
    let writes = github.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        writes[0].0,
        "POST /repos/torrust/tracker-deploy/issues/comments/1001"
    );
    let updated = writes[0].1["body"].as_str().unwrap().to_string();
    assert!(updated.contains("+  scrape_interval: 45s"), "{updated}");

    // The same plan again: the comment already says it, nothing is written.
    github.reset();
    github.comments(vec![comment(1001, &updated)]);
    let run = plan_comment(&project, &github, "pull_request.json", &[]).expect(0);
    assert!(run.stderr().contains("is up to date (comment 1001)"));
    assert!(github.writes().is_empty());
}

#[test]
fn the_comment_is_found_past_the_first_hundred() {
    let project = prometheus_change();
    let github = GitHub::start();
    // GitHub's next link names the repository by id; follow it, do not rebuild it.
    let next_path = "/repositories/812734501/issues/7/comments?per_page=100&page=2";
    let next = format!("{}{next_path}", github.server.uri());
    let first: Vec<Value> = (1..=100)
        .map(|id| comment(id, &format!("comment {id}")))
        .collect();
    github.mount(
        Mock::given(method("GET")).and(path(LIST)).respond_with(
            ResponseTemplate::new(200)
                .set_body_json(first)
                .insert_header(
                    "link",
                    format!("<{next}>; rel=\"next\", <{next}>; rel=\"last\"").as_str(),
                ),
        ),
    );
    let mut second: Vec<Value> = (101..=130)
        .map(|id| comment(id, &format!("comment {id}")))
        .collect();
    // Quoting the plan does not make a comment the plan.
    second[5] = comment(106, &format!("> {MARKER}\n> quoted"));
    // Nor does a person's comment that starts with the marker.
    second[10] = comment(111, &format!("{MARKER}\nnot from the workflow"));
    second[10]["user"]["type"] = "User".into();
    second[10]["user"]["login"] = "octocat".into();
    second[24] = comment(4242, &format!("{MARKER}\nan older plan"));
    github.mount(
        Mock::given(method("GET"))
            .and(path("/repositories/812734501/issues/7/comments"))
            .and(query_param("page", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(second)),
    );
    github.mount(
        Mock::given(method("POST"))
            .and(path("/repos/torrust/tracker-deploy/issues/comments/4242"))
            .respond_with(ResponseTemplate::new(200).set_body_json(comment(4242, "updated"))),
    );
    plan_comment(&project, &github, "pull_request.json", &[]).expect(0);
    let gets: Vec<String> = github
        .requests()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .map(|r| format!("{}?{}", r.url.path(), r.url.query().unwrap_or_default()))
        .collect();
    assert_eq!(
        gets,
        [format!("{LIST}?per_page=100"), next_path.to_string()]
    );
    let writes = github.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        writes[0].0,
        "POST /repos/torrust/tracker-deploy/issues/comments/4242"
    );
}

#[test]
fn another_authors_marker_comment_is_never_taken_over() {
    let project = prometheus_change();
    let github = GitHub::start();
    // Another app's bot posted a comment carrying the marker first.
    let mut planted = comment(21, &format!("{MARKER}\nplanted by another app"));
    planted["user"]["login"] = "other-app[bot]".into();
    let ours = comment(22, &format!("{MARKER}\nan older plan"));
    let update = |id: u64| {
        Mock::given(method("POST"))
            .and(path(format!(
                "/repos/torrust/tracker-deploy/issues/comments/{id}"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(comment(id, "updated")))
    };
    github.comments(vec![planted.clone(), ours.clone()]);
    github.mount(update(22));
    let run = plan_comment(&project, &github, "pull_request.json", &[]).expect(0);
    assert!(
        run.stderr().contains("plan updated on #7 (comment 22)"),
        "{}",
        run.stderr()
    );
    let writes = github.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        writes[0].0,
        "POST /repos/torrust/tracker-deploy/issues/comments/22"
    );

    // Only ever one login: commenting as that app adopts its comment instead.
    github.reset();
    github.comments(vec![planted, ours]);
    github.mount(update(21));
    plan_comment(
        &project,
        &github,
        "pull_request.json",
        &[("TRACKER_GITOPS_COMMENT_AUTHOR", "other-app[bot]")],
    )
    .expect(0);
    let writes = github.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        writes[0].0,
        "POST /repos/torrust/tracker-deploy/issues/comments/21"
    );
}

#[test]
fn no_changes_update_an_existing_comment_and_create_none() {
    let project = Project::with_examples_in_git();
    let github = GitHub::start();
    github.comments(vec![]);
    let run = plan_comment(&project, &github, "pull_request.json", &[]).expect(0);
    assert!(
        run.stderr()
            .contains("no changes and no plan comment on #7")
    );
    assert!(github.writes().is_empty());

    github.reset();
    github.comments(vec![comment(77, &format!("{MARKER}\nan older plan"))]);
    github.mount(
        Mock::given(method("POST"))
            .and(path("/repos/torrust/tracker-deploy/issues/comments/77"))
            .respond_with(ResponseTemplate::new(200).set_body_json(comment(77, "updated"))),
    );
    plan_comment(&project, &github, "pull_request.json", &[]).expect(0);
    let writes = github.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let body = writes[0].1["body"].as_str().unwrap();
    assert!(body.contains("0 of 3 environments change"), "{body}");
    assert!(body.contains("- **staging**: no changes\n"), "{body}");
    assert!(!body.contains("<details>"), "{body}");
}

#[test]
fn a_read_only_token_warns_and_keeps_the_job_summary() {
    let project = prometheus_change();
    let github = GitHub::start();
    github.comments(vec![]);
    github.mount(
        Mock::given(method("POST"))
            .and(path(LIST))
            .respond_with(ResponseTemplate::new(403).set_body_json(json!({
                "message": "Resource not accessible by integration",
                "documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
                "status": "403"
            }))),
    );
    let run = plan_comment(
        &project,
        &github,
        "pull_request.json",
        &[("GITHUB_ACTIONS", "true")],
    )
    .expect(0);
    // The warning goes to stderr: stdout holds the Markdown plan alone.
    let err = run.stderr();
    assert!(
        err.contains(
            "::warning::cannot comment on pull request #7: GitHub refused (HTTP 403): Resource not accessible by integration; the plan is in the job summary\n"
        ),
        "{err}"
    );
    assert!(!run.stdout().contains("::warning"), "{}", run.stdout());
    let summary = project.read("summary.md");
    assert!(summary.contains("**staging**: 0 to add, 0 to change, 1 to recreate, 0 to remove"));
}

#[test]
fn other_api_failures_exit_2_without_the_token() {
    let project = prometheus_change();
    let github = GitHub::start();
    github.mount(Mock::given(method("GET")).and(path(LIST)).respond_with(
        ResponseTemplate::new(502).set_body_json(json!({
            "message": "Server Error"
        })),
    ));
    let run = plan_comment(&project, &github, "pull_request.json", &[]).expect(2);
    assert!(
        run.stderr().contains(&format!(
            "error: GitHub API at {}: HTTP 502: Server Error",
            github.server.uri()
        )),
        "{}",
        run.stderr()
    );
    // The plan and the job summary came first.
    assert!(run.stdout().contains("| prometheus | recreated |"));
    assert!(
        project
            .read("summary.md")
            .contains("| prometheus | recreated |")
    );
}

#[test]
fn commenting_needs_a_pull_request_event() {
    let project = prometheus_change();
    let github = GitHub::start();
    let run = plan_comment(&project, &github, "push.json", &[]).expect(2);
    assert!(
        run.stderr()
            .contains("commenting needs a pull_request event"),
        "{}",
        run.stderr()
    );
    assert!(github.requests().is_empty());
}

#[test]
fn a_huge_plan_is_cut_to_fit_a_comment() {
    let project = Project::with_examples_in_git();
    // A stray 300 KB file in the committed build: the render removes it.
    let stray: String = (0..6_000)
        .map(|i| format!("line {i:05} of a file nobody should have committed here\n"))
        .collect();
    assert!(stray.len() > 300_000);
    project.write("build/staging/stray.txt", &stray);
    project.commit_all("a stray file");
    project.edit_json("environments/staging.json", |env| {
        env["prometheus"]["scrape_interval"] = 30.into();
    });
    let github = GitHub::start();
    github.comments(vec![]);
    github.mount(
        Mock::given(method("POST"))
            .and(path(LIST))
            .respond_with(ResponseTemplate::new(201).set_body_json(comment(5, "created"))),
    );
    plan_comment(&project, &github, "pull_request.json", &[]).expect(0);
    let writes = github.writes();
    let body = writes[0].1["body"].as_str().unwrap();
    assert!(body.chars().count() < 65_536, "{} characters", body.len());
    assert!(body.starts_with(MARKER));
    assert!(body.contains("- **staging**: 0 to add, 0 to change, 1 to recreate, 0 to remove\n"));
    assert!(body.contains("| prometheus | recreated | config `build/staging/"));
    assert!(body.contains("The full plan is in the job summary."));
    assert!(
        body.contains("<details><summary>build/staging/stray.txt (removed)</summary>\n\nDiff left out (6003 lines): see the job summary."),
        "{body}"
    );
    // Smaller diffs still fit.
    assert!(body.contains("+  scrape_interval: 30s"));
    let summary = project.read("summary.md");
    assert!(summary.contains(&format!("-{}", stray.lines().last().unwrap())));
}
