//! The integration tests: one binary, one module per command, shared helpers in
//! `harness`.

mod harness;
mod publish;
mod render;

mod validate;
