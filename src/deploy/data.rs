//! The data ops over the deploy's SSH path: a backup on demand, the list of
//! backups, a restore. The stack's backup service does the work (its script
//! is `templates/backup.sh.hbs`); `remote.sh` takes the deploy lock, stops
//! and starts the tracker around a restore, and audits. [`backup`] is the one
//! a deploy can call before a change that loses data.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use super::protocol::{DataOutcome, Prelude};
use super::{Caller, Connection, Error, ended, run_script};

/// Where and for whom.
#[derive(Debug)]
pub struct DataRequest<'a> {
    /// `deploy.path` on the VM.
    pub root: &'a str,
    pub caller: &'a Caller,
    /// How long to wait for a deploy's lock.
    pub lock_wait: Duration,
    /// The tracker's health check, which a restore waits for.
    pub health_url: &'a str,
}

/// What to do.
#[derive(Debug, Clone, Copy)]
pub enum DataOp<'a> {
    Backup,
    List,
    Restore {
        backup: &'a str,
        /// For the tracker to be healthy again.
        timeout: Duration,
    },
}

/// A backup on the VM, as its manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupEntry {
    /// Its UTC time, `YYYYMMDDTHHMMSSZ`: what `restore --from` takes.
    pub name: String,
    /// The deploy commit the stack ran.
    pub commit: String,
    /// `sqlite3` or `mysql`.
    pub driver: String,
    /// Size of the database file or dump.
    pub bytes: u64,
    /// Rows per table, verified by a restore into a scratch database.
    pub rows: BTreeMap<String, u64>,
}

impl BackupEntry {
    /// From the words after `backup`: name, commit, driver, bytes, `table=rows,…`.
    fn parse(words: &[&str]) -> Option<Self> {
        let [name, commit, driver, bytes, rows] = words else {
            return None;
        };
        Some(Self {
            name: name.to_string(),
            commit: commit.to_string(),
            driver: driver.to_string(),
            bytes: bytes.parse().ok()?,
            rows: parse_rows(rows)?,
        })
    }
}

/// Rows per table from the wire's `table=rows,…`.
fn parse_rows(text: &str) -> Option<BTreeMap<String, u64>> {
    text.split(',')
        .map(|pair| {
            let (table, count) = pair.split_once('=')?;
            Some((table.to_string(), count.parse().ok()?))
        })
        .collect()
}

/// `keys=0, torrents=1, …`, for people.
pub fn rows_text(rows: &BTreeMap<String, u64>) -> String {
    rows.iter()
        .map(|(table, count)| format!("{table}={count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A finished data op.
#[derive(Debug)]
pub struct DataReport {
    pub outcome: DataOutcome,
    /// The backup taken, or those listed.
    pub backups: Vec<BackupEntry>,
    /// The rows a restore put back, per table.
    pub restored: Option<BTreeMap<String, u64>>,
    /// Each step and its time, `connect` first.
    pub steps: Vec<(String, Duration)>,
    pub total: Duration,
}

impl DataRequest<'_> {
    /// The script, its prelude holding this request.
    pub fn script(&self, op: DataOp) -> String {
        let prelude = Prelude::new()
            .set("root", self.root)
            .set("actor", &self.caller.actor)
            .set("run", &self.caller.run)
            .set("lock_wait", &self.lock_wait.as_secs().to_string())
            .set("backup_script", &crate::stack::backup::script());
        match op {
            DataOp::Restore { backup, timeout } => prelude
                .set("backup", backup)
                .set("timeout", &timeout.as_secs().to_string())
                .set("health_url", self.health_url),
            DataOp::Backup | DataOp::List => prelude,
        }
        .script()
    }
}

impl DataOp<'_> {
    /// The op's word on the wire (`bash -s -- WORD`).
    pub fn word(self) -> &'static str {
        match self {
            DataOp::Backup => "backup",
            DataOp::List => "backups",
            DataOp::Restore { .. } => "restore",
        }
    }
}

/// Runs `op` on the VM, printing its steps and their times to `progress`;
/// the script's stderr goes to ours.
pub fn data_op(
    connection: &Connection,
    request: &DataRequest,
    op: DataOp,
    progress: &mut dyn Write,
) -> Result<DataReport, Error> {
    let mut outcome = None;
    let mut backups = Vec::new();
    let mut restored = None;
    let session = run_script(
        connection,
        op.word(),
        request.script(op),
        progress,
        |words| match words {
            ["done", word] => {
                outcome = DataOutcome::parse(word);
                outcome.is_some()
            }
            ["backup", rest @ ..] => BackupEntry::parse(rest)
                .map(|entry| backups.push(entry))
                .is_some(),
            ["restored", _, rows] => {
                restored = parse_rows(rows);
                restored.is_some()
            }
            _ => false,
        },
    )?;
    match outcome {
        Some(outcome) if session.status.code() == Some(outcome.code()) => Ok(DataReport {
            outcome,
            backups,
            restored,
            steps: session.steps,
            total: session.total,
        }),
        Some(outcome) if session.status.code() != Some(255) => {
            Err(Error::Protocol(outcome.word(), session.status))
        }
        _ => Err(ended(connection, session.status)),
    }
}

/// One backup now, on an open connection: what a deploy calls before a
/// change that loses data. The backup is verified when the outcome is
/// [`DataOutcome::BackedUp`].
pub fn backup(
    connection: &Connection,
    request: &DataRequest,
    progress: &mut dyn Write,
) -> Result<DataReport, Error> {
    data_op(connection, request, DataOp::Backup, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_lines_parse_or_are_refused() {
        let entry = BackupEntry::parse(&[
            "20250101T031700Z",
            "abc",
            "mysql",
            "2048",
            "keys=0,torrents=1,whitelist=0",
        ])
        .unwrap();
        assert_eq!(entry.rows["torrents"], 1);
        assert_eq!(rows_text(&entry.rows), "keys=0, torrents=1, whitelist=0");
        assert_eq!(
            BackupEntry::parse(&["x", "y", "z", "no-number", "a=1"]),
            None
        );
        assert_eq!(BackupEntry::parse(&["x", "y", "z", "1", "a=b"]), None);
        assert_eq!(BackupEntry::parse(&["x"]), None);
    }
}
