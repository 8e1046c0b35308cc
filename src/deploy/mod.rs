//! Deploy a published commit to the VM, and ask the VM whether it is in sync.
//!
//! Everything that happens on the VM is `remote.sh`, fed over the stdin of the
//! system OpenSSH client (`bash -s -- <op>`) after a prelude (`protocol`)
//! holding the request and the secrets. Here: the secrets, and the marker
//! lines the script prints on stdout, timed as they arrive; the SSH client
//! (host key pinning, the key in memory) is `ssh.rs`, `status`'s report
//! `status.rs`.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::environment::Deploy;
use crate::environment::Environment;
use crate::text::plural;

mod data;
pub use data::{BackupEntry, DataOp, DataReport, DataRequest, backup, data_op, rows_text};
mod protocol;
pub use protocol::{DataOutcome, MARKER, Outcome, Prelude, Step, Verdict};
mod ssh;
pub use ssh::{Connection, Identity, KEY_VARIABLE};
mod status;
pub use status::{Drift, Service, Status, status, status_prelude};

/// The script run on the VM; its header documents the protocol.
pub const REMOTE_SCRIPT: &str = include_str!("remote.sh");

/// How long a deploy waits for another one's lock on the VM.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Steps whose time is docker compose's, not ours.
const COMPOSE_STEPS: [Step; 3] = [Step::Pull, Step::Up, Step::Health];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Names only: the values never reach an error message.
    #[error("missing {}: {} (set {} in the environment)", plural(.0.len(), "secret", "secrets"), .0.join(", "), plural(.0.len(), "it", "them"))]
    MissingSecrets(Vec<String>),
    #[error("no SSH key: pass --identity FILE or set {KEY_VARIABLE}")]
    NoKey,
    #[error(
        "deploy.host_key is neither a public key (`ssh-ed25519 AAAA…`) nor a SHA256: fingerprint"
    )]
    HostKey,
    #[error(
        "host key fingerprint mismatch: {host}:{port} offers no key with fingerprint {expected}"
    )]
    FingerprintMismatch {
        host: String,
        port: u16,
        expected: String,
    },
    #[error("no repository: pass --repository, set deploy.repository, or add an `origin` remote")]
    NoRepository(#[source] git2::Error),
    #[error("{program} failed ({status}): {stderr}")]
    Tool {
        program: &'static str,
        status: ExitStatus,
        stderr: String,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot create an in-memory file for ssh: {0}")]
    MemFile(#[source] io::Error),
    #[error("cannot read the SSH host key of {host} port {port}: {cause}")]
    Unreachable {
        host: String,
        port: u16,
        cause: String,
    },
    #[error("ssh connection to {destination} port {port} failed: {cause}")]
    Connection {
        destination: String,
        port: u16,
        cause: String,
    },
    #[error("the remote script ended without a result ({0})")]
    NoResult(ExitStatus),
    #[error("the remote script reported `{0}` but exited with {1}")]
    Protocol(&'static str, ExitStatus),
    #[error("reading the remote output: {0}")]
    Output(#[source] io::Error),
}

/// The values of the environment's secrets, in `env.secrets()` order.
pub struct Secrets(Vec<(String, String)>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.0.iter().map(|(name, _)| name).collect();
        f.debug_tuple("Secrets").field(&names).finish()
    }
}

impl Secrets {
    /// Every secret the environment references, from `lookup` (the process
    /// environment in the CLI); missing or empty ones are an error.
    pub fn collect(
        env: &Environment,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for name in env.secrets() {
            match lookup(name).filter(|v| !v.is_empty()) {
                Some(value) => values.push((name.to_string(), value)),
                None => missing.push(name.to_string()),
            }
        }
        if missing.is_empty() {
            Ok(Self(values))
        } else {
            Err(Error::MissingSecrets(missing))
        }
    }

    /// Secrets as they are given, whatever their names (remote.sh checks them).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The `NAME=<base64>` lines remote.sh reads from the prelude.
    pub fn lines(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}={}\n", STANDARD.encode(value.as_bytes())))
            .collect()
    }
}

/// The repository the VM clones: `--repository`, else `deploy.repository`,
/// else the `origin` remote of the repository around `dir`.
pub fn repository_url(
    explicit: Option<&str>,
    deploy: &Deploy,
    dir: &Path,
) -> Result<String, Error> {
    if let Some(url) = explicit.or(deploy.repository.as_deref()) {
        return Ok(url.to_string());
    }
    let repo = git2::Repository::discover(dir).map_err(Error::NoRepository)?;
    let remote = repo.find_remote("origin").map_err(Error::NoRepository)?;
    // The URL reaches the VM in argv: never with credentials in it.
    remote
        .url()
        .map(crate::git::strip_credentials)
        .map_err(|_| Error::NoRepository(git2::Error::from_str("origin has no UTF-8 URL")))
}

/// Who deploys, for the VM's audit log and lock: the GitHub actor and the
/// run's URL in Actions, else the local user. Printable ASCII without spaces
/// only (remote.sh refuses anything else), so nothing can break a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub actor: String,
    /// `-` outside GitHub Actions.
    pub run: String,
}

impl Caller {
    /// From the process environment (`var` reads it).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name| var(name).filter(|v| !v.is_empty());
        if var("GITHUB_ACTIONS").as_deref() == Some("true") {
            let run = match (
                var("GITHUB_SERVER_URL"),
                var("GITHUB_REPOSITORY"),
                var("GITHUB_RUN_ID"),
            ) {
                (Some(server), Some(repository), Some(id)) => {
                    let attempt = var("GITHUB_RUN_ATTEMPT")
                        .map(|n| format!("/attempts/{n}"))
                        .unwrap_or_default();
                    format!("{server}/{repository}/actions/runs/{id}{attempt}")
                }
                _ => "-".into(),
            };
            return Self {
                actor: audit_word(&var("GITHUB_ACTOR").unwrap_or_default()),
                run: audit_word(&run),
            };
        }
        let user = var("USER").or_else(|| var("LOGNAME")).unwrap_or_default();
        Self {
            actor: audit_word(&user),
            run: "-".into(),
        }
    }
}

/// `text` as one word of an audit line: printable ASCII, at most 200 bytes.
fn audit_word(text: &str) -> String {
    let word: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(200)
        .collect();
    if word.is_empty() {
        "unknown".into()
    } else {
        word
    }
}

/// What to deploy where.
#[derive(Debug)]
pub struct Request<'a> {
    pub root: &'a str,
    pub repository: &'a str,
    pub branch: &'a str,
    pub commit: &'a str,
    pub pull: bool,
    pub timeout: Duration,
    pub health_url: &'a str,
    /// Deploy even a commit older than the deployed one.
    pub allow_downgrade: bool,
    /// Directories of the checkout that hold data, never cleaned
    /// ([`crate::stack::DATA_DIRS`]).
    pub keep: &'a [&'a str],
    pub caller: &'a Caller,
    /// How long to wait for another deploy's lock.
    pub lock_wait: Duration,
    /// The commit the VM must still run when the deploy takes its lock
    /// (`Some(None)`: none), because the change was checked against it.
    pub expect: Option<Option<&'a str>>,
}

/// Where the deployed commit's secrets come from.
#[derive(Debug, Clone, Copy)]
pub enum SecretSource<'a> {
    /// From the CI job, sent with the request.
    Sent(&'a Secrets),
    /// Those stored on the VM when that commit was deployed (a rollback).
    Stored,
}

/// A finished deploy: its result, the commit the marker names, and how long
/// each step took (`connect` first).
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub sha: String,
    pub steps: Vec<(String, Duration)>,
    pub total: Duration,
}

impl Report {
    /// Time spent in docker compose (pull, up, health).
    pub fn compose(&self) -> Duration {
        self.steps
            .iter()
            .filter(|(name, _)| COMPOSE_STEPS.iter().any(|s| s.word() == name))
            .map(|(_, d)| *d)
            .sum()
    }
}

impl Request<'_> {
    /// The script, its prelude holding this request and the secrets.
    pub fn script(&self, secrets: SecretSource) -> String {
        let flag = |on: bool| if on { "1" } else { "0" };
        let (stored, lines) = match secrets {
            SecretSource::Sent(secrets) => (false, secrets.lines()),
            SecretSource::Stored => (true, String::new()),
        };
        Prelude::new()
            .set("root", self.root)
            .set("repository", self.repository)
            .set("branch", self.branch)
            .set("commit", self.commit)
            .set("pull", flag(self.pull))
            .set("timeout", &self.timeout.as_secs().to_string())
            .set("health_url", self.health_url)
            .set("allow_downgrade", flag(self.allow_downgrade))
            .set("stored_secrets", flag(stored))
            .set("secrets", &lines)
            .set("keep", &self.keep.join(" "))
            .set("actor", &self.caller.actor)
            .set("run", &self.caller.run)
            .set("lock_wait", &self.lock_wait.as_secs().to_string())
            .set("expect", self.expect.map_or("-", |e| e.unwrap_or("none")))
            .script()
    }
}

/// Runs the deploy on the VM, printing each step and its duration to
/// `progress`; the script's stderr goes to ours.
pub fn deploy(
    connection: &Connection,
    secrets: SecretSource,
    request: &Request,
    progress: &mut dyn Write,
) -> Result<Report, Error> {
    let mut result = None;
    let session = run_script(
        connection,
        "deploy",
        request.script(secrets),
        progress,
        |words| match words {
            ["result", word, sha] if Outcome::parse(word).is_some() => {
                result = Outcome::parse(word).map(|outcome| (outcome, sha.to_string()));
                true
            }
            _ => false,
        },
    )?;
    let status = session.status;
    match result {
        Some((outcome, sha)) if status.code() == Some(outcome.code()) => Ok(Report {
            outcome,
            sha,
            steps: session.steps,
            total: session.total,
        }),
        Some((outcome, _)) if status.code() != Some(255) => {
            Err(Error::Protocol(outcome.word(), status))
        }
        _ => Err(ended(connection, status)),
    }
}

/// A script run to its end: its timed steps (`connect` first) and exit status.
struct Session {
    steps: Vec<(String, Duration)>,
    total: Duration,
    status: ExitStatus,
}

/// Runs `op` with `script` on its stdin. Step markers are timed and printed
/// to `progress` as they arrive; `marker` is given the words of every other
/// marker line and says whether it knew it; anything else is printed as is.
fn run_script(
    connection: &Connection,
    op: &str,
    script: String,
    progress: &mut dyn Write,
    mut marker: impl FnMut(&[&str]) -> bool,
) -> Result<Session, Error> {
    let start = Instant::now();
    let mut child = connection.spawn(&[op], Stdio::piped())?;
    // From a thread: ssh may not read all of stdin before we read its stdout.
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = std::thread::spawn(move || {
        // A closed pipe shows as ssh's exit status.
        let _ = stdin.write_all(script.as_bytes());
    });

    let mut steps: Vec<(String, Duration)> = Vec::new();
    let mut current = ("connect".to_string(), start);
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    for line in stdout.lines() {
        let line = line.map_err(Error::Output)?;
        let words: Vec<_> = line
            .strip_prefix(MARKER)
            .map(|marker| marker.split_whitespace().collect())
            .unwrap_or_default();
        match words[..] {
            ["step", word] if Step::parse(word).is_some() => {
                end_step(&mut steps, &mut current, word, progress);
                let _ = writeln!(progress, "step {word}");
            }
            _ if !words.is_empty() && marker(&words) => {}
            // The scripts print only markers on stdout; anything else is shown as is.
            _ => {
                let _ = writeln!(progress, "{line}");
            }
        }
    }
    end_step(&mut steps, &mut current, "", progress);
    let status = child.wait().map_err(|source| Error::Spawn {
        program: "ssh",
        source,
    })?;
    let _ = feeder.join();
    Ok(Session {
        steps,
        total: start.elapsed(),
        status,
    })
}

/// The error for a script that ended without a (consistent) result.
fn ended(connection: &Connection, status: ExitStatus) -> Error {
    match status.code() {
        Some(255) => connection.failed(),
        _ => Error::NoResult(status),
    }
}

/// Closes the running step (printing its duration) and opens `next`.
fn end_step(
    steps: &mut Vec<(String, Duration)>,
    current: &mut (String, Instant),
    next: &str,
    progress: &mut dyn Write,
) {
    let now = Instant::now();
    let elapsed = now - current.1;
    if !current.0.is_empty() {
        let _ = writeln!(progress, "  {} {:.2}s", current.0, elapsed.as_secs_f64());
        steps.push((std::mem::take(&mut current.0), elapsed));
    }
    *current = (next.to_string(), now);
}

/// Runs an op that needs no secrets from us, feeding `prelude` and the script.
fn run_op(
    connection: &Connection,
    op: &str,
    prelude: Prelude,
    stdout: Stdio,
) -> Result<std::process::Child, Error> {
    let mut child = connection.spawn(&[op], stdout)?;
    let mut stdin = child.stdin.take().expect("piped");
    let _ = stdin.write_all(prelude.script().as_bytes());
    Ok(child)
}

/// Runs an op to its end, its stdout captured.
fn op_output(
    connection: &Connection,
    op: &str,
    prelude: Prelude,
) -> Result<std::process::Output, Error> {
    run_op(connection, op, prelude, Stdio::piped())?
        .wait_with_output()
        .map_err(|source| Error::Spawn {
            program: "ssh",
            source,
        })
}

/// The request of `deployed`.
pub fn deployed_prelude(root: &str) -> Prelude {
    Prelude::new().set("root", root)
}

/// What the VM runs, as `deployed` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// The running commit; `None` before the first deploy.
    pub current: Option<String>,
    /// The commit a rollback goes back to: the newest deployed before the
    /// running one that is older than it and whose secrets the VM keeps.
    pub previous: Option<String>,
}

/// Asks the VM what it runs; changes nothing there.
pub fn deployed(connection: &Connection, root: &str) -> Result<Deployed, Error> {
    let output = op_output(connection, "deployed", deployed_prelude(root))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer = |key: &str| {
        stdout
            .lines()
            .filter_map(|line| line.strip_prefix(MARKER)?.strip_prefix(key))
            .next_back()
            .map(|sha| (sha != "none").then(|| sha.to_string()))
    };
    match (answer("deployed "), answer("previous ")) {
        (Some(current), Some(previous)) if output.status.success() => {
            Ok(Deployed { current, previous })
        }
        _ => Err(ended(connection, output.status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_from_actions_or_the_local_user() {
        let actions = |name: &str| {
            Some(String::from(match name {
                "GITHUB_ACTIONS" => "true",
                "GITHUB_ACTOR" => "octo cat\nresult=deployed",
                "GITHUB_SERVER_URL" => "https://github.com",
                "GITHUB_REPOSITORY" => "o/r",
                "GITHUB_RUN_ID" => "42",
                "GITHUB_RUN_ATTEMPT" => "2",
                _ => return None,
            }))
        };
        assert_eq!(
            Caller::from_env(actions),
            Caller {
                actor: "octo?cat?result=deployed".into(),
                run: "https://github.com/o/r/actions/runs/42/attempts/2".into(),
            }
        );
        let local = |name: &str| (name == "USER").then(|| "alice".to_string());
        assert_eq!(Caller::from_env(local).actor, "alice");
        assert_eq!(Caller::from_env(|_| None).actor, "unknown");
        assert_eq!(Caller::from_env(|_| None).run, "-");
        assert_eq!(audit_word(&"é".repeat(300)).len(), 200);
    }

    #[test]
    fn secrets_block_and_missing_names() {
        let env = crate::environment::test_environment("");
        let names: Vec<String> = env.secrets().iter().map(|s| s.to_string()).collect();
        let err = Secrets::collect(&env, |_| None).unwrap_err();
        assert!(matches!(&err, Error::MissingSecrets(missing) if *missing == names));
        let secrets = Secrets::collect(&env, |_| Some("s3cret value".into())).unwrap();
        let lines = secrets.lines();
        assert!(lines.starts_with(&format!(
            "{}={}\n",
            names[0],
            STANDARD.encode(b"s3cret value")
        )));
        assert!(!lines.contains("s3cret") && !format!("{secrets:?}").contains("s3cret"));
    }
}
