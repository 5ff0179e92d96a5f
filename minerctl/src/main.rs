//! `minerctl`: the command-line client of `minerd`'s gRPC API.

use clap::Parser;

/// Control a running Spacetime miner daemon.
#[derive(Debug, Parser)]
#[command(name = "minerctl", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
