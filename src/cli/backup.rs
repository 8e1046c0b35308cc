//! `backup`: one verified backup of an environment's database now, taken
//! online by the stack's backup service over the deploy's SSH path; with
//! `--list`, the backups the VM keeps.

use anyhow::Result;
use serde_json::json;

use super::Conclusion;
use super::args::{DataTarget, Format, Paths, Typed};
use super::vm;
use crate::deploy::{self, DataOp};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub(super) data: DataTarget,
    /// List the backups instead of taking one.
    #[arg(long)]
    list: bool,
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        self.data.anchor(typed);
    }
}

pub fn run(args: &Args) -> Result<Conclusion> {
    let op = if args.list {
        DataOp::List
    } else {
        DataOp::Backup
    };
    let human = args.data.output.format == Format::Human;
    vm::data_op(&args.data, op, |env, report| {
        if human {
            print(&env.name, args.list, &report.backups);
        }
        match op {
            DataOp::List => json!({ "environment": env.name, "backups": report.backups }),
            _ => json!({ "environment": env.name, "backup": report.backups.first() }),
        }
    })
}

fn print(env: &str, list: bool, backups: &[deploy::BackupEntry]) {
    if list && backups.is_empty() {
        println!("no backups of {env}");
    }
    for backup in backups {
        let what = if list { "" } else { "backed up " };
        println!(
            "{what}{} of {env}: {} database, {} bytes, commit {}, rows {} (verified)",
            backup.name,
            backup.driver,
            backup.bytes,
            backup.commit,
            deploy::rows_text(&backup.rows)
        );
    }
}
