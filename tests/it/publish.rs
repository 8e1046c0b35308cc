//! `publish` against real repositories: a source repository and a bare
//! "origin", inspected with the git CLI.

use serde_json::json;

use crate::harness::{Project, Run};

#[test]
fn first_publish_creates_branches_then_nothing_changes() {
    let project = Project::with_examples_in_git();
    let head = project.git(&["rev-parse", "HEAD"]);
    let outputs = project.join(".git/github-output");
    let run = project
        .command(&["publish", "--remote", "origin", "--push"])
        .env("GITHUB_OUTPUT", &outputs)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let output = std::fs::read_to_string(&outputs).unwrap();
    let (published, environments) = output.trim().split_once('\n').unwrap();
    let published: serde_json::Value =
        serde_json::from_str(published.strip_prefix("published=").unwrap()).unwrap();
    assert_eq!(published.as_object().unwrap().len(), 3);
    assert_eq!(
        environments,
        r#"published-environments=["production","stable","staging"]"#
    );

    // The branch holds exactly build/<env>/ plus the provenance file, with no parent.
    let files = project.origin_git(&["ls-tree", "-r", "--name-only", "deploy/staging"]);
    let mut expected: Vec<String> = project
        .git(&["ls-files", "build/staging"])
        .lines()
        .map(|l| l.trim_start_matches("build/staging/").to_string())
        .collect();
    expected.push(".tracker-gitops/source.json".into());
    expected.sort();
    let mut files: Vec<String> = files.lines().map(str::to_string).collect();
    files.sort();
    assert_eq!(files, expected);
    for file in ["docker-compose.yml", "storage/tracker/etc/tracker.toml"] {
        assert_eq!(
            project.origin_git(&["show", &format!("deploy/staging:{file}")]),
            project.read(&format!("build/staging/{file}")),
        );
    }
    assert_eq!(
        project
            .origin_git(&["rev-list", "--count", "deploy/staging"])
            .trim(),
        "1"
    );
    let source: serde_json::Value = serde_json::from_str(
        &project.origin_git(&["show", "deploy/staging:.tracker-gitops/source.json"]),
    )
    .unwrap();
    assert_eq!(source["commit"], head.trim());
    assert_eq!(source["environment_file"], "environments/staging.json");
    assert_eq!(source["ref"], "refs/heads/main");

    let message = project.origin_git(&["log", "-1", "--format=%B", "deploy/production"]);
    let trailers = crate::harness::tool("git")
        .args(["interpret-trailers", "--parse"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(message.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let trailers = String::from_utf8(trailers.stdout).unwrap();
    assert_eq!(
        trailers,
        format!(
            "Source-Commit: {}\nSource-Ref: refs/heads/main\nEnvironment: production\n",
            head.trim()
        )
    );
    project.origin_git(&["fsck", "--strict"]);

    // HEAD, the index and the working tree were not touched.
    assert_eq!(project.git(&["rev-parse", "HEAD"]), head);
    assert_eq!(project.git(&["status", "--porcelain"]), "");

    let run = project
        .run(&["publish", "--remote", "origin", "--push"])
        .expect(0);
    assert_eq!(
        run.stdout(),
        "production: unchanged (deploy/production)\nstable: unchanged (deploy/stable)\nstaging: unchanged (deploy/staging)\n"
    );
    assert_eq!(
        project
            .origin_git(&["rev-list", "--count", "deploy/staging"])
            .trim(),
        "1"
    );
}

#[test]
fn a_change_makes_exactly_one_commit_and_removed_files_disappear() {
    let project = Project::with_examples_in_git();
    project
        .run(&["publish", "--remote", "origin", "--push"])
        .expect(0);
    project.edit_json("environments/staging.json", |env| {
        env.as_object_mut().unwrap().remove("prometheus");
    });
    project.run(&["render"]).expect(0);
    project.commit_reviewed("drop prometheus from staging");
    let run = project
        .run(&["publish", "--remote", "origin", "--push"])
        .expect(0);
    assert!(
        run.stdout().contains("stable: unchanged"),
        "{}",
        run.stdout()
    );
    assert_eq!(
        project
            .origin_git(&["rev-list", "--count", "deploy/staging"])
            .trim(),
        "2"
    );
    assert_eq!(
        project
            .origin_git(&["rev-list", "--count", "deploy/stable"])
            .trim(),
        "1"
    );
    let subject = project.origin_git(&["log", "-1", "--format=%s", "deploy/staging"]);
    assert!(subject.starts_with("staging: deploy "), "{subject}");
    assert!(subject.contains("prometheus removed"), "{subject}");
    let files = project.origin_git(&["ls-tree", "-r", "--name-only", "deploy/staging"]);
    assert!(!files.contains("prometheus.yml"), "{files}");
    let tree = project.origin_git(&["rev-parse", "deploy/staging^{tree}"]);
    let expected = tracker_gitops::tree::Tree::read_dir(&project.join("build/staging")).unwrap();
    assert_eq!(files.lines().count(), expected.len() + 1, "{tree}");
}

#[test]
fn a_stale_build_or_uncommitted_source_is_refused() {
    let project = Project::with_examples_in_git();
    project.edit_json("environments/stable.json", |env| {
        env["tracker"]["core"]["announce_policy"]["interval"] = json!(600);
    });
    let run = project.run(&["publish"]).expect(1);
    assert!(
        run.stdout()
            .contains("build/stable: out of date (3 to update)"),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("+interval = 600"), "{}", run.stdout());
    project.run(&["render"]).expect(0);
    let run = project.run(&["publish"]).expect(2);
    assert!(
        run.stderr().contains("uncommitted changes"),
        "{}",
        run.stderr()
    );
    assert!(project.git(&["branch", "--list", "deploy/*"]).is_empty());
}

#[test]
fn the_environments_own_branch_wins_and_local_publish_needs_no_remote() {
    let project = Project::with_examples_in_git();
    let run = project
        .run(&["publish", "--env", "stable", "--branch-prefix", "release/"])
        .expect(0);
    assert!(run.stdout().starts_with("stable: "), "{}", run.stdout());
    project.git(&["rev-parse", "--verify", "release/stable"]);
    project.run(&["publish", "--env", "production"]).expect(0);
    // production.json names its branch explicitly.
    project.git(&["rev-parse", "--verify", "deploy/production"]);
}

/// Two publishers with different changes push to one origin at the same time:
/// both commits end up in a linear history, nothing is forced or lost.
#[test]
fn racing_publishers_both_land() {
    let project = Project::with_examples_in_git();
    publish_staging(&project);
    let daemon = GitDaemon::serve(project.path());
    let origin_url = &daemon.url("origin.git");
    // Two merges in a row on origin's main (b's on top of a's), each
    // publishing from its own clone.
    for (clone, interval) in [("a", 30), ("b", 60)] {
        // The clone holds the source from the project, with origin as its remote.
        project.git(&["clone", "-q", project.path().to_str().unwrap(), clone]);
        project.git_in(clone, &["remote", "set-url", "origin", origin_url]);
        project.git_in(clone, &["pull", "-q", "--ff-only", "origin", "main"]);
        project.edit_json(&format!("{clone}/environments/staging.json"), |env| {
            env["prometheus"]["scrape_interval"] = json!(interval);
        });
        let render = std::process::Command::new(env!("CARGO_BIN_EXE_tracker-gitops"))
            .current_dir(project.join(clone))
            .arg("render")
            .output()
            .unwrap();
        assert!(render.status.success());
        project.git_in(clone, &["add", "-A"]);
        project.git_in(clone, &["commit", "-qm", "change"]);
        project.git_in(clone, &["push", "-q", "origin", "HEAD:main"]);
    }
    let binary = env!("CARGO_BIN_EXE_tracker-gitops");
    let handles: Vec<_> = ["a", "b"]
        .iter()
        .map(|clone| {
            let dir = project.join(clone);
            std::thread::spawn(move || {
                std::process::Command::new(binary)
                    .current_dir(&dir)
                    .args([
                        "publish", "--env", "staging", "--remote", "origin", "--push",
                    ])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for handle in handles {
        let output = handle.join().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let log = project.origin_git(&["log", "--format=%P", "deploy/staging"]);
    let parents: Vec<_> = log.lines().collect();
    assert_eq!(
        parents.len(),
        3,
        "initial + one commit per publisher:\n{log}"
    );
    assert!(
        parents.iter().all(|p| p.split_whitespace().count() <= 1),
        "linear history"
    );
    project.origin_git(&["fsck", "--strict"]);
}

/// `git daemon` serving a directory, receive-pack enabled: a real git server,
/// which updates a ref only if it still holds what the pusher saw. (libgit2's
/// transport for local paths overwrites it, so concurrent pushes to a path
/// can lose one.) Stopped on drop.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn serve(dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // git-daemon itself, not the `git daemon` wrapper: killing the wrapper
        // would leave the daemon running (and holding whatever it inherited).
        let exec_path = crate::harness::tool("git")
            .arg("--exec-path")
            .output()
            .unwrap()
            .stdout;
        let exec_path = String::from_utf8(exec_path).unwrap();
        let child = crate::harness::tool(&format!("{}/git-daemon", exec_path.trim()))
            .args(["--reuseaddr", "--listen=127.0.0.1", "--export-all"])
            .args(["--enable=receive-pack", &format!("--port={port}")])
            .arg(format!("--base-path={}", dir.display()))
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Self { child, port };
        let ready = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "git daemon did not start on port {port}");
        daemon
    }

    fn url(&self, path: &str) -> String {
        format!("git://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The staging environment with a change, rendered and committed (not pushed).
fn staging_change(project: &Project) {
    project.edit_json("environments/staging.json", |env| {
        env["prometheus"]["scrape_interval"] = json!(30);
    });
    project.run(&["render"]).expect(0);
    project.commit_all("scrape every 30 seconds");
}

/// `publish --push` of staging, which must succeed; its stdout.
fn publish_staging(project: &Project) -> String {
    project
        .run(&[
            "publish", "--env", "staging", "--remote", "origin", "--push",
        ])
        .expect(0)
        .stdout()
}

fn origin_branches(project: &Project) -> String {
    project.origin_git(&["branch", "--list", "deploy/*"])
}

#[test]
fn an_unpushed_source_is_not_published() {
    let project = Project::with_examples_in_git();
    staging_change(&project);
    let head = project.git(&["rev-parse", "HEAD"]);
    let run = project
        .run(&["publish", "--remote", "origin", "--push"])
        .expect(2);
    assert!(
        run.stderr()
            .contains(&format!("{} is not on main of origin", head.trim())),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("--allow-unreviewed"),
        "{}",
        run.stderr()
    );
    assert_eq!(origin_branches(&project), "");
}

#[test]
fn a_source_on_an_unmerged_branch_is_not_published_unless_that_branch_is_tracked() {
    let project = Project::with_examples_in_git();
    project.git(&["checkout", "-q", "-b", "feature"]);
    staging_change(&project);
    project.push_to_origin("feature");
    let run = project
        .run(&["publish", "--remote", "origin", "--push"])
        .expect(2);
    assert!(
        run.stderr().contains("is not on main of origin"),
        "{}",
        run.stderr()
    );
    assert_eq!(origin_branches(&project), "");
    // Another tracked branch, named explicitly.
    project.publish_from_branch("feature", &[]).expect(0);
    assert!(origin_branches(&project).contains("deploy/staging"));
}

#[test]
fn allow_unreviewed_publishes_locally_and_never_pushes() {
    let project = Project::with_examples_in_git();
    staging_change(&project);
    let run = project
        .run(&[
            "publish",
            "--remote",
            "origin",
            "--push",
            "--allow-unreviewed",
        ])
        .expect(2);
    assert!(run.stderr().contains("--push"), "{}", run.stderr());
    let run = project
        .run(&[
            "publish",
            "--env",
            "staging",
            "--remote",
            "origin",
            "--allow-unreviewed",
        ])
        .expect(0);
    assert!(run.stdout().starts_with("staging: "), "{}", run.stdout());
    let source = project.git(&["show", "deploy/staging:.tracker-gitops/source.json"]);
    let head = project.git(&["rev-parse", "HEAD"]);
    assert!(source.contains(head.trim()), "{source}");
    assert_eq!(origin_branches(&project), "");
}

/// A deploy-branch tip holding the right bytes with another mode or entry
/// type (pushed by hand) is not "unchanged": publish replaces it with a
/// commit of exactly the render, every file a regular 0644 file.
#[test]
fn modes_and_entry_types_are_changes() {
    let project = Project::with_examples_in_git();
    publish_staging(&project);
    let compose = project.origin_git(&["rev-parse", "deploy/staging:docker-compose.yml"]);
    let compose = compose.trim();
    let tip = project.origin_git(&["rev-parse", "deploy/staging"]);
    let executable = format!("100755,{compose},docker-compose.yml");
    let symlink = format!("120000,{compose},docker-compose.yml");
    let submodule = format!("160000,{},vendor", tip.trim());
    for (what, edit) in [
        ("executable bit", ["--cacheinfo", &executable].to_vec()),
        ("symlink", ["--cacheinfo", &symlink].to_vec()),
        ("submodule", ["--add", "--cacheinfo", &submodule].to_vec()),
    ] {
        let forged = project.forge_in_origin("deploy/staging", &[&edit], None);
        let out = publish_staging(&project);
        assert!(
            out.starts_with("staging: ") && !out.contains("unchanged"),
            "{what}: {out}"
        );
        let tip = project.origin_git(&["rev-parse", "deploy/staging"]);
        assert_ne!(tip.trim(), forged, "{what}");
        let subject = project.origin_git(&["log", "-1", "--format=%s", "deploy/staging"]);
        assert!(subject.contains("(no content change)"), "{what}: {subject}");
        let modes = project.origin_git(&["ls-tree", "-r", "deploy/staging"]);
        assert!(
            modes.lines().all(|l| l.starts_with("100644 blob ")),
            "{what}:\n{modes}"
        );
        assert_eq!(
            publish_staging(&project),
            "staging: unchanged (deploy/staging)\n"
        );
    }
}

/// A tip with the right files whose provenance points off the tracked branch
/// (pushed by hand) is replaced by one made from the reviewed source.
#[test]
fn a_tip_from_an_unreviewed_source_is_republished() {
    let project = Project::with_examples_in_git();
    publish_staging(&project);
    let message = project.origin_git(&["log", "-1", "--format=%B", "deploy/staging"]);
    let head = project.git(&["rev-parse", "HEAD"]);
    let elsewhere = message.replace(head.trim(), &"1".repeat(40));
    project.forge_in_origin("deploy/staging", &[], Some(&elsewhere));
    let out = publish_staging(&project);
    assert!(!out.contains("unchanged"), "{out}");
    let message = project.origin_git(&["log", "-1", "--format=%B", "deploy/staging"]);
    assert!(
        message.contains(&format!("Source-Commit: {}", head.trim())),
        "{message}"
    );
}

/// What publish writes is what render writes: an executable bit committed
/// in build/ is refused, not published.
#[test]
fn a_committed_build_with_other_modes_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::with_examples_in_git();
    let file = project.join("build/staging/docker-compose.yml");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    project.commit_reviewed("an executable compose file");
    let run = project
        .run(&["publish", "--remote", "origin", "--push"])
        .expect(2);
    let expected = "is not exactly what render writes \
        (docker-compose.yml: an executable file, expected a regular file)";
    assert!(run.stderr().contains(expected), "{}", run.stderr());
    assert_eq!(origin_branches(&project), "");
}

/// `deploy.branch: "main"` would put the rendered tree on top of the source
/// branch and fast-forward the remote's `main`: refused before any commit.
#[test]
fn a_deploy_branch_outside_the_namespace_is_never_published() {
    let project = Project::with_examples_in_git();
    project.git(&["push", "-q", "origin", "main"]);
    project.edit_json("environments/production.json", |env| {
        env["deploy"]["branch"] = json!("main");
    });
    project.commit_all("production deploys from main");
    let head = project.git(&["rev-parse", "main"]);
    project
        .run(&[
            "publish",
            "--env",
            "production",
            "--remote",
            "origin",
            "--push",
        ])
        .expect(2)
        .expect_stderr("error: deploy branch `main` is outside the deploy namespace `deploy/`");
    assert_eq!(project.git(&["rev-parse", "main"]), head);
    assert_ne!(project.origin_git(&["rev-parse", "main"]), head);
    assert!(
        project
            .origin_git(&["branch", "--list", "deploy/*"])
            .is_empty()
    );
}

/// A never-rendered environment is one line saying what to run, not every
/// file's content as a diff; `render --check` says the same.
#[test]
fn a_never_rendered_environment_says_to_render() {
    let project = Project::with_examples_in_git();
    project.git(&["rm", "-rq", "build"]);
    project.commit_all("no build/ yet");
    let run = project.run(&["publish"]).expect(1);
    assert_eq!(
        run.stdout(),
        "build/production is missing: run `tracker-gitops render`\n\
         build/stable is missing: run `tracker-gitops render`\n\
         build/staging is missing: run `tracker-gitops render`\n\
         nothing published: run `tracker-gitops render` and commit the result\n"
    );
    let run = project
        .run(&["render", "--check", "--env", "stable"])
        .expect(1);
    assert_eq!(
        run.stdout(),
        "build/stable is missing: run `tracker-gitops render`\n\
         run `tracker-gitops render` and commit the result\n"
    );
}

/// Each common git problem is named with what to do, never as libgit2's
/// message alone.
#[test]
fn git_problems_say_what_to_do() {
    let outside = Project::with_examples();
    outside.run(&["render"]).expect(0);
    outside
        .run(&["publish"])
        .expect(2)
        .expect_stderr("error: not in a git repository")
        .expect_stderr("`git init`");

    // A new repository: everything is yet to commit (git.rs tests the
    // unborn branch itself).
    outside.git(&["init", "-q", "-b", "main"]);
    outside
        .run(&["publish"])
        .expect(2)
        .expect_stderr("has uncommitted changes; commit them first");

    let project = Project::with_examples_in_git();
    project.git(&["checkout", "-q", "--detach"]);
    project
        .run(&["publish"])
        .expect(2)
        .expect_stderr("error: HEAD is detached (no branch is checked out)")
        .expect_stderr("--source-ref REF");
    project
        .run(&["publish", "--source-ref", "refs/heads/main"])
        .expect(0);
    project.git(&["checkout", "-q", "main"]);

    project
        .run(&["publish", "--remote", "upstream"])
        .expect(2)
        .expect_stderr("error: no remote named `upstream` in this repository: add it (`git remote add upstream URL`)");

    let missing = project.join("missing.git");
    project.git(&["remote", "set-url", "origin", missing.to_str().unwrap()]);
    let run = project.run(&["publish", "--remote", "origin"]).expect(2);
    let run = run.expect_stderr(&format!(
        "error: {} is not a git repository (nothing there, or not a repository): check the remote's URL (`git remote -v`)",
        missing.display()
    ));
    assert!(!run.stderr().contains("unsupported URL protocol"));

    // A server that asks for credentials and refuses every token.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/r.git", server.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in server.incoming().flatten() {
            let _ = stream.read(&mut [0; 4096]);
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    project.git(&["remote", "set-url", "origin", &url]);
    let run = project
        .command(&["publish", "--remote", "origin"])
        .env("TRACKER_GITOPS_GIT_TOKEN", "ghs_refusedToken")
        .output()
        .unwrap();
    let run = Run(run).expect(2).expect_stderr(&format!(
        "error: {url} asks for credentials: set GITHUB_TOKEN (or TRACKER_GITOPS_GIT_TOKEN)"
    ));
    assert!(!run.stderr().contains("ghs_refusedToken"));
}
