//! Deploy a published commit to the VM, and ask the VM whether it is in sync.
//!
//! Everything that happens on the VM is `remote.sh`, fed over the stdin of the
//! system OpenSSH client (`bash -s -- <op> <args>`) after a block holding the
//! secrets. Here: the secrets block, the host key pinning, the key file, and
//! the marker lines the script prints on stdout, timed as they arrive.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::environment::Deploy;
use crate::environment::Environment;

/// The script run on the VM; its header documents the protocol.
pub const REMOTE_SCRIPT: &str = include_str!("remote.sh");

/// The environment variable holding the private key text when no `--identity` is given.
pub const KEY_VARIABLE: &str = "TRACKER_GITOPS_SSH_KEY";

const MARKER: &str = "@@tracker-gitops ";
/// Steps whose time is docker compose's, not ours.
const COMPOSE_STEPS: [&str; 3] = ["pull", "up", "health"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Names only: the values never reach an error message.
    #[error("missing secret{}: {} (set {} in the environment)", plural(.0.len()), .0.join(", "), if .0.len() == 1 { "it" } else { "them" })]
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
    #[error("cannot write a temporary file: {0}")]
    TempFile(#[source] io::Error),
    #[error("ssh connection to {0} failed (see above)")]
    Connection(String),
    #[error("the deploy was refused on the VM (exit {0}, see above)")]
    Refused(i32),
    #[error("the remote script ended without a result ({0})")]
    NoResult(ExitStatus),
    #[error("reading the remote output: {0}")]
    Output(#[source] io::Error),
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Base64 (standard alphabet, padded), as remote.sh decodes it.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

    /// The shell assignment remote.sh expects before its own text. Base64 has
    /// no quote, so single quotes are safe.
    pub fn block(&self) -> String {
        let lines: Vec<_> = self
            .0
            .iter()
            .map(|(name, value)| format!("{name}={}", base64(value.as_bytes())))
            .collect();
        format!("TG_SECRETS_B64='{}'\n", lines.join("\n"))
    }
}

/// The private key to log in with.
#[derive(Debug)]
pub enum Identity {
    File(PathBuf),
    /// Key text, written to a 0600 temporary file for the life of the connection.
    Text(String),
}

/// How to reach the VM: `deploy` of the environment plus a key. Holds the
/// temporary known_hosts (and key) files; they go when it is dropped.
#[derive(Debug)]
pub struct Connection {
    destination: String,
    port: u16,
    key: PathBuf,
    known_hosts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Connection {
    /// Pins the host key (scanning the host when only a fingerprint is given).
    pub fn new(deploy: &Deploy, identity: Identity) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("tracker-gitops-ssh.")
            .tempdir()
            .map_err(Error::TempFile)?;
        let known_hosts = dir.path().join("known_hosts");
        let lines = known_hosts_lines(deploy)?;
        std::fs::write(&known_hosts, lines).map_err(Error::TempFile)?;
        let key = match identity {
            Identity::File(path) => path,
            Identity::Text(text) => {
                let path = dir.path().join("key");
                write_private(&path, &text).map_err(Error::TempFile)?;
                path
            }
        };
        Ok(Self {
            destination: format!("{}@{}", deploy.user, deploy.host),
            port: deploy.port,
            key,
            known_hosts,
            _dir: dir,
        })
    }

    /// `ssh … bash -s -- ARGS`. No shell runs on our side, but ssh joins the
    /// remote command into one line for the VM's login shell: every argument
    /// is quoted for it.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ssh");
        command
            .args([
                "-T",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20"])
            .arg("-i")
            .arg(&self.key)
            .arg("-p")
            .arg(self.port.to_string())
            .arg(&self.destination)
            .args(["bash", "-s", "--"])
            .args(args.iter().map(|arg| shell_quote(arg)));
        command
    }

    /// Starts the remote script; its stdin is ours to feed, its stderr is shown as is.
    fn spawn(&self, args: &[&str], stdout: Stdio) -> Result<std::process::Child, Error> {
        self.command(args)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: "ssh",
                source,
            })
    }
}

/// `text` as one word for a POSIX shell: single-quoted, with `'` as `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// ssh refuses key files others can read, and OpenSSH needs the final newline.
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.trim_end().as_bytes())?;
    file.write_all(b"\n")
}

fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The known_hosts content for `deploy.host_key`.
fn known_hosts_lines(deploy: &Deploy) -> Result<String, Error> {
    let pattern = host_pattern(&deploy.host, deploy.port);
    let host_key = deploy.host_key.trim();
    if host_key.starts_with("SHA256:") {
        return scan_host_key(deploy, &pattern, host_key);
    }
    // `[pattern] type key [comment]`: the type is the first token that looks like one.
    let tokens: Vec<_> = host_key.split_whitespace().collect();
    let at = tokens
        .iter()
        .position(|t| ["ssh-", "ecdsa-", "sk-"].iter().any(|p| t.starts_with(p)))
        .filter(|&i| i + 1 < tokens.len())
        .ok_or(Error::HostKey)?;
    Ok(format!("{pattern} {} {}\n", tokens[at], tokens[at + 1]))
}

/// Only a fingerprint is pinned: scan the host, keep the keys that match.
fn scan_host_key(deploy: &Deploy, pattern: &str, expected: &str) -> Result<String, Error> {
    let scanned = run_tool(
        "ssh-keyscan",
        Command::new("ssh-keyscan").args([
            "-T",
            "10",
            "-p",
            &deploy.port.to_string(),
            &deploy.host,
        ]),
        None,
    )?;
    let mut lines = String::new();
    for line in scanned.lines().filter(|l| !l.starts_with('#')) {
        let tokens: Vec<_> = line.split_whitespace().collect();
        let [_, kind, key, ..] = tokens[..] else {
            continue;
        };
        let entry = format!("{pattern} {kind} {key}\n");
        let listed = run_tool(
            "ssh-keygen",
            Command::new("ssh-keygen").args(["-lf", "-"]),
            Some(&entry),
        )?;
        // ssh-keygen prints fingerprints without base64 padding.
        let fingerprint = listed.split_whitespace().nth(1).unwrap_or_default();
        if fingerprint.trim_end_matches('=') == expected.trim_end_matches('=') {
            lines.push_str(&entry);
        }
    }
    if lines.is_empty() {
        return Err(Error::FingerprintMismatch {
            host: deploy.host.clone(),
            port: deploy.port,
            expected: expected.to_string(),
        });
    }
    Ok(lines)
}

/// Runs a local tool to completion, returning its stdout.
fn run_tool(
    program: &'static str,
    command: &mut Command,
    stdin: Option<&str>,
) -> Result<String, Error> {
    let spawn = |source| Error::Spawn { program, source };
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn)?;
    }
    let output = child.wait_with_output().map_err(spawn)?;
    if !output.status.success() {
        return Err(Error::Tool {
            program,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
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
}

/// The result marker of a finished deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Deployed,
    Noop,
    RolledBack,
    Failed,
    RollbackFailed,
    LockBusy,
}

impl Outcome {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "deployed" => Self::Deployed,
            "noop" => Self::Noop,
            "rolled-back" => Self::RolledBack,
            "failed" => Self::Failed,
            "rollback-failed" => Self::RollbackFailed,
            "lock-busy" => Self::LockBusy,
            _ => return None,
        })
    }

    pub fn success(self) -> bool {
        matches!(self, Self::Deployed | Self::Noop)
    }
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
            .filter(|(name, _)| COMPOSE_STEPS.contains(&name.as_str()))
            .map(|(_, d)| *d)
            .sum()
    }
}

/// Runs the deploy on the VM, printing each step and its duration to
/// `progress`; the script's stderr goes to ours.
pub fn deploy(
    connection: &Connection,
    secrets: &Secrets,
    request: &Request,
    progress: &mut dyn Write,
) -> Result<Report, Error> {
    let timeout = request.timeout.as_secs().to_string();
    let args = [
        "deploy",
        request.root,
        request.repository,
        request.branch,
        request.commit,
        if request.pull { "1" } else { "0" },
        &timeout,
        request.health_url,
    ];
    let start = Instant::now();
    let mut child = connection.spawn(&args, Stdio::piped())?;
    // From a thread: ssh may not read all of stdin before we read its stdout.
    let mut stdin = child.stdin.take().expect("piped");
    let script = format!("{}{REMOTE_SCRIPT}", secrets.block());
    let feeder = std::thread::spawn(move || {
        // A closed pipe shows as ssh's exit status.
        let _ = stdin.write_all(script.as_bytes());
    });

    let mut steps: Vec<(String, Duration)> = Vec::new();
    let mut current = ("connect".to_string(), start);
    let mut result = None;
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    for line in stdout.lines() {
        let line = line.map_err(Error::Output)?;
        let Some(marker) = line.strip_prefix(MARKER) else {
            // remote.sh prints only markers on stdout; anything else is shown as is.
            let _ = writeln!(progress, "{line}");
            continue;
        };
        let mut words = marker.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("step"), Some(step), None) => {
                end_step(&mut steps, &mut current, step, progress);
                let _ = writeln!(progress, "step {step}");
            }
            (Some("result"), Some(word), Some(sha)) => {
                end_step(&mut steps, &mut current, "", progress);
                result = Outcome::parse(word).map(|outcome| (outcome, sha.to_string()));
            }
            _ => {
                let _ = writeln!(progress, "{line}");
            }
        }
    }
    let status = child.wait().map_err(|source| Error::Spawn {
        program: "ssh",
        source,
    })?;
    let _ = feeder.join();
    // Exit 2 is the script refusing its input (e.g. a commit not on the deploy
    // branch): an error whatever result it printed.
    if let (Some((outcome, sha)), false) = (result, status.code() == Some(2)) {
        return Ok(Report {
            outcome,
            sha,
            steps,
            total: start.elapsed(),
        });
    }
    Err(match status.code() {
        Some(255) => Error::Connection(connection.destination.clone()),
        Some(2) => Error::Refused(2),
        _ => Error::NoResult(status),
    })
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

/// Runs `status` on the VM; its report goes to our stdout, its exit code is returned
/// (0 in sync, 1 out of sync, 2 error).
pub fn status(connection: &Connection, root: &str, branch: &str) -> Result<i32, Error> {
    let mut child = connection.spawn(&["status", root, branch], Stdio::inherit())?;
    let mut stdin = child.stdin.take().expect("piped");
    // status reads the secrets the VM stored; it needs none from us.
    let _ = stdin.write_all(REMOTE_SCRIPT.as_bytes());
    drop(stdin);
    let status = child.wait().map_err(|source| Error::Spawn {
        program: "ssh",
        source,
    })?;
    match status.code() {
        Some(code @ 0..=2) => Ok(code),
        Some(255) => Err(Error::Connection(connection.destination.clone())),
        _ => Err(Error::NoResult(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quoted words, run through a real shell, come back unchanged.
    #[test]
    fn remote_arguments_survive_the_login_shell() {
        let hostile = [
            "plain",
            "a b",
            "x;$(touch /tmp/pwned)",
            "it's",
            "`id`&|>",
            "",
        ];
        let line = hostile
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new("sh")
            .args(["-c", &format!("printf '%s\\n' {line}")])
            .output()
            .unwrap();
        let echoed = String::from_utf8(output.stdout).unwrap();
        assert_eq!(echoed.lines().collect::<Vec<_>>(), hostile);
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    fn deploy_section(host_key: &str, port: u16) -> Deploy {
        Deploy {
            host: "vm.example.org".into(),
            port,
            user: "deploy".into(),
            host_key: host_key.into(),
            path: "/srv/x".into(),
            branch: None,
            repository: None,
        }
    }

    #[test]
    fn known_hosts_line_from_a_pinned_key() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake";
        assert_eq!(
            known_hosts_lines(&deploy_section(key, 2222)).unwrap(),
            format!("[vm.example.org]:2222 {key}\n")
        );
        assert_eq!(
            known_hosts_lines(&deploy_section(&format!("[x]:1 {key} comment"), 22)).unwrap(),
            format!("vm.example.org {key}\n")
        );
        assert!(matches!(
            known_hosts_lines(&deploy_section("nonsense", 22)),
            Err(Error::HostKey)
        ));
    }

    #[test]
    fn secrets_block_and_missing_names() {
        let env = crate::environment::test_environment("");
        let names: Vec<String> = env.secrets().iter().map(|s| s.to_string()).collect();
        let err = Secrets::collect(&env, |_| None).unwrap_err();
        assert!(matches!(&err, Error::MissingSecrets(missing) if *missing == names));
        let secrets = Secrets::collect(&env, |_| Some("s3cret value".into())).unwrap();
        let block = secrets.block();
        assert!(block.starts_with("TG_SECRETS_B64='"));
        assert!(block.contains(&format!("{}={}", names[0], base64(b"s3cret value"))));
        assert!(!block.contains("s3cret") && !format!("{secrets:?}").contains("s3cret"));
    }
}
