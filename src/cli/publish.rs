//! `publish`: commit each rendered environment to its deploy branch, with its
//! provenance, and with `--push` push it. Only what is committed in build/ is
//! published.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use super::args::{Branches, Format, Output, Paths, Selection, Typed};
use super::{Conclusion, Invalid, json, load};
use crate::actions;
use crate::diff;
use crate::output;
use crate::publish;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    selection: Selection,
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
    #[command(flatten)]
    pub output: Output,
}

/// The JSON object: what happened to each environment's deploy branch, or
/// (exit 1) the environments whose directory in OUT is not their render.
#[derive(Serialize, Default)]
struct Report<'a> {
    environments: Vec<Environment>,
    out_of_date: Vec<output::Drift<'a>>,
}

#[derive(Serialize)]
struct Environment {
    environment: String,
    branch: String,
    /// `committed` or `unchanged`.
    result: &'static str,
    /// The new commit; `null` when unchanged.
    commit: Option<String>,
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        self.selection.anchor(typed);
    }
}

/// Environment name → the new commit of its deploy branch.
type Published = serde_json::Map<String, serde_json::Value>;

/// Publishes, then sets the step outputs `published` and
/// `published-environments`, empty when nothing was published.
pub fn run(args: &Args) -> Result<Conclusion> {
    let mut published = Published::new();
    let result = publish_all(args, &mut published);
    let keys: Vec<_> = published.keys().cloned().collect();
    let written = actions::set_output(
        "published",
        &serde_json::Value::Object(published).to_string(),
    )
    .and_then(|()| {
        actions::set_output(
            "published-environments",
            &serde_json::Value::from(keys).to_string(),
        )
    });
    let conclusion = result?;
    written?;
    Ok(conclusion)
}

fn publish_all(args: &Args, published: &mut Published) -> Result<Conclusion> {
    let selection = &args.selection;
    let format = args.output.format;
    let Some(rendered) = load::rendered(selection, &args.branches)? else {
        eprintln!("nothing published: fix the errors above first");
        return Err(Invalid.into());
    };
    let mut report = Report::default();
    // Publish only what is committed in build/: a stale build/ is refused.
    let output = output::Output::new(&selection.out);
    let on_disk = rendered
        .iter()
        .map(|(env, _)| output.read(&env.name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut stale = false;
    for ((env, result), (dir, tree)) in rendered.iter().zip(&on_disk) {
        let changes = diff::compare(&result.tree, tree);
        if changes.is_empty() {
            continue;
        }
        stale = true;
        match format {
            Format::Human => output::write_drift(&mut std::io::stdout().lock(), dir, &changes)?,
            Format::Json => report
                .out_of_date
                .push(output::Drift::new(&env.name, dir, &changes)),
        }
    }
    if stale {
        match format {
            Format::Human => {
                println!("nothing published: run `tracker-gitops render` and commit the result")
            }
            Format::Json => json::print(&report)?,
        }
        return Ok(Conclusion::Failure);
    }
    let author = parse_author(&args.author)?;
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
    let options = options(args, &source, author)?;
    let mut progress = json::progress(format);
    for ((env, result), provenance) in rendered.iter().zip(&provenances) {
        let branch = env.deploy_branch(&args.branches.branch_prefix);
        let commit = match publish::publish(
            source.repository(),
            env,
            &branch,
            result,
            provenance,
            &options,
        )? {
            publish::Published::Unchanged => {
                writeln!(progress, "{}: unchanged ({branch})", env.name)?;
                None
            }
            publish::Published::Committed(commit) => {
                writeln!(progress, "{}: {commit} ({branch})", env.name)?;
                published.insert(env.name.clone(), commit.to_string().into());
                Some(commit.to_string())
            }
        };
        report.environments.push(Environment {
            environment: env.name.clone(),
            result: if commit.is_some() {
                "committed"
            } else {
                "unchanged"
            },
            commit,
            branch,
        });
    }
    if format == Format::Json {
        json::print(&report)?;
    }
    Ok(Conclusion::Success)
}

/// How to publish, from the arguments and the parsed `--author`.
fn options(
    args: &Args,
    source: &publish::Source,
    (author_name, author_email): (String, String),
) -> Result<publish::Options> {
    // Without a remote nothing leaves this repository: there is no reviewed branch to check.
    let reviewed = match (&args.remote, args.allow_unreviewed) {
        (Some(remote), false) => Some(source.reviewed(remote, args.source_branch.as_deref())?),
        _ => None,
    };
    Ok(publish::Options {
        remote: args.remote.clone(),
        push: args.push,
        author_name,
        author_email,
        source_ref: args.source_ref.clone(),
        reviewed,
    })
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
