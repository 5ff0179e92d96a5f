//! `minerctl`: the command-line client of `minerd`'s gRPC API.
//!
//! Results go to stdout (a table, or JSON with `--json`), diagnostics to stderr. Exit codes:
//! 0 ok, 64 usage error or a request the daemon rejected as invalid, 69 daemon unreachable,
//! 1 anything else.

/// `println!` that ends quietly (exit 0) when stdout is closed: see [`output::write_stdout`].
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write_stdout(format_args!("\n")) };
    ($($t:tt)*) => { $crate::output::write_stdout(format_args!("{}\n", format_args!($($t)*))) };
}

/// `print!` that ends quietly (exit 0) when stdout is closed.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::output::write_stdout(format_args!($($t)*)) };
}

mod cmds;
mod conn;
mod output;
mod prompt;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for usage errors (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// Exit code when the daemon cannot be reached (sysexits EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// Control the Spacetime miner daemon (minerd): plots, mining, status.
///
/// minerctl talks to minerd over its Unix socket (default ~/.spacetime/minerd.sock) or, with
/// --tcp, over TCP with the bearer token from the daemon's token file. With -c/--config it
/// reads the daemon's miner.yaml to find them. `minerctl start --daemon` starts minerd in the
/// background when none is running.
#[derive(Debug, Parser)]
#[command(name = "minerctl", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    conn: conn::ConnArgs,
    /// Print diagnostics (connection target, configuration file) to stderr
    #[arg(long, global = true, help_heading = "Global options")]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

/// Commands, grouped by noun in `cmds/`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create a plot and follow its progress (1 GB unless --size or --leaves says otherwise).
    CreatePlot(cmds::plots::CreateArgs),
    /// List every plot: valid, corrupted, missing, duplicate and being created.
    ListPlots(cmds::plots::ListArgs),
    /// Show one plot.
    ShowPlot(cmds::plots::ShowArgs),
    /// Unregister a plot (after a confirmation), optionally deleting its file and cache.
    DeletePlot(cmds::plots::DeleteArgs),
    /// Verify a plot file against the miner key (sampled by default, or --full).
    CheckPlot(cmds::plots::CheckArgs),
    /// List queued and running plot jobs.
    Jobs(cmds::plots::JobsArgs),
    /// Cancel a plot job (its partial file is removed).
    CancelJob(cmds::plots::CancelArgs),
    /// Enable mining; with --daemon, start minerd in the background first if none runs.
    Start(cmds::daemon::StartArgs),
    /// Disable mining (the daemon keeps running); with --shutdown, end the daemon.
    Stop(cmds::daemon::StopArgs),
    /// Show what the daemon is doing: mining, node link, epoch, counters, farm, plots.
    Status(cmds::status::StatusArgs),
    /// Follow the daemon's events until interrupted.
    Events(cmds::events::EventsArgs),
    /// Ask the daemon to shut down gracefully (same as `stop --shutdown`).
    Shutdown(cmds::daemon::ShutdownArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(cmds::completions::CompletionsArgs),
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
        // A plaintext client talking to a TLS listener sees the TLS bytes as a broken HTTP/2
        // connection: say what is likely.
        let broken = ["h2 protocol error", "transport error"];
        let hint = if broken.iter().any(|b| s.message().contains(b)) {
            "\n(is the daemon's TCP listener TLS-only, tlsCertFile? then pass --tls-ca with its certificate)"
        } else {
            ""
        };
        Failure {
            code,
            message: format!("{what}: {}{hint}", s.message()),
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

/// The error and its causes on one line.
pub use spacetime::error_chain;

async fn run(cli: Cli) -> CmdResult {
    use Command as C;
    let debug = cli.debug;
    // Commands that need no running daemon (or start one).
    match &cli.command {
        C::Completions(a) => return cmds::completions::print(a),
        C::Start(a) => return cmds::daemon::start(&cli.conn, a, debug).await,
        // Usage errors before connecting: they do not depend on the daemon.
        C::CreatePlot(a) => {
            a.request()?;
        }
        _ => {}
    }
    let resolved = cli.conn.resolve()?;
    if debug {
        let (file, exists) = &resolved.config_file;
        eprintln!(
            "minerctl: configuration {} ({})",
            file.display(),
            if *exists { "read" } else { "absent: defaults" }
        );
    }
    let mut c = conn::connect(&resolved.target, debug).await?;
    match cli.command {
        C::Status(a) => cmds::status::status(&mut c, &a).await,
        C::Stop(a) => cmds::daemon::stop(&mut c, &resolved.target, &a).await,
        C::CreatePlot(a) => cmds::plots::create(&mut c, &a).await,
        C::ListPlots(a) => cmds::plots::list(&mut c, &a).await,
        C::ShowPlot(a) => cmds::plots::show(&mut c, &a).await,
        C::DeletePlot(a) => cmds::plots::delete(&mut c, &a).await,
        C::CheckPlot(a) => cmds::plots::check(&mut c, &a).await,
        C::Jobs(a) => cmds::plots::jobs(&mut c, &a).await,
        C::CancelJob(a) => cmds::plots::cancel(&mut c, &a).await,
        C::Events(a) => cmds::events::follow(&mut c, &a).await,
        C::Shutdown(a) => cmds::daemon::shutdown(&mut c, &resolved.target, &a).await,
        C::Completions(_) | C::Start(_) => Ok(()),
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
    let result = runtime.block_on(run(cli));
    // Do not wait for a question still reading stdin (a second Ctrl-C answered it).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("minerctl: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
