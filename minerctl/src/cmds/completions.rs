//! `completions`: shell completion scripts generated from the command definition itself.

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use crate::CmdResult;

/// Shells with completion scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// bash: `minerctl completions bash > /etc/bash_completion.d/minerctl`
    Bash,
    /// zsh: `minerctl completions zsh > "${fpath[1]}/_minerctl"`
    Zsh,
    /// fish: `minerctl completions fish > ~/.config/fish/completions/minerctl.fish`
    Fish,
}

/// Options of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Prints the script.
pub fn print(a: &CompletionsArgs) -> CmdResult {
    let shell = match a.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut crate::Cli::command(), "minerctl", &mut buf);
    crate::out!("{}", String::from_utf8_lossy(&buf));
    Ok(())
}
