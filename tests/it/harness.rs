//! A throwaway project directory with environment files, and the real binary run
//! inside it.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use tempfile::TempDir;

/// The repository root, where the shipped examples live.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub struct Project {
    dir: TempDir,
}

impl Project {
    /// An empty project.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A project holding copies of the shipped example environments.
    pub fn with_examples() -> Self {
        Self::with_environments_from(&repo_root().join("environments"))
    }

    /// A project whose `environments/` holds copies of the files in `dir`.
    pub fn with_environments_from(dir: &Path) -> Self {
        let project = Self::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            project.write(
                &format!("environments/{name}"),
                std::fs::read(&path).unwrap(),
            );
        }
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write(&self, relative: &str, content: impl AsRef<[u8]>) -> &Self {
        let path = self.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    /// Edits a JSON file in place.
    pub fn edit_json(&self, relative: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut value: serde_json::Value = serde_json::from_str(&self.read(relative)).unwrap();
        edit(&mut value);
        self.write(relative, serde_json::to_string_pretty(&value).unwrap());
    }

    /// The binary, run in the project directory with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::cargo_bin("tracker-gitops").unwrap();
        command
            .current_dir(self.path())
            .args(args)
            .env("NO_COLOR", "1");
        // Tests set what they need; nothing leaks in from a CI runner's own
        // workflow (GITHUB_REF, GITHUB_EVENT_PATH, GITHUB_TOKEN…) or a user's key.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("GITHUB_") || name.starts_with("TRACKER_GITOPS_") {
                command.env_remove(&*name);
            }
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().unwrap())
    }
}

/// A finished run of the binary.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().expect("exited")
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts that standard error contains `text`, showing it when not.
    pub fn expect_stderr(self, text: &str) -> Self {
        let stderr = self.stderr();
        assert!(stderr.contains(text), "no {text:?} in:\n{stderr}");
        self
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// A real command-line tool, which must be installed (`.ci/install`).
pub fn tool(name: &str) -> std::process::Command {
    std::process::Command::new(name)
}

/// The directory of the real torrust-tracker 3.0.0 binaries (`.ci/install` builds them).
pub fn tracker_bin_dir() -> PathBuf {
    std::env::var_os("TRACKER_GITOPS_TRACKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/tracker-gitops/torrust-tracker-3.0.0/bin"))
}

impl Project {
    /// Runs the `git` CLI in `dir` (relative to the project), asserting success.
    pub fn git_in(&self, dir: &str, args: &[&str]) -> String {
        let output = std::process::Command::new("git")
            .current_dir(self.join(dir))
            .args(args)
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.org")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.org")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(".", args)
    }

    /// The examples rendered and committed on `main` of a fresh repository,
    /// with a bare repository `origin.git` beside it as `origin`, whose
    /// default branch `main` holds that commit (reviewed and merged).
    pub fn with_examples_in_git() -> Self {
        let project = Self::with_examples();
        project.run(&["render"]).expect(0);
        project.git(&["init", "-q", "-b", "main"]);
        project.git(&["add", "-A"]);
        project.git(&["commit", "-qm", "examples"]);
        let origin = project.join("origin.git");
        project.git(&[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            origin.to_str().unwrap(),
        ]);
        project.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
        // The bare remote is not part of the source.
        project.write(".git/info/exclude", "/origin.git/\n");
        project.push_main();
        project
    }

    /// Commits everything in the project directory.
    pub fn commit_all(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-qm", message]);
    }

    /// Commits everything and pushes it to origin's `main`, as merging a
    /// reviewed pull request would.
    pub fn commit_reviewed(&self, message: &str) {
        self.commit_all(message);
        self.push_main();
    }

    /// Pushes HEAD to origin's `main`; by URL, so that no `origin/main`
    /// appears locally (plan would take it as its base).
    pub fn push_main(&self) {
        self.push_to_origin("main");
    }

    /// Pushes HEAD to origin's `branch`, by URL.
    pub fn push_to_origin(&self, branch: &str) {
        let origin = self.join("origin.git");
        let refspec = format!("HEAD:refs/heads/{branch}");
        self.git(&["push", "-q", origin.to_str().unwrap(), &refspec]);
    }

    /// `publish --push` of `envs` (all when empty) from HEAD, pushed to
    /// origin's `branch` and tracked there: a branch nobody merged into main.
    pub fn publish_from_branch(&self, branch: &str, envs: &[&str]) -> Run {
        self.push_to_origin(branch);
        let mut args = vec!["publish", "--remote", "origin", "--push"];
        args.extend(["--source-branch", branch]);
        for env in envs {
            args.extend(["--env", env]);
        }
        self.run(&args)
    }
}

impl Project {
    /// Runs `git --git-dir origin.git ARGS`, asserting success.
    pub fn origin_git(&self, args: &[&str]) -> String {
        let mut full = vec!["--git-dir", "origin.git"];
        full.extend_from_slice(args);
        self.git(&full)
    }

    /// Pushes a commit to origin's `branch` by hand, as someone with push
    /// access could: the tip's tree changed by `edits` (each the arguments of
    /// one `git update-index`, e.g. `["--cacheinfo", "100755,<blob>,file"]`),
    /// with `message` (default: the tip's, trailers and all) and the tip as
    /// parent. Returns the new commit.
    pub fn forge_in_origin(
        &self,
        branch: &str,
        edits: &[&[&str]],
        message: Option<&str>,
    ) -> String {
        let index = self.join("forged.index");
        // An empty work tree: some update-index operations insist on one.
        let work_tree = tempfile::tempdir().unwrap();
        let git = |args: &[&str], stdin: Option<&str>| -> String {
            use std::io::Write;
            let mut child = std::process::Command::new("git")
                .current_dir(self.path())
                .args(["--git-dir", "origin.git"])
                .args(args)
                .env("GIT_INDEX_FILE", &index)
                .env("GIT_WORK_TREE", work_tree.path())
                .env("GIT_AUTHOR_NAME", "Mallory")
                .env("GIT_AUTHOR_EMAIL", "mallory@example.org")
                .env("GIT_COMMITTER_NAME", "Mallory")
                .env("GIT_COMMITTER_EMAIL", "mallory@example.org")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(stdin.unwrap_or_default().as_bytes())
                .unwrap();
            drop(pipe);
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        };
        let tip = git(&["rev-parse", &format!("refs/heads/{branch}")], None);
        git(&["read-tree", &tip], None);
        for edit in edits {
            let mut args = vec!["update-index"];
            args.extend_from_slice(edit);
            git(&args, None);
        }
        let tree = git(&["write-tree"], None);
        let message = match message {
            Some(message) => message.to_string(),
            None => git(&["log", "-1", "--format=%B", &tip], None),
        };
        let commit = git(
            &["commit-tree", &tree, "-p", &tip, "-F", "-"],
            Some(&message),
        );
        git(
            &["update-ref", &format!("refs/heads/{branch}"), &commit],
            None,
        );
        std::fs::remove_file(&index).unwrap();
        commit
    }

    /// Pushes by hand onto origin's `branch` a commit that keeps publish's
    /// message and provenance but bind-mounts the host's /etc into the first
    /// service with volumes, as an attacker with push access could.
    pub fn forge_etc_bind_mount(&self, branch: &str) -> String {
        let compose = self.origin_git(&["show", &format!("{branch}:docker-compose.yml")]);
        let tampered = compose.replacen(
            "    volumes:\n",
            "    volumes:\n      - /etc:/host-etc\n",
            1,
        );
        assert_ne!(tampered, compose);
        let entry = format!("100644,{},docker-compose.yml", self.origin_blob(&tampered));
        self.forge_in_origin(branch, &[&["--cacheinfo", &entry]], None)
    }

    /// Writes `content` into origin's object database; returns the blob id.
    pub fn origin_blob(&self, content: &str) -> String {
        let path = self.join("forged.blob");
        std::fs::write(&path, content).unwrap();
        let id = self.origin_git(&["hash-object", "-w", path.to_str().unwrap()]);
        std::fs::remove_file(&path).unwrap();
        id.trim().to_string()
    }
}
