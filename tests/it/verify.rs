//! `deploy` verifies the commit it is about to deploy before anything
//! connects to the VM: real repositories (a bare origin the "VM" would clone),
//! deploy-branch commits pushed by hand, and a "VM" that is only a TCP
//! listener counting connections, so that a refusal provably came first.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Project, Run};

/// A port that counts the connections made to it (and closes each at once).
struct Vm {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Vm {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, stop) = (connections.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok(_) => {
                            connections.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Self {
            port,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The examples in git, `stable` deploying to `vm` from origin.git, all
/// published from the reviewed `main`.
fn published(vm: &Vm) -> Project {
    let project = Project::with_examples_in_git();
    let origin = project.join("origin.git");
    project.edit_json("environments/stable.json", |env| {
        env["deploy"]["host"] = json!("127.0.0.1");
        env["deploy"]["port"] = json!(vm.port);
        env["deploy"]["repository"] = json!(origin.to_str().unwrap());
    });
    project.run(&["render"]).expect(0);
    project.commit_reviewed("stable deploys to the test VM");
    project
        .run(&["publish", "--remote", "origin", "--push"])
        .expect(0);
    project
}

fn deploy_in(project: &Project, dir: &str, extra: &[&str]) -> Run {
    run_in(project, dir, "deploy", extra)
}

/// `COMMAND --env stable --no-pull EXTRA…` in `dir`.
fn run_in(project: &Project, dir: &str, command: &str, extra: &[&str]) -> Run {
    let mut args = vec![command, "--env", "stable", "--no-pull"];
    args.extend_from_slice(extra);
    Run(project
        .command(&args)
        .current_dir(project.join(dir))
        .env("TRACKER_ADMIN_TOKEN", "token")
        .env(
            "TRACKER_GITOPS_SSH_KEY",
            "not a key: ssh never gets to use it",
        )
        .output()
        .unwrap())
}

/// Deploys `stable`; asserts a refusal (exit 2) naming `problem`, made before
/// anything connected to the VM.
fn refused(project: &Project, vm: &Vm, extra: &[&str], problem: &str) {
    refused_by(project, vm, "deploy", extra, problem);
}

fn refused_by(project: &Project, vm: &Vm, command: &str, extra: &[&str], problem: &str) {
    let run = run_in(project, ".", command, extra).expect(2);
    assert!(run.stderr().contains(problem), "{}", run.stderr());
    assert!(!run.stdout().contains("verified"), "{}", run.stdout());
    assert_eq!(vm.connections(), 0, "the VM was contacted");
}

/// The control for every refusal below: a commit publish made passes, and
/// only then does ssh connect. From a shallow clone, as CI checks out.
#[test]
#[ignore = "needs .ci/install: ssh client"]
fn a_published_commit_passes_then_ssh_connects() {
    let vm = Vm::start();
    let project = published(&vm);
    let origin = project.join("origin.git");
    project.git(&[
        "clone",
        "-q",
        "--depth",
        "1",
        &format!("file://{}", origin.display()),
        "shallow",
    ]);
    let tip = project.origin_git(&["rev-parse", "deploy/stable"]);
    let head = project.git(&["rev-parse", "HEAD"]);
    let run = deploy_in(&project, "shallow", &["--commit", &tip.trim()[..12]]).expect(2);
    assert!(
        run.stdout().contains(&format!(
            "verified {}: published from {} on main",
            tip.trim(),
            head.trim()
        )),
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    assert!(
        vm.connections() > 0,
        "ssh never connected: {}",
        run.stderr()
    );
}

/// A commit pushed straight to the deploy branch, keeping publish's message
/// and provenance, is refused: its files are not the source's build/stable.
#[test]
fn a_hand_pushed_deploy_commit_is_refused_before_connecting() {
    let vm = Vm::start();
    let project = published(&vm);
    project.forge_etc_bind_mount("deploy/stable");
    refused(
        &project,
        &vm,
        &[],
        "its files are not exactly build/stable of its source",
    );
    refused(&project, &vm, &[], "docker-compose.yml: different content");

    // Only the mode differs.
    let original = project.origin_git(&["rev-parse", "main:build/stable/docker-compose.yml"]);
    let executable = format!("100755,{},docker-compose.yml", original.trim());
    project.forge_in_origin("deploy/stable", &[&["--cacheinfo", &executable]], None);
    refused(
        &project,
        &vm,
        &[],
        "docker-compose.yml: an executable file, expected a regular file",
    );
}

/// A rollback's commit is checked like a deploy's.
#[test]
fn a_rollback_to_a_hand_pushed_commit_is_refused_before_connecting() {
    let vm = Vm::start();
    let project = published(&vm);
    project.forge_etc_bind_mount("deploy/stable");
    let forged = project.origin_git(&["rev-parse", "deploy/stable"]);
    refused_by(
        &project,
        &vm,
        "rollback",
        &["--to", forged.trim()],
        "its files are not exactly build/stable of its source",
    );
}

/// Published from a branch nobody merged: refused, its source is not on the
/// repository's default branch.
#[test]
fn a_commit_from_an_unreviewed_source_is_refused() {
    let vm = Vm::start();
    let project = published(&vm);
    project.git(&["checkout", "-q", "-b", "feature"]);
    project.edit_json("environments/stable.json", |env| {
        env["tracker"]["core"]["announce_policy"]["interval"] = json!(600);
    });
    project.run(&["render"]).expect(0);
    project.commit_all("unreviewed change");
    project
        .publish_from_branch("feature", &["stable"])
        .expect(0);
    let source = project.git(&["rev-parse", "HEAD"]);
    refused(
        &project,
        &vm,
        &[],
        &format!("its source {} is not on main of", source.trim()),
    );
}

/// Commits without publish's provenance, or with another environment's.
#[test]
fn a_commit_without_matching_provenance_is_refused() {
    let vm = Vm::start();
    let project = published(&vm);
    let published = project.origin_git(&["rev-parse", "deploy/stable"]);
    project.forge_in_origin("deploy/stable", &[], Some("tidy up\n"));
    refused(
        &project,
        &vm,
        &[],
        "does not have exactly one Source-Commit trailer",
    );
    project.origin_git(&["update-ref", "refs/heads/deploy/stable", published.trim()]);
    project.forge_in_origin(
        "deploy/stable",
        &[&["--force-remove", ".tracker-gitops/source.json"]],
        None,
    );
    refused(&project, &vm, &[], "it has no .tracker-gitops/source.json");
    let production = project.origin_git(&["rev-parse", "deploy/production"]);
    project.origin_git(&["update-ref", "refs/heads/deploy/stable", production.trim()]);
    refused(
        &project,
        &vm,
        &[],
        "it was published for environment `production`, not `stable`",
    );
}

#[test]
fn a_commit_not_on_the_deploy_branch_is_refused() {
    let vm = Vm::start();
    let project = published(&vm);
    let production = project.origin_git(&["rev-parse", "deploy/production"]);
    refused(
        &project,
        &vm,
        &["--commit", production.trim()],
        "is not on deploy/stable of",
    );
    refused(
        &project,
        &vm,
        &["--commit", "deploy/stable~1"],
        "--commit takes a commit id",
    );
}

/// With `--format json` a refusal is the error object on stdout, and still
/// made before anything connected; for a rollback too.
#[test]
fn a_refusal_in_json_is_an_error_object() {
    let vm = Vm::start();
    let project = published(&vm);
    let production = project.origin_git(&["rev-parse", "deploy/production"]);
    for (command, flag) in [("deploy", "--commit"), ("rollback", "--to")] {
        let run = run_in(
            &project,
            ".",
            command,
            &[flag, production.trim(), "--format", "json"],
        )
        .expect(2);
        let error = crate::json::assert_error(&run, "verify");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is not on deploy/stable of"),
            "{error:#}"
        );
    }
    assert_eq!(vm.connections(), 0, "the VM was contacted");
}
