//! The command line: parsing, output streams and exit codes. Each command is a few
//! lines over the library.
//!
//! Exit codes, everywhere: 0 success or up to date; 1 the thing checked is wrong
//! (invalid file, drift, failed deploy); 2 the tool could not do its job.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};

use crate::deploy;
use crate::diagnostic::{self, FileReport, display_path};
use crate::diff::{self, ChangeKind};
use crate::environment::{self, Environment};
use crate::git;
use crate::github::{self, Posted};
use crate::plan;
use crate::publish;
use crate::render::{self, Rendered, Templates};
use crate::text::plural;
use crate::tree::Tree;
use crate::verify;

#[derive(Debug, Parser)]
#[command(name = "tracker-gitops", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check environment files against the schema and the stack rules.
    Validate {
        /// Files to check (default: every *.json in the environments directory).
        files: Vec<PathBuf>,
        #[command(flatten)]
        dirs: Environments,
        #[command(flatten)]
        branches: Branches,
        /// Output format of the diagnostics.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Write a complete environment file with the defaults filled in.
    Init {
        /// Environment name: lowercase letters, digits and dashes.
        name: String,
        #[command(flatten)]
        dirs: Environments,
    },
    /// Print the JSON Schema that environment files are validated against.
    Schema,
    /// Commit each rendered environment to its deploy branch (and push it).
    Publish {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        args: PublishArgs,
    },
    /// Show what merging would deploy: each environment's render at a base
    /// revision against a fresh one, as Markdown.
    Plan {
        #[command(flatten)]
        selection: Selection,
        /// Compare with OUT at this revision (default: the pull request's base,
        /// else origin/main, else main).
        #[arg(long, value_name = "REF")]
        base: Option<String>,
        /// Also show the plan in the pull request's sticky comment.
        #[arg(long)]
        comment: bool,
        /// The login that writes the comment (the token's): another author's
        /// comment carrying the plan marker is never taken over.
        #[arg(
            long,
            value_name = "LOGIN",
            env = "TRACKER_GITOPS_COMMENT_AUTHOR",
            default_value = github::DEFAULT_COMMENT_AUTHOR
        )]
        comment_author: String,
        #[command(flatten)]
        branches: Branches,
    },
    /// Render environments into OUT/<env>/ (or, with --check, compare with it).
    Render {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        branches: Branches,
        /// Write nothing; exit 1 when OUT differs from a fresh render.
        #[arg(long)]
        check: bool,
    },
    /// Deploy an environment's deploy branch to its VM over SSH.
    Deploy {
        #[command(flatten)]
        target: Target,
        /// Deploy this commit of the deploy branch (default: the branch tip).
        #[arg(long, value_name = "SHA")]
        commit: Option<String>,
        #[command(flatten)]
        checks: Checks,
        #[command(flatten)]
        rollout: Rollout,
        /// Deploy even a commit older than the one running (a downgrade).
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Deploy again the commit the VM ran before, with the secrets it ran with.
    Rollback {
        #[command(flatten)]
        target: Target,
        /// Go back to this deployed commit (default: the newest one older than
        /// the running one).
        #[arg(long, value_name = "SHA")]
        to: Option<String>,
        #[command(flatten)]
        checks: Checks,
        #[command(flatten)]
        rollout: Rollout,
    },
    /// Ask the VM whether it runs the deploy branch's tip, unchanged and healthy.
    Status {
        #[command(flatten)]
        target: Target,
    },
}

/// One environment and how to reach its VM.
#[derive(Debug, clap::Args)]
struct Target {
    /// The environment.
    #[arg(long = "env", value_name = "NAME")]
    name: String,
    #[command(flatten)]
    dirs: Environments,
    /// Private key file (default: the key text in $TRACKER_GITOPS_SSH_KEY).
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Repository the VM clones (default: deploy.repository, else the origin remote).
    #[arg(long, value_name = "URL")]
    repository: Option<String>,
    #[command(flatten)]
    branches: Branches,
}

/// What a deploy or rollback checks its commit against before it connects.
#[derive(Debug, clap::Args)]
struct Checks {
    /// The reviewed branch the commit's source must be on (default: the
    /// default branch of the repository the VM clones).
    #[arg(long, value_name = "BRANCH")]
    source_branch: Option<String>,
    /// Directory holding the rendered environments, as in the source.
    #[arg(long, value_name = "DIR", default_value = "build")]
    out: PathBuf,
}

impl Checks {
    /// The commit to deploy (default: the deploy branch's tip), once it is
    /// verified to be publish's work from a reviewed source.
    fn verify(
        &self,
        env: &Environment,
        repository: &str,
        branch: &str,
        commit: Option<&str>,
    ) -> Result<String> {
        // Paths inside the repository, as publish recorded them.
        let repo = git::repository()?;
        let in_repo = |path: &std::path::Path| -> Result<String> {
            Ok(git::slash_path(&git::path_in_repo(&repo, path)?))
        };
        let verified = verify::verify(&verify::Request {
            repository,
            branch,
            source_branch: self.source_branch.as_deref(),
            commit,
            environment: &env.name,
            environment_file: &in_repo(&env.path)?,
            output: &in_repo(&self.out.join(&env.name))?,
        })?;
        println!(
            "verified {}: published from {} on {}",
            verified.commit, verified.source_commit, verified.source_branch
        );
        // The VM checks out exactly the verified commit.
        Ok(verified.commit)
    }
}

/// How a deploy or rollback runs on the VM.
#[derive(Debug, clap::Args)]
struct Rollout {
    /// Do not pull images first (they must already be on the VM).
    #[arg(long)]
    no_pull: bool,
    /// Seconds the stack gets to become healthy before it is rolled back.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
}

#[derive(Debug, clap::Args)]
struct Branches {
    /// Deploy branches are <prefix><env> unless the environment names its own,
    /// which must start with <prefix> too.
    #[arg(long, value_name = "PREFIX", default_value = "deploy/")]
    branch_prefix: String,
}

impl Branches {
    /// The deploy namespace, guarding the branches of the repository we run in.
    fn namespace(&self) -> Result<environment::Namespace> {
        Ok(environment::Namespace::new(&self.branch_prefix)?
            .protect_repository(std::path::Path::new(".")))
    }
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    #[command(flatten)]
    branches: Branches,
    /// Build on this remote's branch tips (fetched first).
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
    /// Push the new commits to --remote, fast-forward only.
    #[arg(long, requires = "remote")]
    push: bool,
    /// The branch of --remote the source commit must be on (default: the
    /// remote's default branch).
    #[arg(long, value_name = "BRANCH", requires = "remote")]
    source_branch: Option<String>,
    /// For local experiments: publish a source that is not on that branch.
    /// Never with --push; deploy refuses such commits anyway.
    #[arg(long, requires = "remote", conflicts_with_all = ["push", "source_branch"])]
    allow_unreviewed: bool,
    /// Author and committer of the deploy commits.
    #[arg(
        long,
        value_name = "NAME <EMAIL>",
        default_value = "tracker-gitops <tracker-gitops@users.noreply.github.com>"
    )]
    author: String,
    /// The source ref recorded in the provenance (default: the checked-out branch).
    #[arg(long, value_name = "REF", env = "GITHUB_REF")]
    source_ref: Option<String>,
}

/// Which environments to work on, and where their files and output are.
#[derive(Debug, clap::Args)]
struct Selection {
    /// Only this environment (repeatable; default: all).
    #[arg(long = "env", value_name = "NAME")]
    names: Vec<String>,
    #[command(flatten)]
    dirs: Environments,
    /// Directory holding the rendered environments.
    #[arg(long, value_name = "DIR", default_value = "build")]
    out: PathBuf,
    /// Directory of templates that replace the built-in ones of the same name.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct Environments {
    /// Directory holding the environment files.
    #[arg(
        long = "environments",
        value_name = "DIR",
        default_value = "environments"
    )]
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

/// What a command concluded, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Err(e) if e.is::<Invalid>() => ExitCode::from(2),
        Err(e) => {
            // Library errors carry their causes in their messages.
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Validate {
            files,
            dirs,
            branches,
            format,
        } => validate(files, &dirs.dir, &branches, format),
        Command::Init { name, dirs } => init(&name, &dirs.dir),
        Command::Render {
            selection,
            branches,
            check,
        } => render(&selection, &branches, check),
        Command::Plan {
            selection,
            base,
            comment,
            comment_author,
            branches,
        } => plan(
            &selection,
            &branches,
            base,
            comment.then_some(&comment_author),
        ),
        Command::Publish { selection, args } => publish(&selection, &args),
        Command::Deploy {
            target,
            commit,
            checks,
            rollout,
            allow_downgrade,
        } => deploy(&target, commit, &checks, &rollout, allow_downgrade),
        Command::Rollback {
            target,
            to,
            checks,
            rollout,
        } => rollback(&target, to, &checks, &rollout),
        Command::Status { target } => status(&target),
        Command::Schema => {
            io::stdout().write_all(environment::schema::SCHEMA.as_bytes())?;
            Ok(Outcome::Success)
        }
    }
}

fn validate(
    files: Vec<PathBuf>,
    dir: &std::path::Path,
    branches: &Branches,
    format: Format,
) -> Result<Outcome> {
    let files = if files.is_empty() {
        environment::discover(dir)?
    } else {
        files
    };
    let reports: Vec<_> = environment::check_files(&files, &branches.namespace()?)?
        .into_iter()
        .map(|c| c.report)
        .collect();
    match format {
        Format::Human => print_reports(&reports)?,
        Format::Json => {
            let all: Vec<_> = reports.iter().flat_map(FileReport::located).collect();
            let mut out = io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
        }
    }
    let invalid = reports.iter().filter(|r| r.has_errors()).count();
    if format == Format::Human {
        eprintln!(
            "{} {} checked: {}",
            reports.len(),
            plural(reports.len(), "file", "files"),
            if invalid == 0 {
                "all valid".to_string()
            } else {
                format!("{invalid} invalid")
            }
        );
    }
    Ok(if invalid == 0 {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

fn init(name: &str, dir: &std::path::Path) -> Result<Outcome> {
    if let Some(problem) = environment::check_name(name) {
        anyhow::bail!("{}", problem.message);
    }
    let path = environment::init(dir, name)?;
    eprintln!("wrote {}", path.display());
    Ok(Outcome::Success)
}

/// Diagnostics for people on stderr, plus workflow commands on stdout under GitHub Actions.
fn print_reports(reports: &[FileReport]) -> Result<()> {
    let terminal = io::stderr().is_terminal();
    let color = if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) || !terminal {
        ColorChoice::Never
    } else {
        ColorChoice::Auto
    };
    let mut err = StandardStream::stderr(color);
    for report in reports {
        report.write_human(&mut err, terminal)?;
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        let mut out = io::stdout().lock();
        for report in reports {
            report.write_github(&mut out)?;
        }
    }
    Ok(())
}

/// Validates and renders the selected environments in memory, printing any
/// diagnostics; `None` when an environment is invalid.
fn render_selected(
    selection: &Selection,
    branches: &Branches,
) -> Result<Option<Vec<(Environment, Rendered)>>> {
    let checked = environment::check_selected(
        &selection.dirs.dir,
        &selection.names,
        &branches.namespace()?,
    )?;
    let Some(environments) = load_valid(checked)? else {
        return Ok(None);
    };
    let templates = Templates::load(selection.templates.as_deref())?;
    let rendered = environments
        .into_iter()
        .map(|env| {
            let rendered = render::render(&env, &templates)?;
            Ok((env, rendered))
        })
        .collect::<Result<Vec<_>, render::Error>>()?;
    Ok(Some(rendered))
}

/// Rendered environments in OUT that no environment file renders to any more
/// (only when all are selected). Only directories (not links to one) holding
/// our stack file count: nothing else in OUT is ever touched.
fn orphaned_outputs(
    selection: &Selection,
    rendered: &[(Environment, Rendered)],
) -> Result<Vec<PathBuf>> {
    if !selection.names.is_empty() || !selection.out.is_dir() {
        return Ok(Vec::new());
    }
    let out = &selection.out;
    let mut orphans = Vec::new();
    let list_error = |e| anyhow::anyhow!("cannot list {}: {e}", display_path(out));
    for entry in std::fs::read_dir(out).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && entry.path().join(render::STACK_FILE).is_file()
            && !rendered.iter().any(|(env, _)| env.name == name)
        {
            orphans.push(entry.path());
        }
    }
    orphans.sort();
    Ok(orphans)
}

/// An environment's output directory and what it holds now.
fn on_disk(selection: &Selection, env: &Environment) -> Result<(PathBuf, Tree)> {
    let dir = selection.out.join(&env.name);
    let tree = Tree::read_dir(&dir)?;
    Ok((dir, tree))
}

fn render(selection: &Selection, branches: &Branches, check: bool) -> Result<Outcome> {
    let Some(rendered) = render_selected(selection, branches)? else {
        eprintln!(
            "nothing {}: fix the errors above first",
            if check { "checked" } else { "written" }
        );
        return Err(Invalid.into());
    };
    let orphans = orphaned_outputs(selection, &rendered)?;
    // Everything is read before anything is written: a directory that cannot
    // be read (a symbolic link in it, say) stops the run with build/ untouched.
    let disk = rendered
        .iter()
        .map(|(env, _)| on_disk(selection, env))
        .collect::<Result<Vec<_>>>()?;
    let mut out = io::stdout().lock();
    let mut drift = false;
    for ((_, result), (dir, on_disk)) in rendered.iter().zip(disk) {
        let changes = diff::compare(&result.tree, &on_disk);
        let label = display_path(&dir);
        if changes.is_empty() {
            writeln!(out, "{label}: up to date")?;
            continue;
        }
        if check {
            drift = true;
            write_drift(&mut out, &dir, &changes)?;
        } else {
            result.tree.replace_dir(&dir)?;
            writeln!(out, "{label}: written ({})", diff::summary(&changes))?;
        }
    }
    for orphan in orphans {
        if check {
            drift = true;
            writeln!(
                out,
                "{}: orphaned (no environment file renders to it)",
                display_path(&orphan)
            )?;
        } else {
            std::fs::remove_dir_all(&orphan)
                .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", display_path(&orphan)))?;
            writeln!(
                out,
                "{}: removed (no environment file renders to it)",
                display_path(&orphan)
            )?;
        }
    }
    if drift {
        writeln!(out, "run `tracker-gitops render` and commit the result")?;
        return Ok(Outcome::Failure);
    }
    Ok(Outcome::Success)
}

/// `build/x: out of date (…)`, the files by kind, then their unified diffs.
fn write_drift(
    out: &mut dyn Write,
    dir: &std::path::Path,
    changes: &[diff::FileChange],
) -> Result<()> {
    writeln!(
        out,
        "{}: out of date ({})",
        display_path(dir),
        diff::summary(changes)
    )?;
    for change in changes {
        let what = match change.kind {
            ChangeKind::Changed => "changed",
            ChangeKind::Added => "missing",
            ChangeKind::Removed => "orphaned",
        };
        writeln!(out, "  {what}: {}", display_path(change.path))?;
    }
    let prefix = format!("{}/", dir.display());
    for change in changes {
        write!(out, "{}", diff::unified_diff(change, &prefix))?;
    }
    Ok(())
}

fn publish(selection: &Selection, args: &PublishArgs) -> Result<Outcome> {
    let Some(rendered) = render_selected(selection, &args.branches)? else {
        eprintln!("nothing published: fix the errors above first");
        return Err(Invalid.into());
    };
    // Publish only what is committed in build/: a stale build/ is refused.
    let mut out = io::stdout().lock();
    let mut stale = false;
    for (env, result) in &rendered {
        let (dir, on_disk) = on_disk(selection, env)?;
        let changes = diff::compare(&result.tree, &on_disk);
        if !changes.is_empty() {
            stale = true;
            write_drift(&mut out, &dir, &changes)?;
        }
    }
    if stale {
        writeln!(
            out,
            "nothing published: run `tracker-gitops render` and commit the result"
        )?;
        return Ok(Outcome::Failure);
    }
    let (author_name, author_email) = parse_author(&args.author)?;
    let source = publish::Source::discover(std::path::Path::new("."))?;
    // Every environment's source must be committed, and reviewed, before any is published.
    let provenances = rendered
        .iter()
        .map(|(env, result)| {
            source.provenance(
                env,
                &selection.out,
                &result.tree,
                args.source_ref.as_deref(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Without a remote nothing leaves this repository: there is no reviewed branch to check.
    let reviewed = match (&args.remote, args.allow_unreviewed) {
        (Some(remote), false) => Some(source.reviewed(remote, args.source_branch.as_deref())?),
        _ => None,
    };
    let options = publish::Options {
        remote: args.remote.clone(),
        push: args.push,
        author_name,
        author_email,
        source_ref: args.source_ref.clone(),
        reviewed,
    };
    let mut published = serde_json::Map::new();
    for ((env, result), provenance) in rendered.iter().zip(&provenances) {
        let branch = env.deploy_branch(&args.branches.branch_prefix);
        match publish::publish(
            source.repository(),
            env,
            &branch,
            result,
            provenance,
            &options,
        )? {
            publish::Published::Unchanged => writeln!(out, "{}: unchanged ({branch})", env.name)?,
            publish::Published::Committed(commit) => {
                writeln!(out, "{}: {commit} ({branch})", env.name)?;
                published.insert(env.name.clone(), commit.to_string().into());
            }
        }
    }
    github_output(
        "published",
        &serde_json::Value::Object(published).to_string(),
    )?;
    Ok(Outcome::Success)
}

/// `Name <email>`.
fn parse_author(author: &str) -> Result<(String, String)> {
    let (name, rest) = author
        .split_once('<')
        .ok_or_else(|| anyhow::anyhow!("--author must look like `Name <email>`"))?;
    let email = rest
        .trim_end()
        .strip_suffix('>')
        .ok_or_else(|| anyhow::anyhow!("--author must look like `Name <email>`"))?;
    Ok((name.trim().to_string(), email.trim().to_string()))
}

/// Appends `name=value` to `$GITHUB_OUTPUT` when running in GitHub Actions.
fn github_output(name: &str, value: &str) -> Result<()> {
    if let Some(path) = std::env::var_os("GITHUB_OUTPUT") {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| {
                anyhow::anyhow!("cannot open GITHUB_OUTPUT {}: {e}", path.to_string_lossy())
            })?;
        writeln!(file, "{name}={value}").map_err(|e| {
            anyhow::anyhow!("cannot write GITHUB_OUTPUT {}: {e}", path.to_string_lossy())
        })?;
    }
    Ok(())
}

/// Prints the plan, adds it to the job summary and the step outputs, and with
/// `comment` (the commenting login) posts it on the pull request. Exit 0
/// whatever the plan says.
fn plan(
    selection: &Selection,
    branches: &Branches,
    base: Option<String>,
    comment: Option<&str>,
) -> Result<Outcome> {
    let Some(rendered) = render_selected(selection, branches)? else {
        eprintln!("nothing planned: fix the errors above first");
        return Err(Invalid.into());
    };
    let event = if base.is_none() || comment.is_some() {
        github::Event::from_env()?
    } else {
        None
    };
    let repo = git::repository()?;
    let base = match base {
        Some(base) => base,
        None => plan::default_base(&repo, event.as_ref().and_then(|e| e.base_sha()))?,
    };
    let out = git::path_in_repo(&repo, &selection.out)?;
    let at_base = plan::tree_at(&repo, &base, &out)?;
    let current = rendered
        .into_iter()
        .map(|(env, rendered)| (env.name, rendered))
        .collect();
    let plan = plan::build(
        base,
        out.to_string_lossy().replace('\\', "/"),
        &at_base,
        current,
        selection.names.is_empty(),
    )?;
    io::stdout().write_all(plan::markdown::render(&plan).as_bytes())?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let summary = plan::markdown::render_within(&plan, github::SUMMARY_LIMIT, "the job log");
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut file| writeln!(file, "{summary}"))
            .map_err(|e| {
                let path = std::path::Path::new(&path);
                anyhow::anyhow!("cannot write {}: {e}", path.display())
            })?;
    }
    github_output("changed", &serde_json::to_string(&plan.changed())?)?;
    if let Some(author) = comment {
        let target = github::CommentTarget::from_env(event.as_ref(), author)?;
        match github::post_plan(&target, &plan) {
            Ok(posted) => {
                let number = target.number;
                match posted {
                    Posted::Created(id) => eprintln!("plan posted on #{number} (comment {id})"),
                    Posted::Updated(id) => eprintln!("plan updated on #{number} (comment {id})"),
                    Posted::Unchanged(id) => {
                        eprintln!("plan comment on #{number} is up to date (comment {id})")
                    }
                    Posted::Skipped => eprintln!("no changes and no plan comment on #{number}"),
                }
            }
            // A pull request from a fork gets a read-only token: the job summary has the plan.
            Err(e @ github::Error::Forbidden { .. }) => {
                let message = format!(
                    "cannot comment on pull request #{}: {e}; the plan is in the job summary",
                    target.number
                );
                if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
                    println!("::warning::{}", diagnostic::escape_data(&message));
                } else {
                    eprintln!("warning: {message}");
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Outcome::Success)
}

/// Loads and validates the target's environment, against all the others too;
/// invalid → [`Invalid`].
fn load_target(target: &Target) -> Result<Environment> {
    let checked = environment::check_selected(
        &target.dirs.dir,
        std::slice::from_ref(&target.name),
        &target.branches.namespace()?,
    )?;
    match load_valid(checked)? {
        Some(mut environments) if environments.len() == 1 => Ok(environments.remove(0)),
        _ => Err(Invalid.into()),
    }
}

fn connect(target: &Target, env: &Environment) -> Result<deploy::Connection> {
    let identity = match &target.identity {
        Some(file) => deploy::Identity::File(file.clone()),
        None => std::env::var(deploy::KEY_VARIABLE)
            .ok()
            .filter(|key| !key.trim().is_empty())
            .map(deploy::Identity::Text)
            .ok_or(deploy::Error::NoKey)?,
    };
    Ok(deploy::Connection::new(&env.file.deploy, identity)?)
}

fn deploy(
    target: &Target,
    commit: Option<String>,
    checks: &Checks,
    rollout: &Rollout,
    allow_downgrade: bool,
) -> Result<Outcome> {
    let env = load_target(target)?;
    // Before connecting: a deploy without its secrets would only fail on the VM.
    let secrets = deploy::Secrets::collect(&env, |name| std::env::var(name).ok())?;
    let (repository, branch) = deploy_source(target, &env)?;
    let commit = checks.verify(&env, &repository, &branch, commit.as_deref())?;
    let connection = connect(target, &env)?;
    let run = Run {
        env: &env,
        repository: &repository,
        branch: &branch,
        commit: &commit,
        rollout,
        allow_downgrade,
    };
    run.on(&connection, deploy::SecretSource::Sent(&secrets))
}

/// A rollback is a deploy of an older commit with the secrets the VM kept for
/// it: the CI job's secrets may be named differently by now.
fn rollback(
    target: &Target,
    to: Option<String>,
    checks: &Checks,
    rollout: &Rollout,
) -> Result<Outcome> {
    let env = load_target(target)?;
    let (repository, branch) = deploy_source(target, &env)?;
    // The same checks as a deploy's, before the VM is touched: with --to
    // before anything connects, else once the VM said which commit it ran
    // before (a question that changes nothing).
    let verify = |commit: &str| checks.verify(&env, &repository, &branch, Some(commit));
    let (commit, connection) = match to {
        Some(commit) => (verify(&commit)?, connect(target, &env)?),
        None => {
            let connection = connect(target, &env)?;
            let previous =
                deploy::previous(&connection, &env.file.deploy.path)?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "nothing to roll back to: the VM keeps no older deployed commit \
                         with its secrets"
                    )
                })?;
            (verify(&previous)?, connection)
        }
    };
    eprintln!("rolling back {} to {commit}", env.name);
    let run = Run {
        env: &env,
        repository: &repository,
        branch: &branch,
        commit: &commit,
        rollout,
        allow_downgrade: true,
    };
    run.on(&connection, deploy::SecretSource::Stored)
}

/// The repository the VM clones, and the environment's deploy branch.
fn deploy_source(target: &Target, env: &Environment) -> Result<(String, String)> {
    let repository = deploy::repository_url(
        target.repository.as_deref(),
        &env.file.deploy,
        std::path::Path::new("."),
    )?;
    Ok((
        repository,
        env.deploy_branch(&target.branches.branch_prefix),
    ))
}

/// One deploy request, as deploy and rollback make it.
struct Run<'a> {
    env: &'a Environment,
    repository: &'a str,
    branch: &'a str,
    commit: &'a str,
    rollout: &'a Rollout,
    allow_downgrade: bool,
}

impl Run<'_> {
    /// Runs it on the VM and reports the result.
    fn on(
        &self,
        connection: &deploy::Connection,
        secrets: deploy::SecretSource,
    ) -> Result<Outcome> {
        let health_url = crate::stack::tracker_health_url(self.env);
        let caller = deploy::Caller::from_env(|name| std::env::var(name).ok());
        let request = deploy::Request {
            root: &self.env.file.deploy.path,
            repository: self.repository,
            branch: self.branch,
            commit: self.commit,
            pull: !self.rollout.no_pull,
            timeout: std::time::Duration::from_secs(self.rollout.timeout),
            health_url: &health_url,
            allow_downgrade: self.allow_downgrade,
            keep: &crate::stack::DATA_DIRS,
            caller: &caller,
            lock_wait: deploy::LOCK_WAIT,
        };
        let report = deploy::deploy(connection, secrets, &request, &mut io::stdout())?;
        let sha = &report.sha;
        let name = &self.env.name;
        match report.outcome {
            deploy::Outcome::Deployed => println!("deployed {sha} to {name}"),
            deploy::Outcome::Noop => println!("already at {sha} and healthy"),
            deploy::Outcome::RolledBack => eprintln!("deploy failed, rolled back to {sha}"),
            deploy::Outcome::Failed => eprintln!("deploy of {sha} failed"),
            deploy::Outcome::RollbackFailed => eprintln!(
                "ROLLBACK FAILED: deploy of {} failed and so did the rollback to {sha}; \
                 {name} needs attention NOW",
                self.commit
            ),
            // Nothing was tried: the tool could not do its job (exit 2).
            deploy::Outcome::LockBusy => anyhow::bail!("deploy in progress: nothing done"),
            deploy::Outcome::Refused => {
                anyhow::bail!("the VM refused the deploy (see above): nothing done")
            }
        }
        let compose = report.compose();
        println!(
            "total {:.2}s: {:.2}s in docker compose (pull+up+health), {:.2}s ours",
            report.total.as_secs_f64(),
            compose.as_secs_f64(),
            report.total.saturating_sub(compose).as_secs_f64()
        );
        Ok(if report.outcome.success() {
            Outcome::Success
        } else {
            Outcome::Failure
        })
    }
}

fn status(target: &Target) -> Result<Outcome> {
    let env = load_target(target)?;
    let connection = connect(target, &env)?;
    let branch = env.deploy_branch(&target.branches.branch_prefix);
    let root = &env.file.deploy.path;
    match deploy::status(&connection, root, &branch, &crate::stack::DATA_DIRS)? {
        Some(deploy::Verdict::InSync) => Ok(Outcome::Success),
        Some(deploy::Verdict::OutOfSync) => Ok(Outcome::Failure),
        None => anyhow::bail!("status failed on the VM (see above)"),
    }
}

/// Invalid environment files stop a command that needs valid ones; the
/// diagnostics are already printed.
#[derive(Debug, thiserror::Error)]
#[error("invalid environment files")]
pub struct Invalid;

/// Prints the diagnostics of checked files; `None` when any is invalid.
fn load_valid(checked: Vec<environment::Checked>) -> Result<Option<Vec<Environment>>> {
    let (reports, environments): (Vec<_>, Vec<_>) = checked
        .into_iter()
        .map(|c| (c.report, c.environment))
        .unzip();
    let printable: Vec<_> = reports
        .into_iter()
        .filter(|r| !r.diagnostics.is_empty())
        .collect();
    print_reports(&printable)?;
    Ok(environments.into_iter().collect())
}
