//! Deploy a published commit to the VM, and ask the VM whether it is in sync.
//!
//! Everything that happens on the VM is `remote.sh`, fed over the stdin of the
//! system OpenSSH client (`bash -s -- <op>`) after a prelude ([`protocol`])
//! holding the request and the secrets. Here: the secrets, the host key
//! pinning, the key in memory, and the marker lines the script prints on
//! stdout, timed as they arrive.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::environment::Deploy;
use crate::environment::Environment;
use crate::text::plural;

mod protocol;
pub use protocol::{MARKER, Outcome, Prelude, Step, Verdict};

/// The script run on the VM; its header documents the protocol.
pub const REMOTE_SCRIPT: &str = include_str!("remote.sh");

/// The environment variable holding the private key text when no `--identity` is given.
pub const KEY_VARIABLE: &str = "TRACKER_GITOPS_SSH_KEY";

/// How long a deploy waits for another one's lock on the VM.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long ssh and ssh-keyscan wait for the VM to accept and greet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
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

    /// Secrets as they are given, whatever their names (remote.sh checks them).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The `NAME=<base64>` lines remote.sh reads from the prelude.
    pub fn lines(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}={}\n", base64(value.as_bytes())))
            .collect()
    }
}

/// The private key to log in with.
#[derive(Debug)]
pub enum Identity {
    File(PathBuf),
    /// Key text, kept in memory (see [`MemFile`]) for the life of the connection.
    Text(String),
}

/// How to reach the VM: `deploy` of the environment plus a key. The pinned
/// known_hosts and a key given as text are [`MemFile`]s: nothing of them is
/// on disk, and they vanish with the process, even on SIGKILL.
#[derive(Debug)]
pub struct Connection {
    destination: String,
    port: u16,
    key: Key,
    known_hosts: MemFile,
    /// The thread forwarding ssh's stderr; it returns ssh's last line, the
    /// cause of a failed connection.
    stderr: Mutex<Option<JoinHandle<String>>>,
}

#[derive(Debug)]
enum Key {
    File(PathBuf),
    Memory(MemFile),
}

impl Connection {
    /// Pins the host key (scanning the host when only a fingerprint is given).
    pub fn new(deploy: &Deploy, identity: Identity) -> Result<Self, Error> {
        let lines = known_hosts_lines(deploy)?;
        let known_hosts =
            MemFile::new("tracker-gitops-known-hosts", &lines).map_err(Error::MemFile)?;
        let key = match identity {
            Identity::File(path) => Key::File(path),
            // OpenSSH needs the final newline.
            Identity::Text(text) => Key::Memory(
                MemFile::new("tracker-gitops-key", &format!("{}\n", text.trim_end()))
                    .map_err(Error::MemFile)?,
            ),
        };
        Ok(Self {
            destination: format!("{}@{}", deploy.user, deploy.host),
            port: deploy.port,
            key,
            known_hosts,
            stderr: Mutex::new(None),
        })
    }

    /// `ssh … bash -s -- ARGS`. No shell runs on our side, but ssh joins the
    /// remote command into one line for the VM's login shell: every argument
    /// is quoted for it.
    fn command(&self, args: &[&str]) -> Command {
        let key = match &self.key {
            Key::File(path) => path.clone(),
            Key::Memory(file) => file.path(),
        };
        let mut command = Command::new("ssh");
        // No ssh_config (the runner's could redirect the host, alias its key
        // or turn checking off): every option is here.
        command.args(["-F", "/dev/null", "-T"]);
        for option in self.options() {
            command.arg("-o").arg(option);
        }
        command
            .arg("-i")
            .arg(key)
            .arg("-p")
            .arg(self.port.to_string())
            .arg(&self.destination)
            .args(["bash", "-s", "--"])
            .args(args.iter().map(|arg| shell_quote(arg)));
        command
    }

    fn options(&self) -> Vec<String> {
        let pin = format!("UserKnownHostsFile={}", self.known_hosts.path().display());
        let timeout = format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs());
        [
            // The pin is the only trust: no system known_hosts, no DNS, no
            // learning or updating keys.
            "StrictHostKeyChecking=yes",
            "GlobalKnownHostsFile=/dev/null",
            &pin,
            "CheckHostIP=no",
            "UpdateHostKeys=no",
            "VerifyHostKeyDNS=no",
            // Our key only: no agent, no prompt.
            "BatchMode=yes",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            &timeout,
            // A VM silent for 4 × 15 s is gone: a half-open connection fails
            // in a minute instead of holding the job until it times out.
            "ServerAliveInterval=15",
            "ServerAliveCountMax=4",
        ]
        .iter()
        .map(|option| option.to_string())
        .collect()
    }

    /// Starts the remote script; its stdin is ours to feed, its stderr is
    /// shown as it comes.
    fn spawn(&self, args: &[&str], stdout: Stdio) -> Result<std::process::Child, Error> {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: "ssh",
                source,
            })?;
        let stderr = child.stderr.take().expect("piped");
        let forwarder = std::thread::spawn(move || forward_stderr(stderr));
        *self.stderr.lock().unwrap_or_else(PoisonError::into_inner) = Some(forwarder);
        Ok(child)
    }

    /// The error for ssh's exit status 255 (it could not connect, or lost the
    /// connection), with what ssh said last.
    fn failed(&self) -> Error {
        let said = self
            .stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .and_then(|forwarder| forwarder.join().ok())
            .filter(|line| !line.is_empty());
        Error::Connection {
            destination: self.destination.clone(),
            port: self.port,
            cause: said.unwrap_or_else(|| "ssh exited with status 255 and said nothing".into()),
        }
    }
}

/// Copies ssh's stderr (its own messages and the remote script's) to ours,
/// line by line; returns the last non-empty line.
fn forward_stderr(pipe: ChildStderr) -> String {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    let mut last = String::new();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let _ = io::stderr().write_all(&line);
        let text = String::from_utf8_lossy(&line).trim().to_string();
        if !text.is_empty() {
            last = text;
        }
        line.clear();
    }
    last
}

/// An anonymous memory file (memfd), mode 0600, that other processes of this
/// user open as `/proc/<our pid>/fd/<fd>`. The descriptor is close-on-exec,
/// so no child inherits it; the file never touches a disk and is gone when
/// this process ends, however it ends.
#[derive(Debug)]
struct MemFile(std::fs::File);

impl MemFile {
    fn new(name: &str, text: &str) -> io::Result<Self> {
        use rustix::fs::{MemfdFlags, Mode, fchmod, memfd_create};
        let fd = memfd_create(name, MemfdFlags::CLOEXEC)?;
        // ssh refuses a key file others could read.
        fchmod(&fd, Mode::from_raw_mode(0o600))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(text.as_bytes())?;
        Ok(Self(file))
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.0.as_raw_fd()
        ))
    }
}

/// `text` as one word for a POSIX shell: single-quoted, with `'` as `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
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
    let timeout = CONNECT_TIMEOUT.as_secs().to_string();
    let port = deploy.port.to_string();
    let scan = Command::new("ssh-keyscan")
        .args(["-T", &timeout, "-p", &port, &deploy.host])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: "ssh-keyscan",
            source,
        })?;
    let scanned = String::from_utf8_lossy(&scan.stdout);
    let offered: Vec<_> = scanned
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [_, kind, key, ..] => Some(format!("{pattern} {kind} {key}\n")),
                _ => None,
            },
        )
        .collect();
    if offered.is_empty() {
        // ssh-keyscan says nothing about why (not even on stderr for a refused
        // or timed-out connection): ask the network ourselves.
        let said = String::from_utf8_lossy(&scan.stderr);
        return Err(Error::Unreachable {
            host: deploy.host.clone(),
            port: deploy.port,
            cause: unreachable_cause(&deploy.host, deploy.port, said.trim()),
        });
    }
    let mut lines = String::new();
    for entry in offered {
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

/// Why `host:port` offered no host key: the address it does not resolve to,
/// or each address's connection error.
fn unreachable_cause(host: &str, port: u16, keyscan_said: &str) -> String {
    let addresses = match (host, port).to_socket_addrs() {
        Ok(addresses) => addresses,
        Err(e) => return format!("cannot resolve {host}: {e}"),
    };
    let mut causes = Vec::new();
    for address in addresses {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(_) => {
                let mut cause = format!(
                    "{address} accepts connections but sent no SSH host key within {}s",
                    CONNECT_TIMEOUT.as_secs()
                );
                if let Some(said) = keyscan_said.lines().last() {
                    cause.push_str(&format!(" (ssh-keyscan: {said})"));
                }
                return cause;
            }
            Err(e) => causes.push(format!("connecting to {address}: {e}")),
        }
    }
    if causes.is_empty() {
        format!("{host} resolves to no address")
    } else {
        causes.join("; ")
    }
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
    let start = Instant::now();
    let mut child = connection.spawn(&["deploy"], Stdio::piped())?;
    // From a thread: ssh may not read all of stdin before we read its stdout.
    let mut stdin = child.stdin.take().expect("piped");
    let script = request.script(secrets);
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
        let words: Vec<_> = line
            .strip_prefix(MARKER)
            .map(|marker| marker.split_whitespace().collect())
            .unwrap_or_default();
        match words[..] {
            ["step", word] if Step::parse(word).is_some() => {
                end_step(&mut steps, &mut current, word, progress);
                let _ = writeln!(progress, "step {word}");
            }
            ["result", word, sha] if Outcome::parse(word).is_some() => {
                end_step(&mut steps, &mut current, "", progress);
                result = Outcome::parse(word).map(|outcome| (outcome, sha.to_string()));
            }
            // remote.sh prints only markers on stdout; anything else is shown as is.
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
    match result {
        Some((outcome, sha)) if status.code() == Some(outcome.code()) => Ok(Report {
            outcome,
            sha,
            steps,
            total: start.elapsed(),
        }),
        Some((outcome, _)) if status.code() != Some(255) => {
            Err(Error::Protocol(outcome.word(), status))
        }
        _ => Err(ended(connection, status)),
    }
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

/// The request of `status`.
pub fn status_prelude(root: &str, branch: &str, keep: &[&str]) -> Prelude {
    Prelude::new()
        .set("root", root)
        .set("branch", branch)
        .set("keep", &keep.join(" "))
}

/// The request of `previous`.
pub fn previous_prelude(root: &str) -> Prelude {
    Prelude::new().set("root", root)
}

/// Runs `status` on the VM; its report goes to our stdout. `None`: the script
/// could not tell (exit 2, its reason on stderr).
pub fn status(
    connection: &Connection,
    root: &str,
    branch: &str,
    keep: &[&str],
) -> Result<Option<Verdict>, Error> {
    let status = run_op(
        connection,
        "status",
        status_prelude(root, branch, keep),
        Stdio::inherit(),
    )?
    .wait()
    .map_err(|source| Error::Spawn {
        program: "ssh",
        source,
    })?;
    if status.code() == Some(Outcome::Refused.code()) {
        return Ok(None);
    }
    Verdict::ALL
        .iter()
        .find(|v| status.code() == Some(v.code()))
        .map(|v| Some(*v))
        .ok_or_else(|| ended(connection, status))
}

/// The commit a rollback goes back to: the newest deployed before the running
/// one that is older than it and whose secrets the VM keeps. `None`: there is
/// none.
pub fn previous(connection: &Connection, root: &str) -> Result<Option<String>, Error> {
    let output = run_op(
        connection,
        "previous",
        previous_prelude(root),
        Stdio::piped(),
    )?
    .wait_with_output()
    .map_err(|source| Error::Spawn {
        program: "ssh",
        source,
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer = stdout
        .lines()
        .filter_map(|line| line.strip_prefix(MARKER)?.strip_prefix("previous "))
        .next_back();
    match answer {
        Some("none") if output.status.success() => Ok(None),
        Some(sha) if output.status.success() => Ok(Some(sha.to_string())),
        _ => Err(ended(connection, output.status)),
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

    /// What the e2e test proves against a hostile ssh_config and known_hosts,
    /// and the deadlines no test waits for.
    #[test]
    fn ssh_trusts_the_pin_only_and_gives_up_on_a_silent_vm() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake";
        let connection = Connection::new(
            &deploy_section(key, 2222),
            Identity::Text("PRIVATE KEY TEXT".into()),
        )
        .unwrap();
        let command = connection.command(&["status"]);
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[..3], ["-F", "/dev/null", "-T"]);
        let options: Vec<_> = args
            .windows(2)
            .filter(|pair| pair[0] == "-o")
            .map(|pair| pair[1].as_str())
            .collect();
        for option in [
            "StrictHostKeyChecking=yes",
            "GlobalKnownHostsFile=/dev/null",
            "ConnectTimeout=15",
            "ServerAliveInterval=15",
            "ServerAliveCountMax=4",
        ] {
            assert!(options.contains(&option), "{option} in {options:?}");
        }
        // The pin and the key are in memory, readable (by this user only)
        // through /proc; the key is not in argv.
        let pin = options
            .iter()
            .find_map(|o| o.strip_prefix("UserKnownHostsFile="))
            .unwrap();
        let identity = &args[args.iter().position(|a| a == "-i").unwrap() + 1];
        for path in [pin, identity] {
            assert!(path.starts_with("/proc/"), "{path}");
        }
        assert_eq!(
            std::fs::read_to_string(pin).unwrap(),
            format!("[vm.example.org]:2222 {key}\n")
        );
        assert_eq!(
            std::fs::read_to_string(identity).unwrap(),
            "PRIVATE KEY TEXT\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(identity).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!args.iter().any(|a| a.contains("PRIVATE KEY")));
    }

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
        assert!(lines.starts_with(&format!("{}={}\n", names[0], base64(b"s3cret value"))));
        assert!(!lines.contains("s3cret") && !format!("{secrets:?}").contains("s3cret"));
    }
}
