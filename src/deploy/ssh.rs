//! The SSH client: the system OpenSSH `ssh`, given every option on its command
//! line (no ssh_config), trusting only the pinned host key, logging in with a
//! key that never touches the disk.
//!
//! Apart from the deploy protocol ([`super`]) because it knows nothing of
//! `remote.sh`: it runs `bash -s -- ARGS` on the VM and hands back the child.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{ChildStderr, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Error;
use crate::environment::Deploy;

/// The environment variable holding the private key text when no `--identity` is given.
pub const KEY_VARIABLE: &str = "TRACKER_GITOPS_SSH_KEY";

/// How long ssh and ssh-keyscan wait for the VM to accept and greet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The private key to log in with.
#[derive(Debug)]
pub enum Identity {
    File(PathBuf),
    /// Key text, kept in memory (see `MemFile`) for the life of the connection.
    Text(String),
}

/// How to reach the VM: `deploy` of the environment plus a key. The pinned
/// known_hosts and a key given as text are `MemFile`s: nothing of them is
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
    pub(super) fn spawn(&self, args: &[&str], stdout: Stdio) -> Result<std::process::Child, Error> {
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
    pub(super) fn failed(&self) -> Error {
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
pub(super) fn shell_quote(text: &str) -> String {
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
}
