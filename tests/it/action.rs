//! The composite action's install script (.github/action/install.sh), run by
//! bash as action.yml runs it, against a copy of the action whose
//! checksums.txt the test writes; `curl` and `cargo` are stubs on PATH that
//! record how they were called. Its run script (.github/action/run.sh) with
//! the real binary, for the step outputs the action declares. And the shape
//! of action.yml and gitops.yml that keeps deploy secrets and the token to
//! the steps that need them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Std;

use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Project, Run, repo_root};

const TARGET: &str = "x86_64-unknown-linux-gnu";
const ASSET: &str = "tracker-gitops-x86_64-unknown-linux-gnu.tar.gz";
const TOKEN: &str = "ghs_installMustNeverSeeThisToken0123456789";

/// Serves `<tag>/<asset>` of a release download URL from $STUB_RELEASES and
/// appends its arguments, one per line, then `--`, to $STUB_LOG.
const CURL: &str = r#"#!/bin/bash
printf '%s\n' "$@" -- >>"$STUB_LOG"
url=${!#} out=
while (($#)); do [[ $1 == --output ]] && out=$2; shift; done
file="$STUB_RELEASES/${url#*/releases/download/}"
[[ -f $file && -n $out ]] || { echo "curl: (22) 404 $url" >&2; exit 22; }
cp "$file" "$out"
"#;

/// "Builds" into --root DIR, keeping the environment it was given.
const CARGO: &str = r#"#!/bin/bash
while (($#)); do [[ $1 == --root ]] && root=$2; shift; done
mkdir -p "$root/bin"
env >"$root/cargo-env"
printf '#!/bin/sh\necho "tracker-gitops 9.9.9 (built from source)"\n' >"$root/bin/tracker-gitops"
chmod +x "$root/bin/tracker-gitops"
"#;

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A release tarball holding a `tracker-gitops` that prints `says`.
fn tarball(dir: &Path, says: &str) -> Vec<u8> {
    let stage = dir.join(format!("stage-{says}"));
    std::fs::create_dir_all(&stage).unwrap();
    write_executable(
        &stage.join("tracker-gitops"),
        &format!("#!/bin/sh\necho 'tracker-gitops 9.9.9 ({says})'\n"),
    );
    let out = dir.join(format!("{says}.tar.gz"));
    let status = Std::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&stage)
        .arg("tracker-gitops")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A runner: the action checked out at a commit (Cargo.toml and src/ of
/// version 9.9.9), release v9.9.9 to download, RUNNER_TEMP, and the stubs.
struct Runner {
    dir: tempfile::TempDir,
    good: Vec<u8>,
    evil: Vec<u8>,
}

impl Runner {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["action/src", "action/.github/action", "stubs", "temp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(
            root.join("action/Cargo.toml"),
            "[package]\nname = \"tracker-gitops\"\nversion = \"9.9.9\"\n",
        )
        .unwrap();
        std::fs::write(root.join("action/src/main.rs"), "fn main() {}\n").unwrap();
        write_executable(&root.join("stubs/curl"), CURL);
        write_executable(&root.join("stubs/cargo"), CARGO);
        let good = tarball(root, "good");
        let evil = tarball(root, "evil");
        let runner = Self { dir, good, evil };
        runner.release(&runner.good);
        runner
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// What release v9.9.9 serves.
    fn release(&self, bytes: &[u8]) {
        let path = self.path(&format!("releases/v9.9.9/{ASSET}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// checksums.txt of the action: a comment, then `entries`.
    fn commit_checksums(&self, entries: &[String]) {
        let mut text = "# <tag> <target> <source hash> <sha256>\n".to_string();
        for entry in entries {
            text.push_str(entry);
            text.push('\n');
        }
        std::fs::write(self.path("action/.github/action/checksums.txt"), text).unwrap();
    }

    /// The line release.yml would commit for release v9.9.9 built from the
    /// action's source, with this tarball's checksum.
    fn entry(&self, tag: &str, tarball: &[u8]) -> String {
        let source = self.script(&["source-hash", self.path("action").to_str().unwrap()], &[]);
        let source = source.expect(0).stdout();
        format!("{tag} {TARGET} {} {}", source.trim(), sha256(tarball))
    }

    /// install.sh with the runner's environment and `env` (nothing else).
    fn script(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let path = format!(
            "{}:{}",
            self.path("stubs").display(),
            std::env::var("PATH").unwrap()
        );
        let mut command = Std::new("bash");
        command
            .arg(repo_root().join(".github/action/install.sh"))
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.path("temp"))
            .env("GITHUB_ACTION_PATH", self.path("action"))
            .env("GITHUB_SERVER_URL", "https://github.com")
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .env("RUNNER_TEMP", self.path("temp"))
            .env("TG_ACTION_REPOSITORY", "example/tracker-gitops")
            .env("TG_ACTION_REF", "0123456789abcdef0123456789abcdef01234567")
            .env("STUB_LOG", self.path("curl.log"))
            .env("STUB_RELEASES", self.path("releases"));
        command.envs(env.iter().copied());
        Run(command.output().unwrap())
    }

    /// resolve, then install with resolve's outputs, as action.yml wires
    /// them; the outputs of both (the binary is `path`).
    fn install(&self, env: &[(&str, &str)]) -> (Run, BTreeMap<String, String>) {
        let output = self.path("github-output");
        let _ = std::fs::remove_file(&output);
        let output_env = ("GITHUB_OUTPUT", output.to_str().unwrap());
        let mut with_output = env.to_vec();
        with_output.push(output_env);
        let resolve = self.script(&["resolve"], &with_output);
        if resolve.code() != 0 {
            return (resolve, BTreeMap::new());
        }
        let outputs = outputs(&output);
        for (name, output) in [
            ("TG_MODE", "mode"),
            ("TG_RELEASE_VERSION", "version"),
            ("TG_TARGET", "target"),
            ("TG_SHA256", "sha256"),
            ("TG_DIR", "dir"),
        ] {
            with_output.push((name, outputs[output].as_str()));
        }
        let install = self.script(&["install"], &with_output);
        let mut stderr = resolve.0.stderr.clone();
        stderr.extend(&install.0.stderr);
        let mut run = install;
        run.0.stderr = stderr;
        (run, self::outputs(&output))
    }

    /// curl's recorded calls, each its argument list.
    fn curl_calls(&self) -> Vec<Vec<String>> {
        let log = std::fs::read_to_string(self.path("curl.log")).unwrap_or_default();
        log.split_terminator("--\n")
            .map(|call| call.lines().map(str::to_string).collect())
            .collect()
    }
}

/// `name=value` lines of a GITHUB_OUTPUT file.
fn outputs(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Asserts that install.sh printed `text` on stderr.
fn assert_said(run: &Run, text: &str) {
    assert!(run.stderr().contains(text), "{}", run.stderr());
}

/// What the installed binary says it is.
fn says(outputs: &BTreeMap<String, String>) -> String {
    let output = Std::new(&outputs["path"])
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn the_release_binary_is_checked_on_every_run_cache_hits_included() {
    let runner = Runner::new();
    runner.commit_checksums(&[runner.entry("v9.9.9", &runner.good)]);
    let (run, outputs) = runner.install(&[]);
    let run = run.expect(0);
    assert_eq!(outputs["mode"], "release", "{}", run.stderr());
    assert_eq!(says(&outputs), "tracker-gitops 9.9.9 (good)");
    assert_eq!(runner.curl_calls().len(), 1);
    // The key names the committed checksum.
    assert!(outputs["cache-key"].ends_with(&sha256(&runner.good)));

    // A cache hit with the right tarball: used, nothing downloaded.
    let cached = PathBuf::from(&outputs["dir"]).join("download").join(ASSET);
    assert_eq!(std::fs::read(&cached).unwrap(), runner.good);
    let (run, outputs) = runner.install(&[]);
    let run = run.expect(0);
    assert!(run.stderr().contains(&format!("cached {ASSET} matches")));
    assert_eq!(says(&outputs), "tracker-gitops 9.9.9 (good)");
    assert_eq!(runner.curl_calls().len(), 1);

    // A poisoned cache entry and a binary swapped in <dir>/bin: refused and
    // replaced by the download, which matches.
    std::fs::write(&cached, &runner.evil).unwrap();
    write_executable(Path::new(&outputs["path"]), "#!/bin/sh\necho evil\n");
    let (run, outputs) = runner.install(&[]);
    let run = run.expect(0);
    assert_said(
        &run,
        &format!(
            "::warning title=tracker-gitops install::cached {ASSET} has sha256 {}, not the {} committed with the action: refused",
            sha256(&runner.evil),
            sha256(&runner.good)
        ),
    );
    assert_eq!(says(&outputs), "tracker-gitops 9.9.9 (good)");
    assert_eq!(runner.curl_calls().len(), 2);
    assert_eq!(std::fs::read(&cached).unwrap(), runner.good);
}

#[test]
fn a_binary_whose_checksum_is_not_committed_is_refused() {
    let runner = Runner::new();
    // The release asset was replaced after the checksum was committed.
    runner.commit_checksums(&[runner.entry("v9.9.9", &runner.good)]);
    runner.release(&runner.evil);
    let (run, outputs) = runner.install(&[]);
    let run = run.expect(2);
    assert_said(
        &run,
        &format!(
            "::error title=tracker-gitops install::{ASSET} of release v9.9.9 has sha256 {}, but the action commits {} for it: refused",
            sha256(&runner.evil),
            sha256(&runner.good)
        ),
    );
    assert!(!outputs.contains_key("path"));
    let dir = PathBuf::from(&outputs["dir"]);
    assert!(!dir.join("bin/tracker-gitops").exists());
    assert!(!dir.join("download").join(ASSET).exists(), "not cached");
}

#[test]
fn without_a_committed_checksum_the_pinned_source_is_built_without_the_callers_environment() {
    let runner = Runner::new();
    // Only another release is listed; the .sha256 published next to the
    // asset is not consulted.
    let other = runner.entry("v1.0.0", &runner.good);
    runner.commit_checksums(&[other]);
    let secrets = [
        ("TRACKER_ADMIN_TOKEN", "admin-token-value-4d1e"),
        ("GITHUB_TOKEN", TOKEN),
    ];
    let (run, outputs) = runner.install(&secrets);
    let run = run.expect(0);
    assert_eq!(outputs["mode"], "source");
    assert_said(
        &run,
        "::notice title=tracker-gitops install::no release binary is committed for this action's source (v9.9.9, x86_64-unknown-linux-gnu): building it with cargo",
    );
    assert_eq!(says(&outputs), "tracker-gitops 9.9.9 (built from source)");
    assert!(runner.curl_calls().is_empty());
    let cargo_env =
        std::fs::read_to_string(PathBuf::from(&outputs["dir"]).join("cargo-env")).unwrap();
    for (name, value) in secrets {
        assert!(!cargo_env.contains(value), "{name} reached cargo");
    }

    // The source of a listed release differs from the action's: not that
    // release's binary either (the crate version alone proves nothing).
    runner.commit_checksums(&[format!(
        "v9.9.9 {TARGET} {} {}",
        "0".repeat(64),
        sha256(&runner.good)
    )]);
    let (run, outputs) = runner.install(&[]);
    run.expect(0);
    assert_eq!(outputs["mode"], "source");

    // An explicit version that is not listed: said loudly, then the source.
    let (run, outputs) = runner.install(&[("TG_VERSION", "v2.0.0")]);
    let run = run.expect(0);
    assert_eq!(outputs["mode"], "source");
    assert_said(
        &run,
        "::warning title=tracker-gitops install::no checksum of release v2.0.0 (x86_64-unknown-linux-gnu) is committed with this action",
    );
}

#[test]
fn deploy_secrets_and_the_token_stay_out_of_the_install() {
    let runner = Runner::new();
    runner.commit_checksums(&[runner.entry("v9.9.9", &runner.good)]);
    // The SSH key in the action's environment: refused before anything runs.
    let (run, _) = runner.install(&[("TRACKER_GITOPS_SSH_KEY", "-----BEGIN OPENSSH")]);
    let run = run.expect(2);
    assert_said(
        &run,
        "TRACKER_GITOPS_SSH_KEY is in the environment of the action's steps",
    );
    assert!(runner.curl_calls().is_empty());

    // A token wherever a workflow could put one: never in curl's argv.
    let (run, outputs) = runner.install(&[
        ("GITHUB_TOKEN", TOKEN),
        ("TG_TOKEN", TOKEN),
        ("INPUT_GITHUB-TOKEN", TOKEN),
    ]);
    run.expect(0);
    assert_eq!(says(&outputs), "tracker-gitops 9.9.9 (good)");
    let calls = runner.curl_calls();
    assert_eq!(calls.len(), 1);
    for call in calls {
        assert!(
            call.iter().all(|arg| !arg.contains(TOKEN)),
            "token in curl's argv: {call:?}"
        );
    }
}

fn yaml(relative: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join(relative)).unwrap()).unwrap()
}

fn mentions(value: &Value, needle: &str) -> bool {
    serde_yaml_ng::to_string(value).unwrap().contains(needle)
}

#[test]
fn deploy_secrets_and_the_token_reach_only_the_steps_that_use_them() {
    // action.yml: the token only in the step that runs plan or publish.
    let action = yaml("action.yml");
    let steps = action["runs"]["steps"].as_sequence().unwrap();
    let with_token: Vec<_> = steps
        .iter()
        .filter(|step| mentions(step, "inputs.github-token"))
        .map(|step| step["id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(with_token, ["run"]);

    // gitops.yml: secrets only in the env of `run:` steps that deploy or ask
    // the VM's status; never workflow- or job-wide, never into an action.
    let workflow = yaml(".github/workflows/gitops.yml");
    assert!(!mentions(&workflow["env"], "secrets."));
    let mut deploying = Vec::new();
    for (name, job) in workflow["jobs"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        assert!(!mentions(&job["env"], "secrets."), "job {name}: env");
        for step in job["steps"].as_sequence().unwrap() {
            if !mentions(step, "secrets.") {
                continue;
            }
            let run = step["run"].as_str().unwrap_or_default();
            assert!(
                step["uses"].is_null() && (run.contains(" deploy ") || run.contains(" status ")),
                "job {name}: a step other than deploy or status gets secrets: {step:?}"
            );
            deploying.push(step["name"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(deploying, ["Deploy", "Status"]);
}

/// run.sh as action.yml runs it, in `project` with the real binary; its
/// outputs.
fn run_action(project: &Project, env: &[(&str, &str)]) -> (Run, BTreeMap<String, String>) {
    run_action_in(project, ".", env)
}

/// [`run_action`] with the action's `working-directory` set to `dir`.
fn run_action_in(
    project: &Project,
    dir: &str,
    env: &[(&str, &str)],
) -> (Run, BTreeMap<String, String>) {
    let output = project.join("github-output");
    let mut command = project.command(&[]);
    let command = command
        .env("GITHUB_OUTPUT", &output)
        .env("RUNNER_TEMP", project.join(""))
        .env("GITHUB_ACTIONS", "true")
        .env("TG_BIN", env!("CARGO_BIN_EXE_tracker-gitops"))
        .envs(env.iter().copied());
    let mut script = Std::new("bash");
    script.arg(repo_root().join(".github/action/run.sh"));
    // The harness's clean environment and directory, for bash instead.
    script.current_dir(project.join(dir)).env_clear();
    script.envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))));
    script.env("PATH", std::env::var_os("PATH").unwrap());
    (Run(script.output().unwrap()), outputs(&output))
}

#[test]
fn the_cli_writes_the_plan_outputs_of_the_action() {
    let project = Project::with_examples_in_git();
    project.edit_json("environments/staging.json", |env| {
        env["prometheus"]["scrape_interval"] = 30.into();
    });
    let (run, outputs) = run_action(
        &project,
        &[("TG_COMMAND", "plan"), ("TG_ARGS", "--base HEAD")],
    );
    let run = run.expect(0);
    assert_eq!(outputs["changed"], r#"["staging"]"#);
    // The Markdown alone: warnings and annotations went to stderr.
    let plan = std::fs::read_to_string(&outputs["plan-file"]).unwrap();
    assert_eq!(plan, run.stdout());
    assert!(plan.contains("| prometheus | recreated |"), "{plan}");
    assert!(
        run.stderr().contains("::warning file=environments/"),
        "{}",
        run.stderr()
    );

    // No plan: the outputs are still set, empty.
    let (run, outputs) = run_action(
        &project,
        &[("TG_COMMAND", "plan"), ("TG_ARGS", "--base no-such-ref")],
    );
    run.expect(2);
    assert_eq!(outputs["changed"], "[]");
    assert_eq!(std::fs::read_to_string(&outputs["plan-file"]).unwrap(), "");
}

#[test]
fn the_cli_writes_the_publish_outputs_of_the_action() {
    let project = Project::with_examples_in_git();
    // `--remote` given again in args overrides run.sh's `--remote origin`.
    let (run, outputs) = run_action(
        &project,
        &[
            ("TG_COMMAND", "publish"),
            ("TG_ENVIRONMENTS", "staging stable"),
            ("TG_ARGS", "--remote origin"),
        ],
    );
    run.expect(0);
    let published: serde_json::Value = serde_json::from_str(&outputs["published"]).unwrap();
    let head = project.origin_git(&["rev-parse", "deploy/staging"]);
    assert_eq!(published["staging"], head.trim());
    assert_eq!(published.as_object().unwrap().len(), 2);
    assert_eq!(outputs["published-environments"], r#"["stable","staging"]"#);

    // Nothing new: empty, not missing.
    let (run, outputs) = run_action(
        &project,
        &[("TG_COMMAND", "publish"), ("TG_ENVIRONMENTS", "staging")],
    );
    run.expect(0);
    assert_eq!(outputs["published"], "{}");
    assert_eq!(outputs["published-environments"], "[]");
}

#[test]
fn validate_through_the_action_checks_the_named_environments() {
    let project = Project::with_examples();
    project.write("environments/broken.json", "{");
    let (run, _) = run_action(
        &project,
        &[("TG_COMMAND", "validate"), ("TG_ENVIRONMENTS", "staging")],
    );
    assert!(run.expect(0).stderr().contains("1 file checked: all valid"));
    let (run, _) = run_action(&project, &[("TG_COMMAND", "validate")]);
    assert!(run.expect(1).stderr().contains("1 invalid"));
}

/// With `working-directory: infra`, annotations name each file from the
/// repository root (`GITHUB_WORKSPACE`), where GitHub looks for it on the
/// pull request; the human diagnostics keep the path as the user gave it.
#[test]
fn annotations_name_files_from_the_repository_root() {
    let project = Project::new();
    project.write(
        "infra/environments/unknown-key.json",
        std::fs::read(repo_root().join("tests/corpus/unknown-key.json")).unwrap(),
    );
    let workspace = project.path().to_str().unwrap();
    let (run, _) = run_action_in(
        &project,
        "infra",
        &[("TG_COMMAND", "validate"), ("GITHUB_WORKSPACE", workspace)],
    );
    let run = run
        .expect(1)
        .expect_stderr("\n::error file=infra/environments/unknown-key.json,line=53,col=5,")
        .expect_stderr("\n::warning file=infra/environments/unknown-key.json,line=5,col=14,");
    assert!(
        run.stderr()
            .contains("\nenvironments/unknown-key.json:53:5: error: unknown key"),
        "{}",
        run.stderr()
    );
}
