//! `minerctl`: the command-line client of `minerd`'s gRPC API.
//!
//! Results go to stdout (a table, or JSON with `--json`), diagnostics to stderr. Exit codes:
//! 0 ok, 64 usage error or a request the daemon rejected as invalid, 69 daemon unreachable,
//! 1 anything else.

mod cmds;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spacetime_proto::client::{self, ConnectError, MinerClient, Target};

/// Exit code for usage errors (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// Exit code when the daemon cannot be reached (sysexits EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// Control a running Spacetime miner daemon (minerd).
///
/// minerctl talks to minerd over its Unix socket (default ~/.spacetime/minerd.sock) or, with
/// --tcp, over TCP with the bearer token from the daemon's token file.
#[derive(Debug, Parser)]
#[command(name = "minerctl", version, about, long_about)]
struct Cli {
    /// The daemon's control socket [default: ~/.spacetime/minerd.sock]
    #[arg(
        long,
        global = true,
        env = "SPACETIME_MINER_SOCKET",
        value_name = "PATH"
    )]
    socket: Option<PathBuf>,
    /// Connect over TCP instead, to HOST:PORT (the daemon's listenTcp)
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        conflicts_with = "socket"
    )]
    tcp: Option<String>,
    /// Bearer token file for --tcp [default: ~/.spacetime/minerd.token]
    #[arg(long, global = true, value_name = "PATH", requires = "tcp")]
    token_file: Option<PathBuf>,
    /// Print diagnostics (connection target, timings) to stderr
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

/// Commands, grouped by noun in `cmds/`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Show what the daemon is doing: mining, node link, epoch, counters, plots.
    Status(cmds::status::StatusArgs),
    /// Enable mining.
    Start,
    /// Disable mining (plots, jobs and the node link are unaffected).
    Stop,
    /// Create a plot in the daemon's plot directory and follow its progress.
    CreatePlot(cmds::plots::CreateArgs),
    /// List every plot: valid, corrupted, missing, duplicate and being created.
    ListPlots(cmds::plots::ListArgs),
    /// Show one plot.
    ShowPlot(cmds::plots::ShowArgs),
    /// Unregister a plot, optionally deleting its file and cache.
    DeletePlot(cmds::plots::DeleteArgs),
    /// Verify a plot against the miner key (sampled by default, or --full).
    CheckPlot(cmds::plots::CheckArgs),
    /// List queued and running plot jobs.
    Jobs(cmds::plots::JobsArgs),
    /// Cancel a plot job (its partial file is removed).
    CancelJob(cmds::plots::CancelArgs),
    /// Follow the daemon's events until interrupted.
    Events(cmds::events::EventsArgs),
    /// Ask the daemon to shut down gracefully.
    Shutdown,
}

/// A failure with its exit code; the message is printed once by `main`.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

impl Failure {
    /// A failure from a gRPC status.
    pub fn from_status(s: &tonic::Status) -> Self {
        use tonic::Code;
        let code = match s.code() {
            Code::InvalidArgument => EXIT_USAGE,
            Code::Unavailable => EXIT_UNAVAILABLE,
            _ => 1,
        };
        let what = match s.code() {
            Code::NotFound => "not found",
            Code::AlreadyExists => "already exists",
            Code::InvalidArgument => "invalid request",
            Code::FailedPrecondition => "not possible now",
            Code::Unavailable => "unavailable",
            Code::Cancelled => "cancelled",
            Code::Unauthenticated => "not authorized",
            _ => "daemon error",
        };
        Failure {
            code,
            message: format!("{what}: {}", s.message()),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// Any other error.
    pub fn other(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::from_status(&s)
    }
}

/// Result of a command.
pub type CmdResult = Result<(), Failure>;

fn home_file(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".spacetime").join(name))
}

impl Cli {
    fn target(&self) -> Result<Target, Failure> {
        if let Some(address) = &self.tcp {
            let token_file = self
                .token_file
                .clone()
                .or_else(|| home_file("minerd.token"))
                .ok_or_else(|| Failure::usage("HOME is not set: pass --token-file"))?;
            let token = client::read_token_file(&token_file)
                .map_err(|e| Failure::usage(error_chain(&e)))?;
            return Ok(Target::Tcp {
                address: address.clone(),
                token: Some(token),
            });
        }
        let socket = self
            .socket
            .clone()
            .or_else(|| home_file("minerd.sock"))
            .ok_or_else(|| Failure::usage("HOME is not set: pass --socket"))?;
        Ok(Target::Unix(socket))
    }
}

use spacetime::error_chain;

/// Connects, turning "nobody there" into exit 69 with a hint on how to start the daemon.
async fn connect(target: &Target, verbose: bool) -> Result<MinerClient, Failure> {
    if verbose {
        eprintln!("minerctl: connecting to {target}");
    }
    client::connect(target).await.map_err(|e| match &e {
        ConnectError::Unreachable { .. } => Failure {
            code: EXIT_UNAVAILABLE,
            message: format!(
                "{}\nIs minerd running? Start it with `minerd` (or `systemctl start minerd`), \
                 or point minerctl at it with --socket PATH or --tcp HOST:PORT.",
                error_chain(&e)
            ),
        },
        ConnectError::InvalidAddress { .. }
        | ConnectError::InvalidToken
        | ConnectError::TokenFile { .. } => Failure::usage(error_chain(&e)),
    })
}

async fn run(cli: Cli) -> CmdResult {
    let target = cli.target()?;
    let mut c = connect(&target, cli.verbose).await?;
    match cli.command {
        Command::Status(a) => cmds::status::status(&mut c, &a).await,
        Command::Start => cmds::mining::start(&mut c).await,
        Command::Stop => cmds::mining::stop(&mut c).await,
        Command::CreatePlot(a) => cmds::plots::create(&mut c, &a).await,
        Command::ListPlots(a) => cmds::plots::list(&mut c, &a).await,
        Command::ShowPlot(a) => cmds::plots::show(&mut c, &a).await,
        Command::DeletePlot(a) => cmds::plots::delete(&mut c, &a).await,
        Command::CheckPlot(a) => cmds::plots::check(&mut c, &a).await,
        Command::Jobs(a) => cmds::plots::jobs(&mut c, &a).await,
        Command::CancelJob(a) => cmds::plots::cancel(&mut c, &a).await,
        Command::Events(a) => cmds::events::follow(&mut c, &a).await,
        Command::Shutdown => cmds::daemon::shutdown(&mut c).await,
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("minerctl: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("minerctl: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
