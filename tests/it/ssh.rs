//! The SSH client side of `deploy` and `status`: errors that say where and
//! why, no key left on disk, and the pin as the only trust (the e2e test,
//! against a real sshd from tests/e2e/vm.sh).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};

use serde_json::json;

use crate::deploy::Vm;
use crate::harness::{Project, Run};

/// A well-formed host key nothing answers with.
const OTHER_HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJgZk0UaRhIbDnwuoOoa+1TeVWIaUvXVkZz/AN2defFB";

/// The staging example pointed at `port` on loopback with `host_key` pinned.
fn pointed_at(project: &Project, port: u16, host_key: &str, path: &str) {
    project.edit_json("environments/staging.json", |env| {
        env["deploy"] = json!({
            "host": "127.0.0.1",
            "port": port,
            "user": "tg-deploy",
            "host_key": host_key,
            "path": path,
        });
    });
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn status(project: &Project) -> Run {
    Run(project
        .command(&["status", "--env", "staging"])
        .env("TRACKER_GITOPS_SSH_KEY", "unused")
        .output()
        .unwrap())
}

#[test]
#[ignore = "needs .ci/install: ssh client"]
fn an_unreachable_vm_is_named_with_its_cause() {
    let project = Project::with_examples();
    let port = closed_port();
    // Only a fingerprint pinned: ssh-keyscan reads the key first, and says
    // nothing about a refused connection.
    pointed_at(
        &project,
        port,
        "SHA256:8QpHJmlsKkbJSLbcCTtb2Ci6IZ8sXGD5Bmv4XHyOZXk",
        "/srv/x",
    );
    let run = status(&project).expect(2);
    assert!(
        run.stderr().contains(&format!(
            "error: cannot read the SSH host key of 127.0.0.1 port {port}: \
             connecting to 127.0.0.1:{port}: Connection refused"
        )),
        "{}",
        run.stderr()
    );
    // The key pinned: ssh itself connects, and its cause is in the error.
    pointed_at(&project, port, OTHER_HOST_KEY, "/srv/x");
    let run = status(&project).expect(2);
    assert!(
        run.stderr().contains(&format!(
            "error: ssh connection to tg-deploy@127.0.0.1 port {port} failed: \
             ssh: connect to host 127.0.0.1 port {port}: Connection refused"
        )),
        "{}",
        run.stderr()
    );
}

/// Every file under `dir` whose content contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
        {
            found.push(path);
        }
    }
    found
}

/// The first connection to `vm`; fails, rather than waiting forever, when
/// `cli` exits before its ssh connects (no ssh installed, an early error).
fn accept_while_running(vm: &TcpListener, cli: &mut std::process::Child) -> TcpStream {
    vm.set_nonblocking(true).unwrap();
    loop {
        match vm.accept() {
            Ok((connection, _)) => return connection,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = cli.try_wait().unwrap() {
                    panic!("the CLI exited ({status}) before ssh connected");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
#[ignore = "needs .ci/install: ssh client"]
fn a_killed_cli_leaves_no_key_on_disk() {
    let project = Project::with_examples();
    // Accepts ssh's connection and never answers: ssh waits for the banner.
    let vm = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = vm.local_addr().unwrap().port();
    pointed_at(&project, port, OTHER_HOST_KEY, "/srv/x");
    let tmp = project.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nkilled-cli-key-7f3a9c\n-----END OPENSSH PRIVATE KEY-----\n";
    let mut cli = Std::new(env!("CARGO_BIN_EXE_tracker-gitops"))
        .current_dir(project.path())
        .args(["status", "--env", "staging"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("TMPDIR", &tmp)
        .env("TRACKER_GITOPS_SSH_KEY", key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // ssh is connected: the key is wherever the CLI keeps it for ssh.
    let connection = accept_while_running(&vm, &mut cli);
    cli.kill().unwrap(); // SIGKILL: no destructor runs
    cli.wait().unwrap();
    assert_eq!(
        files_containing(&tmp, "killed-cli-key-7f3a9c"),
        Vec::<PathBuf>::new()
    );
    // The orphaned ssh sees the connection close and exits.
    drop(connection);
}

/// System files replaced for the length of a test, and restored (or removed,
/// with the directories made for them) on drop, also when an assertion fails.
#[derive(Default)]
struct SystemFiles {
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
    dirs: Vec<PathBuf>,
}

impl SystemFiles {
    fn replace(files: &[(&str, &str)]) -> Self {
        let mut saved = Self::default();
        for (path, content) in files {
            let path = PathBuf::from(path);
            saved.files.push((path.clone(), std::fs::read(&path).ok()));
            let dir = path.parent().unwrap();
            if !dir.exists() {
                saved.dirs.push(dir.to_path_buf());
                std::fs::create_dir_all(dir).unwrap();
            }
            std::fs::write(&path, content).unwrap();
        }
        saved
    }
}

impl Drop for SystemFiles {
    fn drop(&mut self) {
        for (path, before) in self.files.iter().rev() {
            let _ = match before {
                Some(bytes) => std::fs::write(path, bytes),
                None => std::fs::remove_file(path),
            };
        }
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A client configuration that would redirect trust: the host key looked up
/// under another name, checking off, the system's files consulted.
const HOSTILE_SSH_CONFIG: &str = "Host *
    HostKeyAlias tracker-gitops-hostile
    StrictHostKeyChecking no
    GlobalKnownHostsFile /etc/ssh/ssh_known_hosts
    UserKnownHostsFile /root/.ssh/known_hosts
";

#[test]
#[ignore = "needs .ci/install: sshd, root"]
fn ssh_e2e_system_known_hosts_and_config_do_not_override_the_pin() {
    let project = Project::with_examples_in_git();
    // The deploy user clones origin.git from inside the (0700) temp dir.
    Std::new("chmod")
        .args(["0755", project.path().to_str().unwrap()])
        .status()
        .unwrap();
    let vm = Vm::start(project.join("vm"), &project.join("origin.git"));
    project.write(".git/info/exclude", "/origin.git/\n/vm/\n");
    let port: u16 = vm.var("VM_PORT").parse().unwrap();
    let key = std::fs::read_to_string(vm.var("VM_KEY")).unwrap();
    let right = vm.var("VM_HOST_KEY");
    let status = || {
        Run(project
            .command(&["status", "--env", "staging"])
            .env("TRACKER_GITOPS_SSH_KEY", &key)
            .output()
            .unwrap())
    };
    let known = |host_key: &str| format!("[127.0.0.1]:{port} {host_key}\n");

    // A runner whose known_hosts files name another key for the VM and whose
    // ssh_config aliases its key and turns checking off: the pin still holds.
    {
        let _files = SystemFiles::replace(&[
            ("/etc/ssh/ssh_known_hosts", &known(OTHER_HOST_KEY)),
            ("/root/.ssh/known_hosts", &known(OTHER_HOST_KEY)),
            ("/root/.ssh/config", HOSTILE_SSH_CONFIG),
            (
                "/etc/ssh/ssh_config.d/00-tracker-gitops-test.conf",
                HOSTILE_SSH_CONFIG,
            ),
        ]);
        pointed_at(&project, port, right, &vm.root);
        // Connected: the VM reports that nothing is deployed yet.
        let run = status().expect(1);
        assert!(run.stdout().contains("deployed: none"), "{}", run.stdout());
    }

    // A wrong pin is refused, though the system's known_hosts have the VM's
    // real key.
    {
        let _files = SystemFiles::replace(&[
            ("/etc/ssh/ssh_known_hosts", &known(right)),
            ("/root/.ssh/known_hosts", &known(right)),
        ]);
        pointed_at(&project, port, OTHER_HOST_KEY, &vm.root);
        let run = status().expect(2);
        assert!(
            run.stderr().contains(&format!(
                "ssh connection to tg-deploy@127.0.0.1 port {port} failed: Host key verification failed."
            )),
            "{}",
            run.stderr()
        );
        assert!(!run.stdout().contains("deployed:"), "{}", run.stdout());
    }
}
