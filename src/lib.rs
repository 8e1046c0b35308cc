//! tracker-gitops: environment files in git, rendered to a docker compose stack,
//! published to deploy branches and deployed to a VM over SSH.
//!
//! The public modules are what the binary, the integration tests and the
//! benches use; the others are `pub(crate)`.
//!
//! The pipeline, one module per stage: [`environment`] (read, validate) →
//! [`stack`] (what runs) → [`render`] (files, as a [`tree::Tree`]) → [`diff`]
//! (a tree vs disk or git) → `output` (the `build/` directory) → `plan`
//! (the model from a base revision; its Markdown) → [`publish`] →
//! `github` → `verify` → [`deploy`] (and the VM's data: backup, restore).
//! `git` is the repository access they share, `project` finds the project
//! root, `diagnostic` reports problems in environment files and `actions` is
//! the GitHub Actions I/O (step outputs, job summary, workflow commands).
//! Two ways in beside the pipeline: [`import`] turns an environment of the
//! upstream deployer into an environment file, `workflows` writes the GitHub
//! workflows a repository needs. [`cli`] is no stage: it parses the command
//! line, calls the stages and maps their results to exit codes.

pub(crate) mod actions;
pub mod cli;
pub mod deploy;
pub(crate) mod diagnostic;
pub mod diff;
pub mod environment;
pub(crate) mod git;
pub(crate) mod github;
pub mod import;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod project;
pub mod publish;
pub mod render;
pub mod stack;
pub(crate) mod text;
pub mod tree;
pub(crate) mod verify;
pub(crate) mod workflows;
