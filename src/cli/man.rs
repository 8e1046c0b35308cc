//! `man`: the manual page (roff), generated from the clap definitions, e.g.
//! `tracker-gitops man > /usr/local/share/man/man1/tracker-gitops.1`.

use anyhow::Result;

use super::Conclusion;

pub fn run(command: clap::Command) -> Result<Conclusion> {
    clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
    Ok(Conclusion::Success)
}
