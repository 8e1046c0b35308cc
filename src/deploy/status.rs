//! `status` on the VM: its report (the deployed commit, the deploy branch's
//! tip, each service's state, what drifted, then the verdict), read into a
//! value so that the CLI can print it as the VM wrote it or as JSON.

use serde::Serialize;

use super::{Connection, Error, Outcome, Prelude, Verdict, ended, op_output};

/// What `status` found on the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub verdict: Verdict,
    /// The commit the VM records as deployed.
    pub deployed: Option<String>,
    /// The deploy branch's tip in the repository the VM clones.
    pub branch_tip: Option<String>,
    pub services: Vec<Service>,
    pub drift: Vec<Drift>,
    /// The report as the VM printed it, for people.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub name: String,
    /// docker compose's state (`running`, `exited`, …).
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, or `none` without a health check.
    pub health: String,
}

/// What differs from the deployed commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// `container` (a service not running the deployed configuration),
    /// `file` (a modified file of the checkout) or `untracked` (a file the
    /// commit does not have).
    pub kind: String,
    /// The service or the path in the checkout.
    pub name: String,
}

/// The request of `status`.
pub fn status_prelude(root: &str, branch: &str, keep: &[&str]) -> Prelude {
    Prelude::new()
        .set("root", root)
        .set("branch", branch)
        .set("keep", &keep.join(" "))
}

/// Runs `status` on the VM. `None`: the script could not tell (exit 2, its
/// reason on stderr).
pub fn status(
    connection: &Connection,
    root: &str,
    branch: &str,
    keep: &[&str],
) -> Result<Option<Status>, Error> {
    let output = op_output(connection, "status", status_prelude(root, branch, keep))?;
    let code = output.status.code();
    if code == Some(Outcome::Refused.code()) {
        return Ok(None);
    }
    let verdict = Verdict::ALL
        .iter()
        .copied()
        .find(|v| code == Some(v.code()))
        .ok_or_else(|| ended(connection, output.status))?;
    Ok(Some(Status::parse(
        verdict,
        &String::from_utf8_lossy(&output.stdout),
    )))
}

impl Status {
    /// Reads the report; lines it does not know stay in `text` only.
    fn parse(verdict: Verdict, text: &str) -> Self {
        let commit = |value: &str| {
            crate::git::parse_oid(value)
                .is_some()
                .then(|| value.to_string())
        };
        let mut status = Self {
            verdict,
            deployed: None,
            branch_tip: None,
            services: Vec::new(),
            drift: Vec::new(),
            text: text.to_string(),
        };
        for line in text.lines() {
            if let Some(sha) = line.strip_prefix("deployed: ") {
                status.deployed = commit(sha);
            } else if let Some(sha) = line.strip_prefix("branch: ") {
                status.branch_tip = commit(sha);
            } else if let Some(drift) = line.strip_prefix("drift: ") {
                if let Some((kind, name)) = drift.split_once(' ') {
                    status.drift.push(Drift {
                        kind: kind.to_string(),
                        name: name.to_string(),
                    });
                }
            } else if let Some(service) = line.strip_prefix("service ") {
                if let [name, state, health] = service.split(' ').collect::<Vec<_>>()[..] {
                    status.services.push(Service {
                        name: name.to_string(),
                        state: state.to_string(),
                        health: health.to_string(),
                    });
                }
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_read_line_by_line() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let text = format!(
            "deployed: {sha}\nbranch: unknown\nservice tracker running healthy\n\
             service prometheus exited none\ndrift: container prometheus\n\
             drift: file docker-compose.yml\ndrift: untracked a b.txt\nout-of-sync\n"
        );
        let status = Status::parse(Verdict::OutOfSync, &text);
        assert_eq!(status.deployed.as_deref(), Some(sha));
        assert_eq!(status.branch_tip, None);
        assert_eq!(
            status.services[1],
            Service {
                name: "prometheus".into(),
                state: "exited".into(),
                health: "none".into()
            }
        );
        let drift: Vec<_> = status
            .drift
            .iter()
            .map(|d| format!("{}:{}", d.kind, d.name))
            .collect();
        assert_eq!(
            drift,
            [
                "container:prometheus",
                "file:docker-compose.yml",
                "untracked:a b.txt"
            ]
        );
        assert_eq!(status.text, text);
    }
}
