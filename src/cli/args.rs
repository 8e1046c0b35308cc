//! Argument groups several commands share. They only parse: each command's
//! `run` decides what they mean.

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;

use crate::environment;

/// Which environments to work on, and where their files and output are.
#[derive(Debug, clap::Args)]
pub struct Selection {
    /// Only this environment (repeatable; default: all).
    #[arg(long = "env", value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub dirs: Environments,
    /// Directory holding the rendered environments.
    #[arg(long, value_name = "DIR", default_value = "build")]
    pub out: PathBuf,
    /// Directory of templates that replace the built-in ones of the same name.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct Environments {
    /// Directory holding the environment files.
    #[arg(
        long = "environments",
        value_name = "DIR",
        default_value = "environments"
    )]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct Branches {
    /// Deploy branches are <prefix><env> unless the environment names its own,
    /// which must start with <prefix> too.
    #[arg(long, value_name = "PREFIX", default_value = "deploy/")]
    pub branch_prefix: String,
}

impl Branches {
    /// The deploy namespace, guarding the branches of the repository we run in.
    pub fn namespace(&self) -> Result<environment::Namespace> {
        Ok(environment::Namespace::new(&self.branch_prefix)?
            .protect_repository(std::path::Path::new(".")))
    }
}

/// One environment and how to reach its VM.
#[derive(Debug, clap::Args)]
pub struct VmTarget {
    /// The environment.
    #[arg(long = "env", value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub dirs: Environments,
    /// Private key file (default: the key text in $TRACKER_GITOPS_SSH_KEY).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Repository the VM clones (default: deploy.repository, else the origin remote).
    #[arg(long, value_name = "URL")]
    pub repository: Option<String>,
    #[command(flatten)]
    pub branches: Branches,
}

/// What a deploy or rollback checks its commit against before it connects.
#[derive(Debug, clap::Args)]
pub struct Checks {
    /// The reviewed branch the commit's source must be on (default: the
    /// default branch of the repository the VM clones).
    #[arg(long, value_name = "BRANCH")]
    pub source_branch: Option<String>,
    /// Directory holding the rendered environments, as in the source.
    #[arg(long, value_name = "DIR", default_value = "build")]
    pub out: PathBuf,
}

/// How a deploy or rollback runs on the VM.
#[derive(Debug, clap::Args)]
pub struct Rollout {
    /// Do not pull images first (they must already be on the VM).
    #[arg(long)]
    pub no_pull: bool,
    /// Seconds the stack gets to become healthy before it is rolled back.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
}

/// How a command reports: for people, or one JSON object on stdout.
#[derive(Debug, clap::Args)]
pub struct OutputFormat {
    /// Output format (json: see "Machine-readable output" in the README).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}
