//! `minerd` entry point: parse the command line, run, print the error chain once, exit with
//! an explicit code (0 ok, 64 usage or configuration error, 69 unavailable, 1 other).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use minerd::config::{self, ConfigError, LoadOptions, ProcessEnv};
use spacetime_io::LockError;

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
    /// Configuration flags given before the subcommand (or with none): they apply to the
    /// daemon, `config` and `key`; the same flags after the subcommand win over these.
    #[command(flatten)]
    flags: ConfigFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Flags that override configuration keys. Not `global`: they exist on the top level (for
/// `minerd` alone) and on the subcommands that read the configuration (`run`, `config`,
/// `key`), so that `bench --help` and `devnet-node --help` do not offer flags they ignore.
#[derive(Debug, Clone, Default, Args)]
struct ConfigFlags {
    /// Configuration file [default: <data dir>/miner.yaml; a missing default file means
    /// built-in defaults]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: socket, lock, token, key, metadata (key dataDirectory)
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Plot directory; repeat it for several (one reader per disk, new plots go to the one
    /// with the most free space) (keys plotDirectory, plotDirectories)
    #[arg(long, value_name = "DIR")]
    plot_dir: Vec<PathBuf>,
    /// Node host name or IP address (key nodeAddress)
    #[arg(long, value_name = "HOST")]
    node_address: Option<String>,
    /// Node TCP port (key nodePort)
    #[arg(long, value_name = "PORT")]
    node_port: Option<String>,
    /// Network id (key networkId; with --devnet the devnet's id is used)
    #[arg(long, value_name = "ID")]
    network_id: Option<String>,
    /// Control socket path (key controlSocket)
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also serve the control API on TCP, e.g. 127.0.0.1:9090; calls need the bearer token
    /// from the token file (key listenTcp)
    #[arg(long, value_name = "ADDR")]
    listen_tcp: Option<String>,
    /// Log filter, e.g. info or minerd=debug; RUST_LOG wins when set (key logLevel)
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log format: text or json (key logFormat)
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Start with mining disabled until `minerctl start` (key autoStartMining=false)
    #[arg(long)]
    no_auto_start: bool,
    /// Run a devnet node inside minerd on loopback and mine on it, creating a key and a small
    /// plot if there are none (key devnet.enabled=true)
    #[arg(long)]
    devnet: bool,
    /// Set any configuration key, e.g. --set maxConcurrentPlotJobs=2 (repeatable)
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ConfigFlags {
    /// `sub` (flags after the subcommand) over `self` (flags before it): a value given in
    /// both places comes from `sub`; switches are on when on in either; `--set` pairs of
    /// `sub` apply after those of `self`.
    fn merged(self, sub: ConfigFlags) -> ConfigFlags {
        ConfigFlags {
            config: sub.config.or(self.config),
            data_dir: sub.data_dir.or(self.data_dir),
            plot_dir: if sub.plot_dir.is_empty() {
                self.plot_dir
            } else {
                sub.plot_dir
            },
            node_address: sub.node_address.or(self.node_address),
            node_port: sub.node_port.or(self.node_port),
            network_id: sub.network_id.or(self.network_id),
            socket: sub.socket.or(self.socket),
            listen_tcp: sub.listen_tcp.or(self.listen_tcp),
            log_level: sub.log_level.or(self.log_level),
            log_format: sub.log_format.or(self.log_format),
            no_auto_start: self.no_auto_start || sub.no_auto_start,
            devnet: self.devnet || sub.devnet,
            set: self.set.into_iter().chain(sub.set).collect(),
        }
    }

    /// The flags that were given, as typed (for the error when they cannot apply).
    fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut flag = |on: bool, name: &'static str| {
            if on {
                out.push(name);
            }
        };
        flag(self.config.is_some(), "--config");
        flag(self.data_dir.is_some(), "--data-dir");
        flag(!self.plot_dir.is_empty(), "--plot-dir");
        flag(self.node_address.is_some(), "--node-address");
        flag(self.node_port.is_some(), "--node-port");
        flag(self.network_id.is_some(), "--network-id");
        flag(self.socket.is_some(), "--socket");
        flag(self.listen_tcp.is_some(), "--listen-tcp");
        flag(self.log_level.is_some(), "--log-level");
        flag(self.log_format.is_some(), "--log-format");
        flag(self.no_auto_start, "--no-auto-start");
        flag(self.devnet, "--devnet");
        flag(!self.set.is_empty(), "--set");
        out
    }

    fn load_options(&self) -> Result<LoadOptions, ConfigError> {
        let mut cli = Vec::new();
        let mut push = |key: &str, value: Option<String>, flag: &str| {
            if let Some(v) = value {
                cli.push((key.to_owned(), v, flag.to_owned()));
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        push("dataDirectory", path(&self.data_dir), "--data-dir");
        match self.plot_dir.as_slice() {
            [] => {}
            [one] => push("plotDirectory", path(&Some(one.clone())), "--plot-dir"),
            many => {
                let joined = std::env::join_paths(many).map_err(|e| ConfigError::InvalidValue {
                    key: "plotDirectories".into(),
                    value: format!("{many:?}"),
                    origin: config::Source::Cli("--plot-dir".into()),
                    allowed: format!("directories whose names can be listed ({e})"),
                })?;
                push(
                    "plotDirectories",
                    Some(joined.to_string_lossy().into_owned()),
                    "--plot-dir",
                );
            }
        }
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
    Run(ConfigFlags),
    /// Print the effective configuration and where each value came from.
    Config(ConfigFlags),
    /// Measure plotting, scanning and proof building on this machine.
    Bench(BenchArgs),
    /// Print the miner's public key and miner id (creating the key file if absent).
    Key(ConfigFlags),
    /// Run a devnet node (the node side of the protocol) that miners connect to.
    DevnetNode(DevnetNodeCmd),
    /// Write a self-signed TLS certificate and key for the TCP listener (to tlsCertFile and
    /// tlsKeyFile when set, else <data dir>/tls.crt and tls.key, the key 0600) and print the
    /// configuration lines that enable it.
    TlsInit(TlsInitCmd),
}

/// `minerd tls-init`.
#[derive(Debug, Args)]
struct TlsInitCmd {
    #[command(flatten)]
    flags: ConfigFlags,
    /// Another host name or IP address clients use to reach this daemon (repeatable); the
    /// certificate always covers localhost, 127.0.0.1, ::1 and this host's name
    #[arg(long = "name", value_name = "HOST")]
    names: Vec<String>,
    /// Replace an existing certificate and key
    #[arg(long)]
    force: bool,
}

/// `minerd devnet-node`: the node's own flags plus its logging (it reads no miner
/// configuration).
#[derive(Debug, Args)]
struct DevnetNodeCmd {
    #[command(flatten)]
    node: spacetime_devnet::DevnetNodeArgs,
    /// Log filter, e.g. info or minerd=debug; RUST_LOG wins when set
    #[arg(long, default_value = "info", value_name = "FILTER")]
    log_level: String,
    /// Log format: text or json
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text, value_name = "FORMAT")]
    log_format: LogFormatArg,
}

/// `--log-format` of `devnet-node` (variants undocumented on purpose: documented values
/// would switch the whole `--help` to its long form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormatArg {
    // Human-readable lines.
    Text,
    // One JSON object per line.
    Json,
}

impl From<LogFormatArg> for config::LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Text => config::LogFormat::Text,
            LogFormatArg::Json => config::LogFormat::Json,
        }
    }
}

impl Cli {
    /// Rejects configuration flags given before a subcommand that reads no configuration
    /// (`minerd --plot-dir X bench` would otherwise ignore `--plot-dir` silently).
    fn check(&self) -> Result<(), clap::Error> {
        let name = match &self.command {
            Some(Command::Bench(_)) => "bench",
            Some(Command::DevnetNode(_)) => "devnet-node",
            None
            | Some(Command::Run(_) | Command::Config(_) | Command::Key(_) | Command::TlsInit(_)) => {
                return Ok(())
            }
        };
        let given = self.flags.given();
        if given.is_empty() {
            return Ok(());
        }
        Err(Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "{} configures the daemon and does not apply to `minerd {name}` \
                 (configuration flags apply to `minerd`, `minerd run`, `minerd config` and \
                 `minerd key`)",
                given.join(", ")
            ),
        ))
    }
}

/// Options of `minerd bench`.
#[derive(Debug, Args)]
struct BenchArgs {
    /// Directory for the temporary benchmark plot [default: the system temp directory]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Leaves in the benchmark plot (32 bytes each); 33554432 (1 GiB) or more gives the cold
    /// scans time to reach the disk's rate, so their ratios are steadier
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    leaves: u64,
    /// Worker threads [default: all cores]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Proofs to time
    #[arg(long, default_value_t = 200, value_name = "N")]
    proofs: usize,
    /// Print one JSON object (every figure, bound and ratio) instead of the text report
    #[arg(long)]
    json: bool,
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
    let cli = match Cli::try_parse().and_then(|cli| cli.check().map(|()| cli)) {
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
    // A bad SPACETIME_SHA256_BACKEND is a configuration error before any hashing.
    let backend = spacetime::kernel::Kernels::try_active().map_err(|e| Failure {
        code: EXIT_USAGE,
        error: anyhow::Error::from(e),
    })?;
    let (flags, command) = match cli.command {
        // The devnet node has its own flags and does not read the miner's configuration.
        Some(Command::DevnetNode(cmd)) => {
            let rust_log = std::env::var("RUST_LOG").ok();
            minerd::telemetry::init(&cmd.log_level, cmd.log_format.into(), rust_log.as_deref());
            return run_async(|token| spacetime_devnet::run_cli(cmd.node, token));
        }
        Some(Command::Bench(b)) => {
            let dir = b.dir.unwrap_or_else(std::env::temp_dir);
            let report = spacetime::bench::run(&spacetime::bench::BenchOptions {
                dir,
                leaf_count: b.leaves,
                threads: b.threads,
                proofs: b.proofs,
            })
            .map_err(|e| anyhow::Error::from(e).context("benchmark failed"))?;
            if b.json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            return Ok(());
        }
        None => (cli.flags, ConfigCommand::Run),
        Some(Command::Run(sub)) => (cli.flags.merged(sub), ConfigCommand::Run),
        Some(Command::Config(sub)) => (cli.flags.merged(sub), ConfigCommand::Config),
        Some(Command::Key(sub)) => (cli.flags.merged(sub), ConfigCommand::Key),
        Some(Command::TlsInit(t)) => (
            cli.flags.merged(t.flags),
            ConfigCommand::TlsInit {
                names: t.names,
                force: t.force,
            },
        ),
    };
    let opts = flags.load_options().map_err(anyhow::Error::from)?;
    let loaded = config::load(&opts, &ProcessEnv).map_err(anyhow::Error::from)?;
    match command {
        ConfigCommand::Config => {
            print!("{}", loaded.render());
            Ok(())
        }
        ConfigCommand::Key => {
            let key = spacetime::keys::MinerKey::load_or_create(&loaded.config.private_key_path)
                .map_err(anyhow::Error::from)?;
            println!("key file:   {}", loaded.config.private_key_path.display());
            println!("public key: {}", hex::encode(key.public_key()));
            println!("miner id:   {}", hex::encode(key.miner_id()));
            Ok(())
        }
        ConfigCommand::TlsInit { names, force } => {
            let c = &loaded.config;
            let cert = c
                .tls_cert_file
                .clone()
                .unwrap_or_else(|| c.data_directory.join("tls.crt"));
            let key = c
                .tls_key_file
                .clone()
                .unwrap_or_else(|| c.data_directory.join("tls.key"));
            let names = minerd::rpc::tls::default_names(&names);
            let w = minerd::rpc::tls::init(&cert, &key, names, force)?;
            println!("certificate: {} (self-signed)", w.cert.display());
            println!("private key: {} (mode 0600)", w.key.display());
            println!("names:       {}", w.names.join(", "));
            if c.tls_cert_file.is_none() {
                println!("\nEnable TLS on the TCP listener in miner.yaml:");
                println!("  tlsCertFile: {}", w.cert.display());
                println!("  tlsKeyFile: {}", w.key.display());
            }
            println!(
                "\nClients trust this certificate: minerctl --tcp HOST:PORT --tls-ca {} \
                 (on this host minerctl finds it through tlsCertFile), grpcio \
                 ssl_channel_credentials(root_certificates=...), a browser's certificate store.",
                w.cert.display()
            );
            Ok(())
        }
        ConfigCommand::Run => {
            loaded.check_tcp_security().map_err(anyhow::Error::from)?;
            let config = loaded.config;
            minerd::telemetry::init(
                &config.log_level,
                config.log_format,
                std::env::var("RUST_LOG").ok().as_deref(),
            );
            for note in &loaded.notes {
                tracing::warn!("{note}");
            }
            tracing::info!(
                backend = %backend,
                available = ?spacetime::kernel::Backend::available().iter().map(|b| b.name()).collect::<Vec<_>>(),
                "SHA-256 engine backend"
            );
            run_async(|token| minerd::run(config, token))
        }
    }
}

/// The subcommands that read the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConfigCommand {
    Run,
    Config,
    Key,
    TlsInit { names: Vec<String>, force: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("minerd").chain(args.iter().copied()))
            .and_then(|cli| cli.check().map(|()| cli))
    }

    fn help(args: &[&str]) -> String {
        let mut cmd = Cli::command();
        let mut sub = &mut cmd;
        for name in args {
            sub = sub.find_subcommand_mut(name).expect("subcommand");
        }
        sub.render_long_help().to_string()
    }

    /// The flags, after merging, that a command that reads the configuration would use.
    fn flags(args: &[&str]) -> ConfigFlags {
        let cli = parse(args).unwrap();
        match cli.command {
            None => cli.flags,
            Some(Command::Run(sub) | Command::Config(sub) | Command::Key(sub)) => {
                cli.flags.merged(sub)
            }
            Some(other) => panic!("not a configuration command: {other:?}"),
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_flags_show_only_where_they_apply() {
        const CONFIG_FLAGS: [&str; 5] = [
            "--config",
            "--plot-dir",
            "--node-address",
            "--devnet",
            "--set",
        ];
        for cmd in [&[][..], &["run"], &["config"], &["key"]] {
            let text = help(cmd);
            for flag in CONFIG_FLAGS {
                assert!(text.contains(flag), "{cmd:?} help lacks {flag}:\n{text}");
            }
        }
        for cmd in ["bench", "devnet-node"] {
            let text = help(&[cmd]);
            for flag in CONFIG_FLAGS {
                assert!(!text.contains(flag), "{cmd} help offers {flag}:\n{text}");
            }
        }
        let node = help(&["devnet-node"]);
        for flag in [
            "--log-level",
            "--log-format",
            "--listen",
            "--data-dir",
            "--network-id",
        ] {
            assert!(
                node.contains(flag),
                "devnet-node help lacks {flag}:\n{node}"
            );
        }
    }

    #[test]
    fn devnet_works_before_and_after_run_and_sub_flags_win() {
        assert!(flags(&["--devnet"]).devnet);
        assert!(flags(&["run", "--devnet"]).devnet);
        assert!(flags(&["--devnet", "run"]).devnet);
        let f = flags(&[
            "--node-port",
            "1",
            "--plot-dir",
            "/top",
            "--set",
            "a=1",
            "config",
            "--node-port",
            "2",
            "--set",
            "a=2",
        ]);
        assert_eq!(f.node_port.as_deref(), Some("2"));
        assert_eq!(f.plot_dir, vec![PathBuf::from("/top")]);
        // Later --set pairs win in the loader, so the subcommand's come last.
        assert_eq!(f.set, vec!["a=1".to_owned(), "a=2".to_owned()]);
        let opts = f.load_options().unwrap();
        let ports: Vec<&str> = opts
            .cli
            .iter()
            .filter(|(k, _, _)| k == "nodePort")
            .map(|(_, v, _)| v.as_str())
            .collect();
        assert_eq!(ports, ["2"]);
        // Repeated, the flag gives the list; after the subcommand it replaces the list.
        let f = flags(&["--plot-dir", "/a", "--plot-dir", "/b"]);
        let opts = f.load_options().unwrap();
        assert_eq!(
            opts.cli,
            [(
                "plotDirectories".to_owned(),
                "/a:/b".to_owned(),
                "--plot-dir".to_owned()
            )]
        );
        let f = flags(&[
            "--plot-dir",
            "/a",
            "--plot-dir",
            "/b",
            "run",
            "--plot-dir",
            "/c",
        ]);
        assert_eq!(f.plot_dir, vec![PathBuf::from("/c")]);
        assert_eq!(
            flags(&["key", "--data-dir", "/d"]).data_dir,
            Some(PathBuf::from("/d"))
        );
    }

    #[test]
    fn config_flags_are_refused_where_they_would_be_ignored() {
        for args in [
            &["bench", "--plot-dir", "/x"][..],
            &["devnet-node", "--devnet"],
            &["devnet-node", "--set", "a=1"],
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.use_stderr(), "{args:?}");
        }
        let err = parse(&["--plot-dir", "/x", "bench"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--plot-dir") && msg.contains("minerd bench"),
            "{msg}"
        );
        let err = parse(&["--devnet", "devnet-node"]).unwrap_err();
        assert!(err.to_string().contains("--devnet"), "{err}");
        // The node's own flags, including logging, still parse.
        let cli = parse(&[
            "devnet-node",
            "--data-dir",
            "/n",
            "--network-id",
            "x",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ])
        .unwrap();
        let Some(Command::DevnetNode(cmd)) = cli.command else {
            panic!("not devnet-node");
        };
        assert_eq!(cmd.node.data_dir, Some(PathBuf::from("/n")));
        assert_eq!(cmd.node.network_id, "x");
        assert_eq!(cmd.log_level, "debug");
        assert_eq!(cmd.log_format, LogFormatArg::Json);
        assert!(parse(&["devnet-node", "--log-format", "xml"]).is_err());
    }
}
