//! `restore`: put a backup back into the database of a deployed stack. Only
//! the tracker stops, for the swap; the deploy lock keeps deploys out, and the
//! VM audits it.

use std::time::Duration;

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
    /// The backup, by name (`backup --list` shows them), e.g. 20250101T031700Z.
    #[arg(long = "from", value_name = "BACKUP")]
    from: String,
    /// Seconds the tracker gets to become healthy again.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        self.data.anchor(typed);
    }
}

pub fn run(args: &Args) -> Result<Conclusion> {
    vm::data_op(
        &args.data,
        DataOp::Restore {
            backup: &args.from,
            timeout: Duration::from_secs(args.timeout),
        },
        |env, report| {
            if args.data.output.format == Format::Human {
                if let Some(rows) = &report.restored {
                    let rows = deploy::rows_text(rows);
                    println!("restored {} into {}: rows {rows}", args.from, env.name);
                }
            }
            json!({ "environment": env.name, "backup": args.from, "rows": report.restored })
        },
    )
}
