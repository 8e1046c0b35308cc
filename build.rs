//! Records the commit the binary is built from, for `--version`: from git
//! when built in this repository's work tree, else from the
//! `.cargo_vcs_info.json` that `cargo package` writes (a crates.io build),
//! else it says it is unknown. Only the commit: the same source gives the
//! same binary.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The commit of this work tree (not of a repository around a copy of it).
fn from_git(manifest_dir: &Path) -> Option<String> {
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != manifest_dir.canonicalize().ok()? {
        return None;
    }
    // Rebuild when HEAD moves: HEAD itself, the branch it names, packed refs.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.extend(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.iter().filter(|path| Path::new(path).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

/// `"sha1": "<hex>"` from `cargo package`'s record.
fn from_package(manifest_dir: &Path) -> Option<String> {
    let record = std::fs::read_to_string(manifest_dir.join(".cargo_vcs_info.json")).ok()?;
    let after = record.split("\"sha1\"").nth(1)?;
    let sha: String = after
        .chars()
        .skip_while(|c| !c.is_ascii_hexdigit())
        .take_while(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    (sha.len() == 12).then_some(sha)
}

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    let manifest_dir = Path::new(&manifest_dir);
    println!("cargo:rerun-if-changed=build.rs");
    let commit = from_git(manifest_dir)
        .or_else(|| from_package(manifest_dir))
        .map_or_else(
            || "commit unknown".to_string(),
            |sha| format!("commit {sha}"),
        );
    println!(
        "cargo:rustc-env=TRACKER_GITOPS_VERSION={} ({commit})",
        std::env::var("CARGO_PKG_VERSION").expect("cargo sets it")
    );
}
