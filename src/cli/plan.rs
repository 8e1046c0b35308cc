//! `plan`: what merging would deploy, as Markdown (or, with `--format json`,
//! the plan as data) on stdout, as Markdown in the job summary and, with
//! `--comment`, in the pull request's sticky comment.

use std::io::{self, Write};

use anyhow::Result;

use super::args::{Branches, Format, Output, Paths, Selection, Typed};
use super::{Conclusion, Invalid, json, load};
use crate::actions;
use crate::git;
use crate::github::{self, Posted};
use crate::plan::{self, Current, Plan};

#[derive(Debug, clap::Args)]
pub struct Args {
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
    #[command(flatten)]
    pub output: Output,
    /// Exit 0 when nothing changes, 2 when something does, 1 when the plan
    /// cannot be made (as terraform plan -detailed-exitcode).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

impl Paths for Args {
    fn anchor(&mut self, typed: &Typed) {
        self.selection.anchor(typed);
    }
}

/// The plan file handed to later steps of a job (step output `plan-file`).
const PLAN_FILE: &str = "tracker-gitops-plan.md";

/// A plan, its Markdown and the event it was made for.
struct Planned {
    plan: Plan,
    markdown: String,
    event: Option<github::Event>,
}

/// Plans, sets the step outputs `changed` (`[]` without a plan) and
/// `plan-file` (an empty file without a plan), then, when asked, posts the
/// plan. Exit 0 whatever the plan says, unless `--detailed-exitcode`.
pub fn run(args: &Args) -> Result<Conclusion> {
    let planned = make_plan(args);
    let (changed, markdown) = match &planned {
        Ok(planned) => (planned.plan.changed.as_slice(), planned.markdown.as_str()),
        Err(_) => (&[][..], ""),
    };
    let written = actions::set_output("changed", &serde_json::Value::from(changed).to_string())
        .and_then(|()| actions::output_file("plan-file", PLAN_FILE, markdown.as_bytes()));
    let planned = planned?;
    written?;
    if args.comment {
        let target = github::CommentTarget::from_env(planned.event.as_ref(), &args.comment_author)?;
        post(&target, &planned.plan)?;
    }
    Ok(if args.detailed_exitcode && planned.plan.has_changes() {
        Conclusion::Changes
    } else {
        Conclusion::Success
    })
}

/// The plan, printed on stdout (Markdown or JSON) and added to the job summary.
fn make_plan(args: &Args) -> Result<Planned> {
    let selection = &args.selection;
    let Some(rendered) = load::rendered(selection, &args.branches)? else {
        eprintln!("nothing planned: fix the errors above first");
        return Err(Invalid.into());
    };
    let event = if args.base.is_none() || args.comment {
        github::Event::from_env()?
    } else {
        None
    };
    let repo = git::repository()?;
    let base = match &args.base {
        Some(base) => base.clone(),
        None => plan::default_base(&repo, event.as_ref().and_then(|e| e.base_sha()))?,
    };
    let out = git::path_in_repo(&repo, &selection.out)?;
    let at_base = plan::tree_at(&repo, &base, &out)?;
    let current = rendered
        .into_iter()
        .map(|(env, rendered)| Current {
            description: env.file.description.clone(),
            name: env.name,
            rendered,
        })
        .collect();
    let plan = plan::build(
        base,
        git::slash_path(&out),
        &at_base,
        current,
        selection.names.is_empty(),
    )?;
    let markdown = plan::markdown::render(&plan);
    match args.output.format {
        Format::Human => io::stdout().write_all(markdown.as_bytes())?,
        Format::Json => json::print(&plan)?,
    }
    actions::append_summary(&plan::markdown::render_within(
        &plan,
        actions::SUMMARY_LIMIT,
        "the job log",
    ))?;
    Ok(Planned {
        plan,
        markdown,
        event,
    })
}

/// Posts the plan on the pull request, saying what became of the comment.
fn post(target: &github::CommentTarget, plan: &Plan) -> Result<()> {
    let number = target.number;
    match github::post_plan(target, plan) {
        Ok(Posted::Created(id)) => eprintln!("plan posted on #{number} (comment {id})"),
        Ok(Posted::Updated(id)) => eprintln!("plan updated on #{number} (comment {id})"),
        Ok(Posted::Unchanged(id)) => {
            eprintln!("plan comment on #{number} is up to date (comment {id})")
        }
        Ok(Posted::Skipped) => eprintln!("no changes and no plan comment on #{number}"),
        // A pull request from a fork gets a read-only token: the job summary has the plan.
        Err(e @ github::Error::Forbidden { .. }) => actions::warning(&format!(
            "cannot comment on pull request #{number}: {e}; the plan is in the job summary"
        )),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
