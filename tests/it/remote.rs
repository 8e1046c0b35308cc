//! remote.sh on its own, as ssh runs it (`bash -s -- OP`, the CLI's prelude
//! first), against real git repositories and the real flock, with
//! tests/stubs/docker playing docker compose. No Docker, no root, no ssh:
//! these run everywhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tracker_gitops::deploy::{
    self, Caller, DataOp, DataOutcome, DataRequest, MARKER, Outcome, Request, SecretSource,
    Secrets, Step,
};

use crate::harness::repo_root;

const BRANCH: &str = "deploy/t";
const KEEP: [&str; 2] = tracker_gitops::stack::DATA_DIRS;

/// A deploy branch in a bare repository, the VM's ROOT and the stub's state.
struct Vm {
    dir: TempDir,
    caller: Caller,
}

/// A deploy commit's compose file, in the stub's terms.
fn compose(needs: &str, up: &str, health: &str) -> String {
    format!(
        "# stub services: tracker\n# stub needs: {needs}\n# stub up: {up}\n# stub health: {health}\n"
    )
}

fn secrets(pairs: &[(&str, &str)]) -> Secrets {
    Secrets::from_pairs(
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

impl Vm {
    fn new() -> Self {
        let vm = Self {
            dir: tempfile::tempdir().unwrap(),
            caller: Caller {
                actor: "tester".into(),
                run: "https://ci.example/run/1".into(),
            },
        };
        for dir in ["bin", "state", "work"] {
            std::fs::create_dir(vm.path(dir)).unwrap();
        }
        std::os::unix::fs::symlink(
            repo_root().join("tests/stubs/docker"),
            vm.path("bin/docker"),
        )
        .unwrap();
        vm.git(&[
            "init",
            "-q",
            "--bare",
            vm.path("origin.git").to_str().unwrap(),
        ]);
        vm.git(&[
            "-C",
            vm.path("work").to_str().unwrap(),
            "init",
            "-q",
            "-b",
            BRANCH,
        ]);
        vm
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap_or_default()
    }

    fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// Commits a compose file on the deploy branch and pushes it; returns the commit.
    fn commit(&self, compose: &str) -> String {
        let work = self.path("work");
        let work = work.to_str().unwrap();
        std::fs::write(self.path("work/docker-compose.yml"), compose).unwrap();
        for file in [
            "storage/tracker/lib/database/.keep",
            "storage/tracker/etc/tracker.toml",
        ] {
            let path = self.path(&format!("work/{file}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        self.git(&["-C", work, "add", "-A"]);
        let message = format!("deploy\n\nSource-Commit: {}\n", "5".repeat(40));
        self.git(&["-C", work, "commit", "-q", "--allow-empty", "-m", &message]);
        let origin = self.path("origin.git");
        self.git(&["-C", work, "push", "-q", origin.to_str().unwrap(), BRANCH]);
        self.git(&["-C", work, "rev-parse", "HEAD"])
    }

    fn request<'a>(&'a self, root: &'a str, origin: &'a str, commit: &'a str) -> Request<'a> {
        Request {
            root,
            repository: origin,
            branch: BRANCH,
            commit,
            pull: false,
            timeout: Duration::from_secs(5),
            health_url: "http://127.0.0.1:1313/health_check",
            allow_downgrade: false,
            keep: &KEEP,
            caller: &self.caller,
            lock_wait: Duration::from_secs(1),
            expect: None,
        }
    }

    /// The deploy script for `commit`, as the CLI sends it.
    fn deploy_script(&self, commit: &str, secrets: SecretSource, downgrade: bool) -> String {
        let root = self.root();
        let origin = self.path("origin.git");
        let mut request = self.request(root.to_str().unwrap(), origin.to_str().unwrap(), commit);
        request.allow_downgrade = downgrade;
        request.script(secrets)
    }

    /// `bash -s -- OP` with `script` on stdin and the stub first on PATH.
    fn spawn(&self, op: &str, script: &str) -> Child {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("bash")
            .args(["-s", "--", op])
            .env("PATH", path)
            .env("STUB_STATE", self.path("state"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child
    }

    fn run(&self, op: &str, script: &str) -> Ran {
        Ran(self.spawn(op, script).wait_with_output().unwrap())
    }

    fn deploy(&self, commit: &str, secrets: &Secrets) -> Ran {
        self.run(
            "deploy",
            &self.deploy_script(commit, SecretSource::Sent(secrets), false),
        )
    }

    fn status(&self) -> Ran {
        let root = self.root();
        let prelude = deploy::status_prelude(root.to_str().unwrap(), BRANCH, &KEEP);
        self.run("status", &prelude.script())
    }

    fn deployed(&self) -> String {
        self.read("root/deployed").trim().to_string()
    }

    fn head(&self) -> String {
        self.git(&[
            "-C",
            self.root().join("checkout").to_str().unwrap(),
            "rev-parse",
            "HEAD",
        ])
    }

    /// Status: out of sync, as the branch tip is not deployed, but nothing
    /// on the VM differs from the deployed commit.
    fn assert_behind_the_branch_without_drift(&self) {
        let status = self.status().expect_verdict("out-of-sync", 1);
        assert!(!status.stdout().contains("drift"), "{}", status.stdout());
    }

    /// Whether nobody holds the deploy lock (`flock -n` gets it at once).
    fn lock_is_free(&self) -> bool {
        Command::new("flock")
            .args([
                "-n",
                self.root().join("deploy.lock").to_str().unwrap(),
                "true",
            ])
            .status()
            .unwrap()
            .success()
    }

    /// Waits until the stub's `up` hangs; returns its pid.
    fn hanging_up(&self) -> String {
        let start = Instant::now();
        loop {
            let pid = self.read("state/hang.pid").trim().to_string();
            if !pid.is_empty() {
                return pid;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "up never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A finished run of the script.
struct Ran(Output);

impl Ran {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts the result marker, and that the exit code is the result's.
    fn expect(self, outcome: Outcome, sha: &str) -> Self {
        let marker = format!("{MARKER}result {} {sha}", outcome.word());
        self.expect_marker(&marker, outcome.code())
    }

    /// Asserts the marker line, and the exit code.
    fn expect_marker(self, marker: &str, code: i32) -> Self {
        assert!(
            self.stdout().lines().any(|l| l == marker),
            "expected `{marker}`\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        assert_eq!(self.0.status.code(), Some(code), "{}", self.stderr());
        self
    }

    fn steps(&self) -> Vec<Step> {
        self.stdout()
            .lines()
            .filter_map(|l| l.strip_prefix(MARKER)?.strip_prefix("step "))
            .map(|w| Step::parse(w).unwrap())
            .collect()
    }
}

fn audit_lines(vm: &Vm) -> Vec<String> {
    vm.read("root/audit.log")
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn remote_deploy_then_noop_records_commit_secrets_and_audit() {
    let vm = Vm::new();
    let c1 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    let token = secrets(&[("TOKEN", "first value")]);
    let ran = vm.deploy(&c1, &token).expect(Outcome::Deployed, &c1);
    assert_eq!(
        ran.steps(),
        [
            Step::Lock,
            Step::Fetch,
            Step::Checkout,
            Step::Pull,
            Step::Up,
            Step::Health
        ]
    );
    assert_eq!(vm.deployed(), c1);
    assert_eq!(vm.read("state/env"), "TOKEN=first value\n");
    let stored = vm.root().join(format!("secrets/{c1}.env"));
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), token.lines());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!ran.stderr().contains("first value"));

    vm.deploy(&c1, &token).expect(Outcome::Noop, &c1);
    let audit = audit_lines(&vm);
    assert_eq!(audit.len(), 2, "{audit:?}");
    let source = "5".repeat(40);
    assert!(
        audit[0].contains(&format!(
            "commit={c1} result=deployed previous=none by=tester run=https://ci.example/run/1 source={source} user="
        )),
        "{audit:?}"
    );
    assert!(audit[1].contains(&format!("commit={c1} result=noop previous={c1}")));
    vm.status().expect_verdict("in-sync", 0);
    assert!(vm.lock_is_free());
}

impl Ran {
    fn expect_verdict(self, word: &str, code: i32) -> Self {
        assert_eq!(
            self.stdout().lines().last(),
            Some(word),
            "{}{}",
            self.stdout(),
            self.stderr()
        );
        assert_eq!(self.0.status.code(), Some(code));
        self
    }
}

/// The new commit renames the secret and fails its health check: the rollback
/// runs the previous commit with the secret it was deployed with.
#[test]
fn remote_rollback_runs_the_previous_commit_with_its_own_secrets() {
    let vm = Vm::new();
    let c1 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    vm.deploy(&c1, &secrets(&[("TOKEN", "old")]))
        .expect(Outcome::Deployed, &c1);
    let c2 = vm.commit(&compose("RENAMED_TOKEN", "ok", "unhealthy"));
    let ran = vm
        .deploy(&c2, &secrets(&[("RENAMED_TOKEN", "new")]))
        .expect(Outcome::RolledBack, &c1);
    assert!(
        ran.steps().ends_with(&[Step::Health, Step::Rollback]),
        "{:?}",
        ran.steps()
    );
    assert!(ran.stderr().contains("rolled back to"), "{}", ran.stderr());
    assert_eq!(vm.read("state/env"), "TOKEN=old\n");
    assert_eq!((vm.deployed(), vm.head()), (c1.clone(), c1.clone()));
    assert!(!vm.root().join(format!("secrets/{c2}.env")).exists());
    let audit = audit_lines(&vm);
    assert!(
        audit[1].contains(&format!("commit={c2} result=rolled-back previous={c1}"))
            && audit[1].ends_with(" step=health"),
        "{audit:?}"
    );
    vm.assert_behind_the_branch_without_drift();
}

/// Files the commit does not have are reported by status and removed by the
/// next deploy; the data directories are neither.
#[test]
fn remote_untracked_files_are_drift_and_removed_but_data_is_kept() {
    let vm = Vm::new();
    let c1 = vm.commit(&compose("", "ok", "healthy"));
    let none = secrets(&[]);
    vm.deploy(&c1, &none).expect(Outcome::Deployed, &c1);
    let checkout = vm.root().join("checkout");
    let planted = [
        "docker-compose.override.yml",
        ".env",
        "compose.override.yaml",
        "storage/tracker/etc/extra.toml",
    ];
    let data = [
        "storage/tracker/lib/database/sqlite3.db",
        "storage/tracker/log/tracker.log",
    ];
    for file in planted.iter().chain(&data) {
        let path = checkout.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }
    let status = vm.status().expect_verdict("out-of-sync", 1);
    for file in planted {
        assert!(
            status
                .stdout()
                .contains(&format!("drift: untracked {file}\n")),
            "{file}: {}",
            status.stdout()
        );
    }
    assert!(!status.stdout().contains("storage/tracker/lib"));
    assert!(!status.stdout().contains("storage/tracker/log"));
    // The override changed the configuration: the container differs.
    assert!(status.stdout().contains("drift: container tracker"));

    let ran = vm.deploy(&c1, &none).expect(Outcome::Deployed, &c1);
    assert!(ran.stderr().contains("docker-compose.override.yml"));
    for file in planted {
        assert!(!checkout.join(file).exists(), "{file} is still there");
    }
    for file in data {
        assert!(checkout.join(file).exists(), "{file} was removed");
    }
    assert!(!vm.read("state/files").contains("override"));
    let calls = vm.read("state/calls");
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("compose up") && l.contains("--force-recreate")),
        "{calls}"
    );
    vm.status().expect_verdict("in-sync", 0);
}

#[test]
fn remote_downgrade_is_refused_unless_asked_for() {
    let vm = Vm::new();
    let token = secrets(&[("TOKEN", "a")]);
    let c1 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    vm.deploy(&c1, &token).expect(Outcome::Deployed, &c1);
    let c2 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    vm.deploy(&c2, &token).expect(Outcome::Deployed, &c2);
    let ups = || vm.read("state/calls").matches("compose up").count();
    let before = ups();

    let ran = vm.deploy(&c1, &token).expect(Outcome::Refused, &c1);
    assert!(
        ran.stderr().contains("older than the deployed"),
        "{}",
        ran.stderr()
    );
    assert_eq!((vm.deployed(), vm.head()), (c2.clone(), c2.clone()));
    assert_eq!(ups(), before, "compose up ran");
    assert!(audit_lines(&vm)[2].ends_with(" reason=downgrade"));

    let script = vm.deploy_script(&c1, SecretSource::Sent(&token), true);
    vm.run("deploy", &script).expect(Outcome::Deployed, &c1);
    assert_eq!(vm.deployed(), c1);
}

/// A deploy checked against the commit the VM ran is refused when another
/// one runs by the time it holds the lock (unless that is the commit it
/// deploys); checked against the right one, it goes ahead.
#[test]
fn remote_deploy_checked_against_another_running_commit_is_refused() {
    let vm = Vm::new();
    let token = secrets(&[("TOKEN", "a")]);
    let c1 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    vm.deploy(&c1, &token).expect(Outcome::Deployed, &c1);
    let c2 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    let (root, origin) = (vm.root(), vm.path("origin.git"));
    let script = |expect: Option<&str>| {
        let mut request = vm.request(root.to_str().unwrap(), origin.to_str().unwrap(), &c2);
        request.expect = Some(expect);
        request.script(SecretSource::Sent(&token))
    };
    let ups = || vm.read("state/calls").matches("compose up").count();
    let before = ups();
    for stale in [None, Some("0".repeat(40))] {
        let ran = vm.run("deploy", &script(stale.as_deref()));
        let ran = ran.expect(Outcome::Refused, &c2);
        assert!(
            ran.stderr().contains("another deploy ran meanwhile"),
            "{}",
            ran.stderr()
        );
        assert_eq!(
            (vm.deployed(), vm.head(), ups()),
            (c1.clone(), c1.clone(), before)
        );
        assert!(
            audit_lines(&vm)
                .last()
                .unwrap()
                .ends_with(" reason=deployed-changed")
        );
    }
    vm.run("deploy", &script(Some(&c1)))
        .expect(Outcome::Deployed, &c2);
    // Checked against c1 while another deploy put c2 in place: nothing to check.
    vm.run("deploy", &script(Some(&c1)))
        .expect(Outcome::Noop, &c2);
}

/// `deployed` names the running commit and the one deployed before; a
/// deploy of that one with the stored secrets (what `rollback` does) runs it
/// as it ran.
#[test]
fn remote_deployed_and_a_rollback_with_stored_secrets() {
    let vm = Vm::new();
    let root = vm.root();
    let previous = deploy::deployed_prelude(root.to_str().unwrap()).script();
    let answer = vm.run("deployed", &previous);
    assert_eq!(
        answer.stdout(),
        format!("{MARKER}deployed none\n{MARKER}previous none\n")
    );
    let c1 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    vm.deploy(&c1, &secrets(&[("TOKEN", "one")]))
        .expect(Outcome::Deployed, &c1);
    let answer = vm.run("deployed", &previous);
    assert!(answer.stdout().contains(&format!("{MARKER}deployed {c1}")));
    assert!(answer.stdout().contains(&format!("{MARKER}previous none")));
    let c2 = vm.commit(&compose("TOKEN2", "ok", "healthy"));
    vm.deploy(&c2, &secrets(&[("TOKEN2", "two")]))
        .expect(Outcome::Deployed, &c2);
    let answer = vm.run("deployed", &previous);
    assert!(
        answer.stdout().contains(&format!("{MARKER}previous {c1}")),
        "{}",
        answer.stdout()
    );

    let script = vm.deploy_script(&c1, SecretSource::Stored, true);
    vm.run("deploy", &script).expect(Outcome::Deployed, &c1);
    assert_eq!(vm.read("state/env"), "TOKEN=one\n");
    // Going back once more: nothing older than c1.
    let answer = vm.run("deployed", &previous);
    assert!(answer.stdout().contains(&format!("{MARKER}previous none")));
    // A commit whose secrets are not kept is refused.
    let c3 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    let script = vm.deploy_script(&c3, SecretSource::Stored, true);
    let ran = vm.run("deploy", &script).expect(Outcome::Refused, &c3);
    assert!(
        ran.stderr().contains("no secrets are stored"),
        "{}",
        ran.stderr()
    );
}

#[test]
fn remote_lock_busy() {
    let vm = Vm::new();
    let c1 = vm.commit(&compose("", "ok", "healthy"));
    std::fs::create_dir_all(vm.root()).unwrap();
    let lock = vm.root().join("deploy.lock");
    std::fs::write(&lock, "someone (deploy@vm pid=1) commit=abc\n").unwrap();
    // One process holds it, so that killing it frees it.
    let mut holder = Command::new("bash")
        .args(["-c", r#"exec 9>>"$1"; flock 9; exec sleep 30"#, "-"])
        .arg(&lock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while vm.lock_is_free() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ran = vm.deploy(&c1, &secrets(&[])).expect(Outcome::LockBusy, &c1);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        ran.stderr()
            .contains("deploy in progress by someone (deploy@vm pid=1)"),
        "{}",
        ran.stderr()
    );
    assert!(!vm.root().join("checkout").exists());
    assert!(audit_lines(&vm)[0].contains("result=lock-busy"));
}

/// TERM, HUP or INT during `up`: compose is stopped, the previous commit runs
/// again, and the lock is free.
#[test]
fn remote_signals_mid_up_roll_back_and_free_the_lock() {
    let vm = Vm::new();
    let token = secrets(&[("TOKEN", "a")]);
    let c1 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    vm.deploy(&c1, &token).expect(Outcome::Deployed, &c1);
    let c2 = vm.commit(&compose("TOKEN", "hang", "healthy"));
    let script = vm.deploy_script(&c2, SecretSource::Sent(&token), false);
    for signal in ["TERM", "HUP", "INT"] {
        let _ = std::fs::remove_file(vm.path("state/hang.pid"));
        let child = vm.spawn("deploy", &script);
        let up = vm.hanging_up();
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let ran = Ran(child.wait_with_output().unwrap()).expect(Outcome::RolledBack, &c1);
        assert!(
            ran.stderr()
                .contains(&format!("stopped by SIG{signal} at step up")),
            "{}",
            ran.stderr()
        );
        assert!(
            !Path::new(&format!("/proc/{up}")).exists(),
            "compose up still runs"
        );
        assert!(vm.lock_is_free());
        assert_eq!((vm.deployed(), vm.head()), (c1.clone(), c1.clone()));
        let audit = audit_lines(&vm);
        assert!(
            audit
                .last()
                .unwrap()
                .ends_with(&format!(" step=up signal={signal}")),
            "{audit:?}"
        );
    }
    vm.assert_behind_the_branch_without_drift();
}

/// Even a script killed outright leaves no lock behind: docker compose never
/// holds the lock's file descriptor.
#[test]
fn remote_killed_script_leaves_the_lock_free() {
    let vm = Vm::new();
    let c1 = vm.commit(&compose("", "hang", "healthy"));
    let script = vm.deploy_script(&c1, SecretSource::Sent(&secrets(&[])), false);
    let mut child = vm.spawn("deploy", &script);
    let up = vm.hanging_up();
    child.kill().unwrap();
    child.wait().unwrap();
    let free = vm.lock_is_free();
    let still_running = Path::new(&format!("/proc/{up}")).exists();
    let _ = Command::new("kill").arg(&up).status();
    assert!(still_running, "the stub's up should outlive the script");
    assert!(free, "an orphaned compose holds the lock");
}

#[test]
fn remote_bad_secrets_and_requests_are_refused_before_anything() {
    let vm = Vm::new();
    let c1 = vm.commit(&compose("", "ok", "healthy"));
    for name in ["FUNCNEST", "TMOUT", "GLOBIGNORE", "LD_PRELOAD", "PATH"] {
        let bad = secrets(&[("TOKEN", "a"), (name, "x")]);
        let ran = vm.deploy(&c1, &bad).expect(Outcome::Refused, &c1);
        assert!(
            ran.stderr()
                .contains(&format!("secret name {name} is reserved")),
            "{}",
            ran.stderr()
        );
    }
    let good = vm.deploy_script(&c1, SecretSource::Sent(&secrets(&[("TOKEN", "a")])), false);
    let malformed = good.replace(
        &format!("tg_req_secrets='{}'", secrets(&[("TOKEN", "a")]).lines()),
        "tg_req_secrets='TOKEN=YQ==\nnot a line\n'",
    );
    assert_ne!(malformed, good);
    let ran = vm.run("deploy", &malformed).expect(Outcome::Refused, &c1);
    assert!(
        ran.stderr().contains("line 2 is not NAME=<base64>"),
        "{}",
        ran.stderr()
    );
    let audit = audit_lines(&vm);
    assert_eq!(audit.len(), 6);
    assert!(
        audit.iter().all(|l| l.ends_with(" reason=bad-secrets")),
        "{audit:?}"
    );

    // An audit field with a newline would forge a line: refused, unwritten.
    // A field with a newline would forge an audit line; a repository
    // starting with `-` would be an option to git; `..` would leave the
    // checkout. All refused before anything is written.
    for (field, value, problem) in [
        ("actor", "'x\ny result=deployed'", "actor is not valid"),
        (
            "repository",
            "'--upload-pack=touch /tmp/x'",
            "repository is not valid",
        ),
        ("keep", "'storage/../..'", "keep is not valid"),
    ] {
        let prefix = format!("tg_req_{field}=");
        let bad: String = good
            .lines()
            .map(|l| {
                if l.starts_with(&prefix) {
                    format!("{prefix}{value}")
                } else {
                    l.into()
                }
            })
            .map(|l| l + "\n")
            .collect();
        assert_ne!(bad, good);
        let ran = vm.run("deploy", &bad).expect(Outcome::Refused, &c1);
        assert!(ran.stderr().contains(problem), "{}", ran.stderr());
    }
    let missing = good.replace("tg_req_keep=", "unused_keep=");
    vm.run("deploy", &missing).expect(Outcome::Refused, &c1);
    assert_eq!(audit_lines(&vm).len(), 6);
    assert!(!vm.root().join("checkout").exists());
    assert!(!vm.read("state/calls").contains("up"));
}

/// With the reserved list emptied, names the shell would act on still change
/// nothing in the script: secrets live only in compose's environment.
#[test]
fn remote_secret_names_cannot_change_how_the_script_runs() {
    let vm = Vm::new();
    let names = "FUNCNEST TMOUT GLOBIGNORE POSIXLY_CORRECT PROMPT_COMMAND";
    let c1 = vm.commit(&compose(names, "ok", "healthy"));
    let values = secrets(&[
        ("FUNCNEST", "1"),
        ("TMOUT", "1"),
        ("GLOBIGNORE", "*"),
        ("POSIXLY_CORRECT", "1"),
        ("PROMPT_COMMAND", "exit 9"),
    ]);
    let script = vm.deploy_script(&c1, SecretSource::Sent(&values), false);
    let unreserved: String = script
        .lines()
        .map(|line| {
            if line.starts_with("declare -A tg_reserved_names=") {
                "declare -A tg_reserved_names=()".to_string()
            } else if line.starts_with("tg_reserved_prefixes=") {
                "tg_reserved_prefixes=()".to_string()
            } else {
                line.to_string()
            }
        })
        .map(|line| line + "\n")
        .collect();
    assert_ne!(unreserved, script);
    vm.run("deploy", &unreserved).expect(Outcome::Deployed, &c1);
    assert_eq!(
        vm.read("state/env"),
        "FUNCNEST=1\nTMOUT=1\nGLOBIGNORE=*\nPOSIXLY_CORRECT=1\nPROMPT_COMMAND=exit 9\n"
    );
    assert!(vm.root().join(format!("secrets/{c1}.env")).exists());
}

/// A deploy record that cannot be written is a failed deploy: rolled back,
/// so that the record stays true.
#[test]
fn remote_unwritable_deploy_record_rolls_back() {
    let vm = Vm::new();
    let token = secrets(&[("TOKEN", "a")]);
    let c1 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    vm.deploy(&c1, &token).expect(Outcome::Deployed, &c1);
    let c2 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    std::fs::create_dir(vm.root().join("deployed.tmp")).unwrap();
    let ran = vm.deploy(&c2, &token).expect(Outcome::RolledBack, &c1);
    assert!(ran.stderr().contains("could not write"), "{}", ran.stderr());
    assert_eq!((vm.deployed(), vm.head()), (c1.clone(), c1));
}

#[test]
fn remote_without_a_prelude_does_nothing() {
    let vm = Vm::new();
    let ran = vm.run("deploy", deploy::REMOTE_SCRIPT);
    assert_eq!(ran.0.status.code(), Some(2));
    assert!(ran.stderr().contains("no protocol prelude"));
    assert!(!vm.root().exists());
}

impl Vm {
    /// A data op's script, as the CLI sends it.
    fn data(&self, op: DataOp, lock_wait: u64) -> Ran {
        let root = self.root();
        let request = DataRequest {
            root: root.to_str().unwrap(),
            caller: &self.caller,
            lock_wait: Duration::from_secs(lock_wait),
            health_url: "http://127.0.0.1:1313/health_check",
        };
        self.run(op.word(), &request.script(op))
    }
}

impl Ran {
    /// Asserts a data op's `done` marker and exit code.
    fn done(self, outcome: DataOutcome) -> Self {
        let marker = format!("{MARKER}done {}", outcome.word());
        self.expect_marker(&marker, outcome.code())
    }
}

fn restore(backup: &str) -> DataOp<'_> {
    DataOp::Restore {
        backup,
        timeout: Duration::from_secs(5),
    }
}

/// A deployed stack with a backup service, whose compose file needs the
/// secret and its URL-encoded form.
fn deployed_with_backups(vm: &Vm, backup: &str) -> String {
    let stack = format!(
        "# stub services: tracker backup\n# stub needs: TOKEN TG_URLENCODED_TOKEN\n\
         # stub up: ok\n# stub health: healthy\n# stub backup: {backup}\n"
    );
    let c1 = vm.commit(&stack);
    vm.deploy(&c1, &secrets(&[("TOKEN", "p@ss/w#rd?%&:é x")]))
        .expect(Outcome::Deployed, &c1);
    c1
}

/// The VM percent-encodes each secret for URLs (the tracker's MySQL URL):
/// compose gets both forms.
#[test]
fn remote_secrets_are_also_exported_url_encoded() {
    let vm = Vm::new();
    deployed_with_backups(&vm, "ok");
    assert_eq!(
        vm.read("state/env"),
        "TOKEN=p@ss/w#rd?%&:é x\nTG_URLENCODED_TOKEN=p%40ss%2Fw%23rd%3F%25%26%3A%C3%A9%20x\n"
    );
}

/// backup, backups and restore run on the deployed stack with its stored
/// secrets; backup and restore are audited, and a restore stops only the
/// tracker, around the swap.
#[test]
fn remote_backup_list_and_restore() {
    let vm = Vm::new();
    let c1 = deployed_with_backups(&vm, "ok");
    let ran = vm.data(DataOp::Backup, 1).done(DataOutcome::BackedUp);
    assert_eq!(
        ran.steps(),
        [Step::Lock, Step::Dump, Step::Verify, Step::Prune]
    );
    let name = "20250101T000000Z";
    assert!(
        ran.stdout()
            .contains(&format!("{MARKER}backup {name} {c1} sqlite3 "))
    );
    let ran = vm.data(DataOp::List, 1).done(DataOutcome::Listed);
    assert!(ran.stdout().contains(&format!("{MARKER}backup {name} ")));
    let calls_before = vm.read("state/calls").lines().count();
    let ran = vm.data(restore(name), 1).done(DataOutcome::Restored);
    assert_eq!(
        ran.steps(),
        [
            Step::Lock,
            Step::Stop,
            Step::Restore,
            Step::Start,
            Step::Health
        ]
    );
    assert!(
        ran.stdout()
            .contains(&format!("{MARKER}restored {name} keys=0,torrents=1"))
    );
    let calls: Vec<String> = vm
        .read("state/calls")
        .lines()
        .skip(calls_before)
        .filter(|c| c.contains("stop") || c.contains("start") || c.contains(" restore "))
        .map(|c| c.split(" /bin/sh ").next().unwrap().to_string())
        .collect();
    assert_eq!(
        calls,
        [
            "compose stop tracker",
            "compose exec -T backup",
            "compose start tracker"
        ]
    );
    let audit = audit_lines(&vm);
    assert!(
        audit[1].contains(&format!(
            "commit={c1} result=backed-up op=backup backup={name} by=tester"
        )),
        "{audit:?}"
    );
    assert!(
        audit[2].contains(&format!("result=restored op=restore backup={name} ")),
        "{audit:?}"
    );
    assert_eq!(audit.len(), 3, "listing is not audited: {audit:?}");
    assert!(vm.lock_is_free());
}

/// A backup that does not verify, and a restore that fails, are failures;
/// after the latter the tracker runs again.
#[test]
fn remote_failed_backup_and_restore() {
    let vm = Vm::new();
    deployed_with_backups(&vm, "fail");
    let ran = vm.data(DataOp::Backup, 1).done(DataOutcome::Failed);
    assert!(
        ran.stderr().contains("verification failed"),
        "{}",
        ran.stderr()
    );
    std::fs::write(
        vm.path("state/backups"),
        "20250101T000000Z x sqlite3 1 torrents=1\n",
    )
    .unwrap();
    vm.data(restore("20250101T000000Z"), 1)
        .done(DataOutcome::Failed);
    assert!(vm.read("state/running").contains("tracker running "));
    assert!(
        audit_lines(&vm)
            .last()
            .unwrap()
            .contains("result=failed op=restore")
    );
}

/// Refused before anything is stopped: an unknown backup, a bad name, nothing
/// deployed, no backup service; lock-busy while a deploy holds the lock.
#[test]
fn remote_data_ops_refused_or_busy() {
    let vm = Vm::new();
    vm.data(DataOp::Backup, 1).done(DataOutcome::Refused);
    let c1 = vm.commit(&compose("TOKEN", "ok", "healthy"));
    vm.deploy(&c1, &secrets(&[("TOKEN", "a")]))
        .expect(Outcome::Deployed, &c1);
    let ran = vm.data(DataOp::Backup, 1).done(DataOutcome::Refused);
    assert!(
        ran.stderr().contains("runs no backup service"),
        "{}",
        ran.stderr()
    );

    let vm = Vm::new();
    deployed_with_backups(&vm, "ok");
    let ran = vm
        .data(restore("20990101T000000Z"), 1)
        .done(DataOutcome::Refused);
    assert!(
        ran.stderr().contains("no backup 20990101T000000Z"),
        "{}",
        ran.stderr()
    );
    vm.data(restore("../../etc"), 1).done(DataOutcome::Refused);
    assert!(!vm.read("state/calls").contains("stop tracker"));

    let mut holder = Command::new("flock")
        .arg(vm.root().join("deploy.lock"))
        .args(["sleep", "3"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    vm.data(DataOp::Backup, 1).done(DataOutcome::LockBusy);
    holder.wait().unwrap();
}
