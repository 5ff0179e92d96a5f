//! `minerd` entry point: parse the command line, run, print the error chain once, exit with
//! an explicit code (0 ok, 64 usage or configuration error, 69 unavailable, 1 other).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use minerd::config::{self, ConfigError, LoadOptions, ProcessEnv};
use minerd::lock::LockError;

/// Exit code for a usage or configuration error (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit code when a needed service is unavailable (sysexits EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;

/// The Spacetime miner daemon: owns the plots, the node link and the mining loop, and serves
/// the gRPC control API that `minerctl` talks to.
///
/// Without a subcommand, runs the daemon in the foreground until SIGINT or SIGTERM.
/// Configuration layers: defaults, then the YAML file, then SPACETIME_MINER_* variables, then
/// these flags; `minerd config` shows the result.
#[derive(Debug, Parser)]
#[command(name = "minerd", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    flags: ConfigFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Flags that override configuration keys (they apply to every subcommand).
#[derive(Debug, Args)]
struct ConfigFlags {
    /// Configuration file [default: <data dir>/miner.yaml; a missing default file means
    /// built-in defaults]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: socket, lock, token, key, metadata (key dataDirectory)
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Plot directory (key plotDirectory)
    #[arg(long, global = true, value_name = "DIR")]
    plot_dir: Option<PathBuf>,
    /// Node host name or IP address (key nodeAddress)
    #[arg(long, global = true, value_name = "HOST")]
    node_address: Option<String>,
    /// Node TCP port (key nodePort)
    #[arg(long, global = true, value_name = "PORT")]
    node_port: Option<String>,
    /// Network id (key networkId)
    #[arg(long, global = true, value_name = "ID")]
    network_id: Option<String>,
    /// Control socket path (key controlSocket)
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also serve the control API on TCP, e.g. 127.0.0.1:9090; calls need the bearer token
    /// from the token file (key listenTcp)
    #[arg(long, global = true, value_name = "ADDR")]
    listen_tcp: Option<String>,
    /// Log filter, e.g. info or minerd=debug; RUST_LOG wins when set (key logLevel)
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log format: text or json (key logFormat)
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Start with mining disabled until `minerctl start` (key autoStartMining=false)
    #[arg(long, global = true)]
    no_auto_start: bool,
    /// Run a devnet node inside minerd on loopback and mine on it, creating a key and a small
    /// plot if there are none (key devnet.enabled=true)
    #[arg(long, global = true)]
    devnet: bool,
    /// Set any configuration key, e.g. --set maxConcurrentPlotJobs=2 (repeatable)
    #[arg(long = "set", short = 's', global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ConfigFlags {
    fn load_options(&self) -> Result<LoadOptions, ConfigError> {
        let mut cli = Vec::new();
        let mut push = |key: &str, value: Option<String>, flag: &str| {
            if let Some(v) = value {
                cli.push((key.to_owned(), v, flag.to_owned()));
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        push("dataDirectory", path(&self.data_dir), "--data-dir");
        push("plotDirectory", path(&self.plot_dir), "--plot-dir");
        push("nodeAddress", self.node_address.clone(), "--node-address");
        push("nodePort", self.node_port.clone(), "--node-port");
        push("networkId", self.network_id.clone(), "--network-id");
        push("controlSocket", path(&self.socket), "--socket");
        push("listenTcp", self.listen_tcp.clone(), "--listen-tcp");
        push("logLevel", self.log_level.clone(), "--log-level");
        push("logFormat", self.log_format.clone(), "--log-format");
        if self.no_auto_start {
            push("autoStartMining", Some("false".into()), "--no-auto-start");
        }
        if self.devnet {
            push("devnet.enabled", Some("true".into()), "--devnet");
        }
        for kv in &self.set {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(ConfigError::InvalidValue {
                    key: kv.clone(),
                    value: String::new(),
                    origin: config::Source::Cli("--set".into()),
                    allowed: "KEY=VALUE".into(),
                });
            };
            cli.push((k.trim().to_owned(), v.to_owned(), format!("--set {k}")));
        }
        Ok(LoadOptions {
            config_file: self.config.clone(),
            cli,
        })
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground (the default).
    Run,
    /// Print the effective configuration and where each value came from.
    Config,
    /// Measure plotting, scanning and proof building on this machine.
    Bench(BenchArgs),
    /// Print the miner's public key and miner id (creating the key file if absent).
    Key,
    /// Run a devnet node (the node side of the protocol) that miners connect to.
    DevnetNode(minerd::devnet::DevnetNodeArgs),
}

/// Options of `minerd bench`.
#[derive(Debug, Args)]
struct BenchArgs {
    /// Directory for the temporary benchmark plot [default: the system temp directory]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Leaves in the benchmark plot (32 bytes each)
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    leaves: u64,
    /// Worker threads [default: all cores]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Proofs to time
    #[arg(long, default_value_t = 200, value_name = "N")]
    proofs: usize,
}

/// An error with its exit code.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        let code = if error.chain().any(|e| e.is::<ConfigError>()) {
            EXIT_USAGE
        } else if error.chain().any(|e| e.is::<LockError>()) {
            EXIT_UNAVAILABLE
        } else {
            1
        };
        Failure { code, error }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // The chain once, outermost first.
            let mut msg = format!("minerd: error: {}", f.error);
            for cause in f.error.chain().skip(1) {
                msg.push_str(&format!("\n  caused by: {cause}"));
            }
            eprintln!("{msg}");
            ExitCode::from(f.code)
        }
    }
}

/// Runs `fut` on a multi-threaded runtime with SIGINT/SIGTERM wired to its shutdown token.
fn run_async<F, Fut>(fut: F) -> Result<(), Failure>
where
    F: FnOnce(minerd::shutdown::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::Error::from(e).context("starting the async runtime"))?;
    runtime.block_on(async {
        let token = minerd::shutdown::CancellationToken::new();
        tokio::spawn(minerd::shutdown::cancel_on_signal(token.clone()));
        fut(token).await
    })?;
    Ok(())
}

fn real_main(cli: Cli) -> Result<(), Failure> {
    // The devnet node has its own flags and does not read the miner's configuration.
    if let Some(Command::DevnetNode(args)) = cli.command {
        let rust_log = std::env::var("RUST_LOG").ok();
        let level = cli.flags.log_level.as_deref().unwrap_or("info");
        let format = match cli.flags.log_format.as_deref() {
            None | Some("text") => config::LogFormat::Text,
            Some("json") => config::LogFormat::Json,
            Some(other) => {
                return Err(anyhow::Error::from(ConfigError::InvalidValue {
                    key: "logFormat".into(),
                    value: format!("{other:?}"),
                    origin: config::Source::Cli("--log-format".into()),
                    allowed: "one of text, json".into(),
                })
                .into())
            }
        };
        minerd::telemetry::init(level, format, rust_log.as_deref());
        return run_async(|token| minerd::devnet::run_cli(args, token));
    }
    let opts = cli.flags.load_options().map_err(anyhow::Error::from)?;
    let loaded = config::load(&opts, &ProcessEnv).map_err(anyhow::Error::from)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Config => {
            print!("{}", loaded.render());
            Ok(())
        }
        Command::Key => {
            let key = spacetime::keys::MinerKey::load_or_create(&loaded.config.private_key_path)
                .map_err(anyhow::Error::from)?;
            println!("key file:   {}", loaded.config.private_key_path.display());
            println!("public key: {}", hex::encode(key.public_key()));
            println!("miner id:   {}", hex::encode(key.miner_id()));
            Ok(())
        }
        Command::DevnetNode(_) => Ok(()), // handled above
        Command::Bench(b) => {
            let dir = b.dir.unwrap_or_else(std::env::temp_dir);
            let report = spacetime::bench::run(&spacetime::bench::BenchOptions {
                dir,
                leaf_count: b.leaves,
                threads: b.threads,
                proofs: b.proofs,
            })
            .map_err(|e| anyhow::Error::from(e).context("benchmark failed"))?;
            print!("{report}");
            Ok(())
        }
        Command::Run => {
            let config = loaded.config;
            minerd::telemetry::init(
                &config.log_level,
                config.log_format,
                std::env::var("RUST_LOG").ok().as_deref(),
            );
            run_async(|token| minerd::run(config, token))
        }
    }
}
