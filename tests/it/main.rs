//! The integration tests: one binary, one module per command, shared helpers in
//! `harness`.

mod action;
mod dashboards;
mod data;
mod deploy;
mod github;
mod harness;
mod https;
mod import;
mod json;
mod plan;
mod publish;
mod remote;
mod render;
mod ssh;
mod start;
mod verify;

mod validate;
