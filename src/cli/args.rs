//! Argument groups several commands share. They only parse: each command's
//! `run` decides what they mean.

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;
use clap::parser::{ArgMatches, ValueSource};

use crate::environment;
use crate::project::Root;

/// Re-anchors the paths the user typed (relative to where the command was
/// started) at the project root, where commands run; defaults already are.
pub struct Typed<'a> {
    pub root: &'a Root,
    /// The subcommand's matches, which tell typed values from defaults.
    pub matches: &'a ArgMatches,
}

impl Typed<'_> {
    /// `path`, the value of the argument `id`, when the user typed it.
    pub fn path(&self, id: &str, path: &mut PathBuf) {
        if matches!(
            self.matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            *path = self.root.typed(path);
        }
    }
}

/// Argument groups and commands holding paths: they re-anchor them.
pub trait Paths {
    fn anchor(&mut self, typed: &Typed);
}

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

impl Paths for Selection {
    fn anchor(&mut self, typed: &Typed) {
        self.dirs.anchor(typed);
        typed.path("out", &mut self.out);
        if let Some(templates) = &mut self.templates {
            typed.path("templates", templates);
        }
    }
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

impl Paths for Environments {
    fn anchor(&mut self, typed: &Typed) {
        typed.path("dir", &mut self.dir);
    }
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

impl Paths for VmTarget {
    fn anchor(&mut self, typed: &Typed) {
        self.dirs.anchor(typed);
        if let Some(identity) = &mut self.identity {
            typed.path("identity", identity);
        }
    }
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

impl Paths for Checks {
    fn anchor(&mut self, typed: &Typed) {
        typed.path("out", &mut self.out);
    }
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
pub struct Output {
    /// Output format (json: see "Machine-readable output" in the README).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// The VM of a data op (backup, restore) and how its result is printed.
#[derive(Debug, clap::Args)]
pub struct DataTarget {
    #[command(flatten)]
    pub target: VmTarget,
    #[command(flatten)]
    pub output: Output,
}

impl Paths for DataTarget {
    fn anchor(&mut self, typed: &Typed) {
        self.target.anchor(typed);
    }
}
