//! `deploy` and `status` end to end: the real binary, the system ssh client,
//! a real sshd on loopback (tests/e2e/vm.sh), the local Docker engine and
//! locally built images (tests/e2e/images.sh). Must run as root.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command as Std;
use std::time::Duration;

use serde_json::json;

use crate::harness::{Project, Run, repo_root, tracker_bin_dir};

pub(crate) const PROJECT: &str = "tracker-e2e";
pub(crate) const INFOHASH: &str = "9c38422213e30bff212b30c360d26f9a02136422";

fn e2e_script(name: &str) -> PathBuf {
    repo_root().join("tests/e2e").join(name)
}

pub(crate) fn sh(program: &str, args: &[&str]) -> String {
    let output = Std::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The loopback VM and everything the test leaves on this machine; all
/// undone on drop, also when an assertion fails.
pub(crate) struct Vm {
    dir: PathBuf,
    pub(crate) root: String,
    origin: String,
    env: Vec<(String, String)>,
}

impl Vm {
    pub(crate) fn start(dir: PathBuf, origin: &Path) -> Self {
        let dir_s = dir.to_str().unwrap().to_string();
        sh(
            "bash",
            &[e2e_script("vm.sh").to_str().unwrap(), "start", &dir_s],
        );
        let origin = origin.to_str().unwrap().to_string();
        let vm = Self {
            env: parse_vm_env(&std::fs::read_to_string(dir.join("vm.env")).unwrap()),
            dir,
            root: format!("/home/tg-deploy/e2e-{}", random_hex()),
            origin,
        };
        // origin.git is root's: let the deploy user clone it (git refuses
        // other users' repositories otherwise).
        sh(
            "runuser",
            &[
                "-u",
                "tg-deploy",
                "--",
                "git",
                "config",
                "--global",
                "--add",
                "safe.directory",
                &vm.origin,
            ],
        );
        vm
    }

    pub(crate) fn var(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name} not in vm.env"))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = Std::new("docker")
            .args(["compose", "-p", PROJECT, "down", "-v", "--timeout", "5"])
            .output();
        let _ = Std::new("runuser")
            .args(["-u", "tg-deploy", "--", "git", "config", "--global"])
            .args([
                "--fixed-value",
                "--unset-all",
                "safe.directory",
                &self.origin,
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = Std::new("bash")
            .arg(e2e_script("vm.sh"))
            .args(["stop"])
            .arg(&self.dir)
            .output();
    }
}

/// `NAME='value'` lines (vm.sh single-quotes every value).
fn parse_vm_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| name.starts_with("VM_"))
        .map(|(name, value)| (name.to_string(), value.trim_matches('\'').to_string()))
        .collect()
}

/// The e2e environment (tests/e2e/environment.json, which the deploy
/// benchmark shares) on this VM, with this announce interval.
pub(crate) fn environment(vm: &Vm, interval: u32) -> serde_json::Value {
    let text = std::fs::read_to_string(e2e_script("environment.json")).unwrap();
    let mut env: serde_json::Value = serde_json::from_str(&text).unwrap();
    env["tracker"]["core"]["announce_policy"]["interval"] = json!(interval);
    env["deploy"]["port"] = json!(vm.var("VM_PORT").parse::<u16>().unwrap());
    env["deploy"]["host_key"] = json!(vm.var("VM_HOST_KEY"));
    env["deploy"]["path"] = json!(vm.root);
    env["deploy"]["repository"] = json!(vm.origin);
    env
}

/// Everything the binary printed, to search for the token at the end.
#[derive(Default)]
pub(crate) struct Transcript(std::sync::Mutex<String>);

impl Transcript {
    fn keep(&self, run: Run) -> Run {
        let mut all = self.0.lock().unwrap();
        all.push_str(&run.stdout());
        all.push_str(&run.stderr());
        run
    }
}

pub(crate) struct Ctx<'a> {
    project: &'a Project,
    pub(crate) token: String,
    /// The admin token's value under its other name, `TRACKER_API_TOKEN`.
    renamed_token: String,
    /// More secrets, by name.
    pub(crate) secrets: Vec<(&'static str, String)>,
    key: String,
    log: Transcript,
}

/// The local images built, a project with the examples in git, and no stack
/// left from an earlier run.
pub(crate) fn e2e_project() -> Project {
    sh("bash", &[e2e_script("images.sh").to_str().unwrap()]);
    let project = Project::with_examples_in_git();
    // The deploy user clones origin.git from inside the (0700) temp dir.
    sh("chmod", &["0755", project.path().to_str().unwrap()]);
    let _ = Std::new("docker")
        .args(["compose", "-p", PROJECT, "down", "-v", "--timeout", "5"])
        .output();
    project
}

impl<'a> Ctx<'a> {
    /// Fresh tokens, and the VM's key.
    pub(crate) fn new(project: &'a Project, vm: &Vm) -> Self {
        Self {
            project,
            token: format!("e2e-token-{}", random_hex()),
            renamed_token: format!("e2e-renamed-{}", random_hex()),
            secrets: Vec::new(),
            key: std::fs::read_to_string(vm.var("VM_KEY")).unwrap(),
            log: Transcript::default(),
        }
    }

    /// Whether the binary printed `text`, on either stream, in any run.
    pub(crate) fn printed(&self, text: &str) -> bool {
        self.log.0.lock().unwrap().contains(text)
    }

    /// Publishes and deploys, which must succeed; returns the deployed commit.
    pub(crate) fn publish_and_deploy(&self, message: &str) -> String {
        let commit = self.publish(message, None);
        let run = self.deploy().expect(0);
        assert!(
            run.stdout().contains(&format!("deployed {commit} to e2e")),
            "{}",
            run.stdout()
        );
        commit
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let mut command = self.project.command(args);
        command
            .env("TRACKER_ADMIN_TOKEN", &self.token)
            .env("TRACKER_API_TOKEN", &self.renamed_token)
            .envs(self.secrets.iter().map(|(name, value)| (name, value)));
        self.run_command(command)
    }

    /// The binary with the SSH key but none of the environment's secrets.
    fn run_without_secrets(&self, args: &[&str]) -> Run {
        self.run_command(self.project.command(args))
    }

    fn run_command(&self, mut command: assert_cmd::Command) -> Run {
        let run = Run(command
            .env("TRACKER_GITOPS_SSH_KEY", &self.key)
            .output()
            .unwrap());
        self.log.keep(run)
    }

    /// Render, commit, publish; returns the new deploy-branch tip.
    pub(crate) fn publish(&self, message: &str, templates: Option<&str>) -> String {
        let overrides: Vec<&str> = templates
            .map(|dir| vec!["--templates", dir])
            .unwrap_or_default();
        let mut render = vec!["render", "--env", "e2e"];
        render.extend(&overrides);
        let mut publish = vec!["publish", "--env", "e2e", "--remote", "origin", "--push"];
        publish.extend(&overrides);
        self.run(&render).expect(0);
        self.project.commit_reviewed(message);
        self.run(&publish).expect(0);
        self.project
            .git(&["--git-dir", "origin.git", "rev-parse", "deploy/e2e"])
            .trim()
            .to_string()
    }

    pub(crate) fn deploy(&self) -> Run {
        self.deploy_with(&[])
    }

    fn deploy_with(&self, extra: &[&str]) -> Run {
        let mut args = vec!["deploy", "--env", "e2e", "--no-pull", "--timeout", "90"];
        args.extend(extra);
        self.run(&args)
    }
}

pub(crate) fn container(service: &str) -> String {
    sh(
        "docker",
        &[
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
            "-q",
            "--no-trunc",
        ],
    )
    .trim()
    .to_string()
}

/// Docker's verdict on the tracker: the deploy's gate probes a new container
/// before Docker's first healthcheck tick, which may still be due.
pub(crate) fn tracker_health() -> String {
    let id = container("tracker");
    let start = std::time::Instant::now();
    loop {
        let health = sh(
            "docker",
            &["inspect", "-f", "{{.State.Health.Status}}", &id],
        )
        .trim()
        .to_string();
        if health != "starting" || start.elapsed() > Duration::from_secs(30) {
            return health;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Status code and body of a plain HTTP/1.0 GET.
pub(crate) fn http_get(address: &str, path: &str) -> (u16, String) {
    http_request("GET", address, path)
}

/// Status code and body of a plain HTTP/1.0 request without a body.
pub(crate) fn http_request(method: &str, address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// `pgrep ARGS`: the pids found, or `None`.
fn pgrep(args: &[&str]) -> Option<String> {
    let output = Std::new("pgrep").args(args).output().unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn tracker_client(name: &str, target: &str) {
    let output = Std::new(tracker_bin_dir().join(name))
        .args(["announce", target, INFOHASH])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn deploy_without_its_secrets_exits_2_before_connecting() {
    let project = Project::with_examples();
    configure_staging(&project);
    let run = Run(project
        .command(&["deploy", "--env", "staging"])
        .env_remove("TRACKER_ADMIN_TOKEN")
        .env("TRACKER_GITOPS_SSH_KEY", "unused")
        .output()
        .unwrap())
    .expect(2);
    assert!(run.stderr().contains("missing secret: TRACKER_ADMIN_TOKEN"));
}

/// Points the staging example at a VM of its own instead of the placeholders.
fn configure_staging(project: &Project) {
    project.edit_json("environments/staging.json", |env| {
        env["deploy"]["host"] = json!("10.0.0.10");
        env["deploy"]["host_key"] = json!("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s");
    });
}

#[test]
fn placeholders_are_refused_before_anything_connects() {
    let project = Project::with_examples();
    // Everything a deploy needs but a VM: the refusal comes first.
    for command in [
        &["deploy", "--env", "staging"][..],
        &["status", "--env", "staging"],
        &["rollback", "--env", "staging"],
    ] {
        let run = Run(project
            .command(command)
            .env("TRACKER_ADMIN_TOKEN", "t")
            .env("TRACKER_GITOPS_SSH_KEY", "unused")
            .output()
            .unwrap())
        .expect(2);
        insta::assert_snapshot!(
            format!("placeholders-refused-{}", command[0]),
            run.stderr().lines().last().unwrap()
        );
    }
    configure_staging(&project);
    let run = Run(project
        .command(&["deploy", "--env", "staging"])
        .env("TRACKER_ADMIN_TOKEN", "t")
        .env("TRACKER_GITOPS_SSH_KEY", "unused")
        .output()
        .unwrap())
    .expect(2);
    assert!(!run.stderr().contains("not configured"), "{}", run.stderr());
}

#[test]
#[ignore = "needs .ci/install: docker, sshd, torrust-tracker binaries, root"]
fn deploy_e2e_rollout_rollback_lock_and_secrets() {
    let project = e2e_project();
    let vm = Vm::start(project.join("vm"), &project.join("origin.git"));
    project.write(".git/info/exclude", "/origin.git/\n/vm/\n/broken/\n");
    let ctx = Ctx::new(&project, &vm);
    let env_file = "environments/e2e.json";
    // (1) first deploy
    project.write(
        env_file,
        serde_json::to_string_pretty(&environment(&vm, 120)).unwrap(),
    );
    let c1 = ctx.publish("e2e environment", None);
    let run = ctx.deploy().expect(0);
    assert!(run.stdout().contains(&format!("deployed {c1} to e2e")));
    assert!(run.stdout().contains("step health"), "{}", run.stdout());
    for step in ["connect", "lock", "fetch", "checkout", "up", "health"] {
        let timed = format!("  {step} ");
        assert!(
            run.stdout().lines().any(|l| l.starts_with(&timed)),
            "{step}: {}",
            run.stdout()
        );
    }
    assert!(
        run.stdout()
            .contains("s in docker compose (pull+up+health), "),
        "{}",
        run.stdout()
    );
    eprintln!("step 1 deploy:\n{}", run.stdout());
    tracker_client("udp_tracker_client", "127.0.0.1:6969");
    tracker_client("http_tracker_client", "http://127.0.0.1:7070");
    let (code, body) = http_get(
        "127.0.0.1:1212",
        &format!("/api/v1/stats?token={}", ctx.token),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok(),
        "{body}"
    );
    let (code, _) = http_get("127.0.0.1:1212", "/api/v1/stats?token=wrong");
    assert_ne!(code, 200);

    // (2) only the announce interval changes: only the tracker is recreated
    let tracker_before = container("tracker");
    let prometheus_before = container("prometheus");
    project.write(
        env_file,
        serde_json::to_string_pretty(&environment(&vm, 300)).unwrap(),
    );
    let c2 = ctx.publish("longer announce interval", None);
    let run = ctx.deploy().expect(0);
    assert!(run.stdout().contains(&format!("deployed {c2} to e2e")));
    eprintln!("step 2 deploy:\n{}", run.stdout());
    assert_ne!(container("tracker"), tracker_before);
    assert_eq!(container("prometheus"), prometheus_before);

    // (3) the admin token's secret renamed, and a tracker config the tracker
    // rejects: rolled back to c2, which runs with the secret it was deployed with
    let mut renamed = environment(&vm, 300);
    renamed["tracker"]["http_api"]["admin_token"]["secret"] = json!("TRACKER_API_TOKEN");
    project.write(env_file, serde_json::to_string_pretty(&renamed).unwrap());
    let template = std::fs::read_to_string(repo_root().join("templates/tracker-2.0.0.toml.hbs"))
        .unwrap()
        .replace(
            "threshold = {{toml tracker.log_level}}",
            "threshold = \"bogus\"",
        );
    assert!(template.contains("\"bogus\""));
    project.write("broken/tracker-2.0.0.toml.hbs", template);
    let c3 = ctx.publish("broken tracker config", Some("broken"));
    let run = ctx.deploy().expect(1);
    assert!(
        run.stderr()
            .contains(&format!("deploy failed, rolled back to {c2}")),
        "{}",
        run.stderr()
    );
    assert_eq!(tracker_health(), "healthy");
    let (code, body) = http_get(
        "127.0.0.1:1212",
        &format!("/api/v1/stats?token={}", ctx.token),
    );
    assert_eq!(code, 200, "{body}");
    let status = ctx.run(&["status", "--env", "e2e"]).expect(1);
    assert!(
        status.stdout().contains(&format!("deployed: {c2}")),
        "{}",
        status.stdout()
    );
    let audit = std::fs::read_to_string(Path::new(&vm.root).join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("commit={c3} result=rolled-back previous={c2}"))),
        "{audit}"
    );

    // (4) two deploys at once: the second waits for the lock, then either
    // finds the work done (a no-op) or gives up with "deploy in progress".
    // A deploy takes about a second: the lock is held (as another deploy
    // would) for 2 s while both start, so both wait.
    project.write(
        env_file,
        serde_json::to_string_pretty(&environment(&vm, 600)).unwrap(),
    );
    let c4 = ctx.publish("good config again", None);
    let lock = Path::new(&vm.root).join("deploy.lock");
    let mut holder = Std::new("flock")
        .arg(&lock)
        .args(["sleep", "2"])
        .spawn()
        .unwrap();
    let (a, b) = std::thread::scope(|s| {
        std::thread::sleep(Duration::from_millis(200));
        let first = s.spawn(|| ctx.deploy());
        std::thread::sleep(Duration::from_millis(300));
        let second = s.spawn(|| ctx.deploy());
        (first.join().unwrap(), second.join().unwrap())
    });
    assert!(holder.wait().unwrap().success());
    // Whichever got the lock first deployed; the other waited for it.
    let deployed = format!("deployed {c4} to e2e");
    let (winner, other) = if a.stdout().contains(&deployed) {
        (a, b)
    } else {
        (b, a)
    };
    winner.expect(0);
    let waited = other
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("  lock "))
        .and_then(|d| d.trim_end_matches('s').parse::<f64>().ok())
        .unwrap_or(0.0);
    match other.code() {
        0 => {
            assert!(
                other.stdout().contains(&format!("already at {c4}")),
                "{}",
                other.stdout()
            );
            assert!(
                waited >= 1.0,
                "the other deploy did not wait for the lock: {}",
                other.stdout()
            );
        }
        _ => {
            let other = other.expect(2);
            assert!(
                other.stderr().contains("deploy in progress"),
                "{}",
                other.stderr()
            );
        }
    }
    assert_eq!(tracker_health(), "healthy");
    ctx.run(&["status", "--env", "e2e"]).expect(0);
    // The same as JSON, in the shapes the README documents.
    let status = ctx.run(&["status", "--env", "e2e", "--format", "json"]);
    let status = crate::json::assert_documented("### `status --format json`", &status.expect(0));
    assert_eq!(status["verdict"], "in-sync");
    assert_eq!(status["deployed"], status["branch_tip"]);
    assert_eq!(status["drift"], json!([]));
    let noop = ctx.deploy_with(&["--format", "json"]).expect(0);
    let noop = crate::json::assert_documented("### `deploy --format json` (and `rollback`)", &noop);
    assert_eq!(noop["result"]["outcome"], "noop");
    assert_eq!(noop["result"]["commit"], status["deployed"]);

    // (4a) a commit pushed straight to the deploy branch, keeping publish's
    // message and provenance but bind-mounting the host's /etc: refused
    // before anything touches the VM.
    let services = ["tracker", "prometheus"];
    let containers = services.map(container);
    let record = Path::new(&vm.root).join("deployed");
    let deployed = std::fs::read_to_string(&record).unwrap();
    let audit = std::fs::read_to_string(Path::new(&vm.root).join("audit.log")).unwrap();
    project.forge_etc_bind_mount("deploy/e2e");
    let run = ctx.deploy().expect(2);
    assert!(
        run.stderr()
            .contains("its files are not exactly build/e2e of its source"),
        "{}",
        run.stderr()
    );
    assert_eq!(services.map(container), containers);
    assert_eq!(std::fs::read_to_string(&record).unwrap(), deployed);
    assert_eq!(
        std::fs::read_to_string(Path::new(&vm.root).join("audit.log")).unwrap(),
        audit
    );
    project.origin_git(&["update-ref", "refs/heads/deploy/e2e", &c4]);

    let c4 = c4.as_str();

    // (5) SIGTERM to the remote script while compose brings up a new commit:
    // rolled back to c4, and no compose is left running
    project.write(
        env_file,
        serde_json::to_string_pretty(&environment(&vm, 900)).unwrap(),
    );
    let c5 = ctx.publish("interval 900", None);
    let run = std::thread::scope(|s| {
        let deploy = s.spawn(|| ctx.deploy());
        let start = std::time::Instant::now();
        while pgrep(&["-u", "tg-deploy", "-f", "compose up -d"]).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "compose up never ran"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let script = pgrep(&["-o", "-u", "tg-deploy", "-f", "^bash -s -- deploy$"])
            .expect("the remote script");
        sh("kill", &["-TERM", &script]);
        deploy.join().unwrap()
    });
    let run = run.expect(1);
    assert!(
        run.stderr()
            .contains(&format!("deploy of {c5} stopped by SIGTERM at step up")),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr()
            .contains(&format!("deploy failed, rolled back to {c4}"))
    );
    assert_eq!(tracker_health(), "healthy");
    assert_eq!(pgrep(&["-u", "tg-deploy", "-f", "compose up"]), None);
    let audit = std::fs::read_to_string(Path::new(&vm.root).join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .last()
            .unwrap()
            .ends_with(" step=up signal=TERM"),
        "{audit}"
    );

    // (6) an older commit is refused, the VM untouched (and the lock is free)
    let tracker_before = container("tracker");
    let run = ctx.deploy_with(&["--commit", &c2]).expect(2);
    assert!(
        run.stderr()
            .contains(&format!("commit {c2} is older than the deployed {c4}")),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("deploy in progress"));
    assert_eq!(container("tracker"), tracker_before);

    // (7) a file the commit does not have, in the VM's checkout: status
    // reports it; the next deploy (the downgrade, now asked for) removes it;
    // the tracker's data stays
    let checkout = Path::new(&vm.root).join("checkout");
    let database = checkout.join("storage/tracker/lib/database/sqlite3.db");
    assert!(database.is_file());
    let override_file = checkout.join("docker-compose.override.yml");
    std::fs::write(
        &override_file,
        "services:\n  tracker:\n    labels:\n      injected: \"yes\"\n",
    )
    .unwrap();
    sh("chown", &["tg-deploy", override_file.to_str().unwrap()]);
    let status = ctx.run(&["status", "--env", "e2e"]).expect(1);
    for drift in [
        "drift: untracked docker-compose.override.yml",
        "drift: container tracker",
    ] {
        assert!(status.stdout().contains(drift), "{}", status.stdout());
    }
    let run = ctx
        .deploy_with(&["--commit", &c2, "--allow-downgrade"])
        .expect(0);
    assert!(run.stdout().contains(&format!("deployed {c2} to e2e")));
    assert!(!override_file.exists());
    assert!(database.is_file());
    let labels = sh(
        "docker",
        &[
            "inspect",
            "-f",
            "{{json .Config.Labels}}",
            &container("tracker"),
        ],
    );
    assert!(!labels.contains("injected"), "{labels}");
    let status = ctx.run(&["status", "--env", "e2e"]).expect(1);
    assert!(!status.stdout().contains("drift"), "{}", status.stdout());

    // (8) rollback: back to the commit deployed before c2 that is older than
    // it (c1), with the secrets c1 was deployed with (none come from CI)
    let run = ctx
        .run_without_secrets(&["rollback", "--env", "e2e", "--no-pull", "--timeout", "90"])
        .expect(0);
    assert!(
        run.stdout().contains(&format!("deployed {c1} to e2e")),
        "{}{}",
        run.stdout(),
        run.stderr()
    );
    let (code, body) = http_get(
        "127.0.0.1:1212",
        &format!("/api/v1/stats?token={}", ctx.token),
    );
    assert_eq!(code, 200, "{body}");

    // (9) the tokens never left the process environment and the VM
    let printed = ctx.log.0.lock().unwrap();
    assert!(!printed.is_empty());
    for token in [&ctx.token, &ctx.renamed_token] {
        for history in [
            project.git(&["--git-dir", "origin.git", "log", "-p", "--all"]),
            project.git(&["log", "-p", "--all"]),
        ] {
            assert!(!history.contains(token.as_str()));
        }
        assert!(!printed.contains(token.as_str()));
    }
}

/// What a refused deploy must leave as it was: the deployed record, the
/// audit log, the checkout's commit and the containers.
pub(crate) fn vm_state(vm: &Vm) -> (String, String, String, Vec<String>) {
    let root = Path::new(&vm.root);
    let head = sh(
        "git",
        &[
            // The checkout is the deploy user's.
            "-c",
            "safe.directory=*",
            "-C",
            root.join("checkout").to_str().unwrap(),
            "rev-parse",
            "HEAD",
        ],
    );
    (
        std::fs::read_to_string(root.join("deployed")).unwrap(),
        std::fs::read_to_string(root.join("audit.log")).unwrap(),
        head,
        ["tracker", "prometheus"].map(container).to_vec(),
    )
}

/// A change that loses data (the SQLite file renamed) is refused before the
/// VM is touched until the environment acknowledges it; an acknowledgement
/// left in is refused as stale; a rollback across the change needs its own.
#[test]
#[ignore = "needs .ci/install: docker, sshd, torrust-tracker binaries, root"]
fn deploy_e2e_data_loss_is_refused_until_acknowledged() {
    let project = e2e_project();
    let vm = Vm::start(project.join("vm"), &project.join("origin.git"));
    project.write(".git/info/exclude", "/origin.git/\n/vm/\n");
    let ctx = Ctx::new(&project, &vm);
    let env_file = "environments/e2e.json";
    let write = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut env = environment(&vm, 120);
        edit(&mut env);
        project.write(env_file, serde_json::to_string_pretty(&env).unwrap());
    };
    write(&|_| {});
    let c1 = ctx.publish("e2e environment", None);
    ctx.deploy().expect(0);
    tracker_client("udp_tracker_client", "127.0.0.1:6969");

    // (1) the SQLite file renamed, not acknowledged: refused, VM untouched
    let renamed = |env: &mut serde_json::Value| {
        env["tracker"]["core"]["database"]["database_name"] = json!("tracker.db");
    };
    write(&renamed);
    ctx.publish("rename the database file", None);
    let before = vm_state(&vm);
    let run = ctx.deploy().expect(2);
    let id = "sqlite-file:sqlite3.db->tracker.db";
    for text in [
        format!("DATA LOSS (NOT acknowledged) [{id}]"),
        "the tracker starts on an EMPTY database".into(),
        format!("\"acknowledge_data_loss\": [\"{id}\"]"),
        "nothing was changed on the VM".into(),
    ] {
        assert!(run.stderr().contains(&text), "{text}: {}", run.stderr());
    }
    assert_eq!(vm_state(&vm), before);
    eprintln!("refused:\n{}", run.stderr());

    // (2) acknowledged in the environment file: deployed
    write(&|env| {
        renamed(env);
        env["acknowledge_data_loss"] = json!([id]);
    });
    let c3 = ctx.publish("acknowledge the renamed database file", None);
    let run = ctx.deploy().expect(0);
    assert!(
        run.stderr()
            .contains(&format!("DATA LOSS (acknowledged) [{id}]")),
        "{}",
        run.stderr()
    );
    assert!(run.stdout().contains(&format!("deployed {c3} to e2e")));
    let database = Path::new(&vm.root).join("checkout/storage/tracker/lib/database");
    assert!(database.join("tracker.db").is_file() && database.join("sqlite3.db").is_file());
    // Deploying it again is a no-op, not a stale acknowledgement.
    let run = ctx.deploy().expect(0);
    assert!(
        run.stdout().contains(&format!("already at {c3}")),
        "{}",
        run.stdout()
    );

    // (3) the acknowledgement left in with the next change: stale, refused
    write(&|env| {
        renamed(env);
        env["acknowledge_data_loss"] = json!([id]);
        env["tracker"]["core"]["announce_policy"]["interval"] = json!(300);
    });
    ctx.publish("longer interval", None);
    let before = vm_state(&vm);
    let run = ctx.deploy().expect(2);
    assert!(
        run.stderr().contains(&format!(
            "acknowledges data losses this deploy does not make: \"{id}\""
        )),
        "{}",
        run.stderr()
    );
    assert_eq!(vm_state(&vm), before);
    write(&|env| {
        renamed(env);
        env["tracker"]["core"]["announce_policy"]["interval"] = json!(300);
    });
    let c5 = ctx.publish("longer interval, acknowledgement removed", None);
    ctx.deploy().expect(0);

    // (4) a rollback to c1 goes back across the change: it needs its own
    // acknowledgement, on the command line
    let rollback = |extra: &[&str]| {
        let mut args = vec![
            "rollback",
            "--env",
            "e2e",
            "--to",
            &c1,
            "--no-pull",
            "--timeout",
            "90",
        ];
        args.extend(extra);
        ctx.run_without_secrets(&args)
    };
    let before = vm_state(&vm);
    let back = "sqlite-file:tracker.db->sqlite3.db";
    let run = rollback(&[]).expect(2);
    assert!(
        run.stderr()
            .contains(&format!("--acknowledge-data-loss '{back}'")),
        "{}",
        run.stderr()
    );
    assert_eq!(vm_state(&vm), before);
    let run = rollback(&["--acknowledge-data-loss", back]).expect(0);
    assert!(
        run.stdout().contains(&format!("deployed {c1} to e2e")),
        "{}",
        run.stderr()
    );
    let audit = std::fs::read_to_string(Path::new(&vm.root).join("audit.log")).unwrap();
    assert!(!audit.contains("result=refused"), "{audit}");
    assert!(
        audit.contains(&format!("commit={c5} result=deployed")),
        "{audit}"
    );
}
