//! `tandem completions SHELL` and `tandem man`: shell completions and man pages generated from the command-line
//! definition itself (clap_complete, clap_mangen), so that they list exactly the options this tandem has.

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
#[command(
    about = "Print a shell completion script for tandem",
    long_about = "Print a shell completion script for tandem on stdout.\n\n\
        Examples:\n  \
        tandem completions bash > ~/.local/share/bash-completion/completions/tandem\n  \
        tandem completions zsh > ~/.zfunc/_tandem\n  \
        tandem completions fish > ~/.config/fish/completions/tandem.fish"
)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

#[derive(Args)]
#[command(
    about = "Write tandem's man pages",
    long_about = "Print the man page of tandem (roff) on stdout, or with --dir write one page per command \
        (tandem.1, tandem-run.1, tandem-scenario-run.1, ...) into a directory.\n\n\
        Examples:\n  \
        tandem man | man -l -\n  \
        tandem man --dir ~/.local/share/man/man1"
)]
pub struct ManArgs {
    /// Write every page into this directory (created if missing) instead of printing tandem.1.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> Result<()> {
    let mut command = crate::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "tandem", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}

pub fn man(args: ManArgs) -> Result<()> {
    let command = crate::Cli::command();
    let Some(dir) = args.dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(command).render(&mut out)?;
        std::io::stdout().lock().write_all(&out)?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(command, &dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    Ok(())
}
