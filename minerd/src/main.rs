//! `minerd` entry point: parse the command line, run, print the error chain once.

use clap::Parser;

/// The Spacetime miner daemon.
#[derive(Debug, Parser)]
#[command(name = "minerd", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
