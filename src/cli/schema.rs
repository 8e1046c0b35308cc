//! `schema`: print the JSON Schema environment files are validated against.

use std::io::{self, Write};

use anyhow::Result;

use super::Conclusion;
use crate::environment;

pub fn run() -> Result<Conclusion> {
    io::stdout().write_all(environment::schema::SCHEMA.as_bytes())?;
    Ok(Conclusion::Success)
}
