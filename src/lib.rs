//! tracker-gitops: environment files in git, rendered to a docker compose stack,
//! published to deploy branches and deployed to a VM over SSH.
//!
//! The pipeline, one module per stage: [`environment`] (read, validate) →
//! [`stack`] (what runs) → [`render`] (files, as a [`tree::Tree`]) → [`diff`]
//! (a tree vs disk or git) → [`output`] (the `build/` directory) → [`plan`]
//! (the model from a base revision; its [`plan::markdown`]) → [`publish`] →
//! [`github`] → [`verify`] → [`deploy`]; [`git`] is the repository access
//! they share, [`diagnostic`] reports problems in environment files and
//! [`actions`] is the GitHub Actions I/O (step outputs, job summary, workflow
//! commands). [`cli`] is no stage: it parses the command line, calls the
//! stages and maps their results to exit codes.

pub mod actions;
pub mod cli;
pub mod deploy;
pub mod diagnostic;
pub mod diff;
pub mod environment;
pub mod git;
pub mod github;
pub mod output;
pub mod plan;
pub mod publish;
pub mod render;
pub mod stack;
pub(crate) mod text;
pub mod tree;
pub mod verify;
