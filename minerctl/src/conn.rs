//! Where the daemon is: the connection options every command shares, resolved through the
//! daemon's own configuration loader so that minerctl finds exactly the socket, token file
//! and data directory that `minerd` with the same `--config`/`--data-dir` would use.

use std::path::{Path, PathBuf};

use clap::Args;
use minerd::config::{self, Env, LoadOptions, ProcessEnv};
use spacetime_proto::client::{self, ConnectError, MinerClient, Target};

use crate::{error_chain, Failure, EXIT_UNAVAILABLE};

/// The environment variable of the control socket, shared by minerd (key `controlSocket`)
/// and minerctl (read through minerd's configuration loader).
#[cfg(test)]
const SOCKET_ENV: &str = "SPACETIME_MINER_CONTROL_SOCKET";

const HEADING: &str = "Connection options";

/// Options that say which daemon to talk to (global: accepted before or after the command),
/// shown under their own heading.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = HEADING)]
pub struct ConnArgs {
    /// The daemon's configuration file (miner.yaml), read as minerd reads it to find the
    /// socket, token file and data directory [env: SPACETIME_MINER_CONFIG] [default:
    /// <data dir>/miner.yaml]
    #[arg(short = 'c', long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The daemon's data directory (key dataDirectory) [env: SPACETIME_MINER_DATA_DIRECTORY]
    /// [default: ~/.spacetime]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The daemon's control socket (key controlSocket) [env: SPACETIME_MINER_CONTROL_SOCKET]
    /// [default: <data dir>/minerd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Connect over TCP instead, to HOST:PORT (the daemon's listenTcp)
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        conflicts_with = "socket"
    )]
    pub tcp: Option<String>,
    /// Bearer token file for --tcp (key tokenFile) [default: <data dir>/minerd.token]
    #[arg(long, global = true, value_name = "PATH", requires = "tcp")]
    pub token_file: Option<PathBuf>,
    /// Speak TLS to --tcp, trusting the PEM certificate(s) in PATH: the daemon's own
    /// self-signed certificate (from `minerd tls-init`) or the CA that issued it [default:
    /// the daemon's tlsCertFile when its configuration sets one, else plaintext]
    #[arg(long, global = true, value_name = "PATH", requires = "tcp")]
    pub tls_ca: Option<PathBuf>,
    /// Verify the daemon's certificate against NAME instead of the host of --tcp
    #[arg(long, global = true, value_name = "NAME", requires = "tcp")]
    pub tls_server_name: Option<String>,
}

/// What the connection options resolve to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Where to connect.
    pub target: Target,
    /// The daemon's data directory (log and pid of `start --daemon` go there).
    pub data_dir: PathBuf,
    /// The configuration file consulted, and whether it exists.
    pub config_file: (PathBuf, bool),
}

impl ConnArgs {
    fn load_with(&self, env: &dyn Env) -> Result<config::Loaded, Failure> {
        let mut cli = Vec::new();
        if let Some(d) = &self.data_dir {
            cli.push((
                "dataDirectory".to_owned(),
                d.to_string_lossy().into_owned(),
                "--data-dir".to_owned(),
            ));
        }
        if let Some(s) = &self.socket {
            cli.push((
                "controlSocket".to_owned(),
                s.to_string_lossy().into_owned(),
                "--socket".to_owned(),
            ));
        }
        if let Some(t) = &self.token_file {
            cli.push((
                "tokenFile".to_owned(),
                t.to_string_lossy().into_owned(),
                "--token-file".to_owned(),
            ));
        }
        let opts = LoadOptions {
            config_file: self.config.clone(),
            cli,
        };
        config::load(&opts, env).map_err(|e| Failure::usage(error_chain(&e)))
    }

    /// Resolves the target: `--tcp` with the token file, else the control socket.
    pub fn resolve(&self) -> Result<Resolved, Failure> {
        self.resolve_with(&ProcessEnv)
    }

    fn resolve_with(&self, env: &dyn Env) -> Result<Resolved, Failure> {
        let loaded = self.load_with(env)?;
        let c = &loaded.config;
        let target = match &self.tcp {
            Some(address) => {
                let token = client::read_token_file(&c.token_file)
                    .map_err(|e| Failure::usage(error_chain(&e)))?;
                // The daemon's own certificate is the trust anchor when this configuration
                // gives one (the self-signed case), unless --tls-ca names another.
                let ca = self.tls_ca.clone().or_else(|| c.tls_cert_file.clone());
                let tls = ca
                    .map(|ca| client::ClientTls::from_ca_file(&ca, self.tls_server_name.clone()))
                    .transpose()
                    .map_err(|e| Failure::usage(error_chain(&e)))?;
                if tls.is_none() && self.tls_server_name.is_some() {
                    return Err(Failure::usage(
                        "--tls-server-name needs TLS: pass --tls-ca with the daemon's certificate",
                    ));
                }
                Target::Tcp {
                    address: address.clone(),
                    token: Some(token),
                    tls,
                }
            }
            None => Target::Unix(c.control_socket.clone()),
        };
        Ok(Resolved {
            target,
            data_dir: c.data_directory.clone(),
            config_file: loaded.file.clone(),
        })
    }

    /// The options to hand to a `minerd` started for these options (`start --daemon`), so
    /// that it uses the same configuration file, data directory and socket.
    pub fn minerd_args(&self) -> Vec<std::ffi::OsString> {
        let mut out = Vec::new();
        let mut push = |flag: &str, p: &Option<PathBuf>| {
            if let Some(p) = p {
                out.push(flag.into());
                out.push(absolute(p).into_os_string());
            }
        };
        push("--config", &self.config);
        push("--data-dir", &self.data_dir);
        push("--socket", &self.socket);
        out
    }
}

/// `p` made absolute against the current directory (for a daemon that may change its own).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// The hint printed when no daemon answers.
pub fn start_hint() -> &'static str {
    "Is minerd running? Start it with `minerctl start --daemon` (or `minerd` in a terminal, \
     or `systemctl start minerd`), or point minerctl at it with -c/--config, --data-dir, \
     --socket PATH or --tcp HOST:PORT."
}

/// Connects, turning "nobody there" into exit 69 with a hint on how to start the daemon.
pub async fn connect(target: &Target, debug: bool) -> Result<MinerClient, Failure> {
    if debug {
        eprintln!("minerctl: connecting to {target}");
    }
    client::connect(target).await.map_err(|e| match &e {
        ConnectError::Unreachable { .. } => Failure {
            code: EXIT_UNAVAILABLE,
            message: format!("{}\n{}", error_chain(&e), start_hint()),
        },
        ConnectError::InvalidAddress { .. }
        | ConnectError::InvalidToken
        | ConnectError::TokenFile { .. }
        | ConnectError::CaFile { .. }
        | ConnectError::Tls { .. } => Failure::usage(error_chain(&e)),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn socket(r: &Resolved) -> PathBuf {
        match &r.target {
            Target::Unix(p) => p.clone(),
            other => panic!("not a socket: {other}"),
        }
    }

    #[test]
    fn defaults_follow_home() {
        let r = ConnArgs::default()
            .resolve_with(&env(&[("HOME", "/h")]))
            .unwrap();
        assert_eq!(socket(&r), PathBuf::from("/h/.spacetime/minerd.sock"));
        assert_eq!(r.data_dir, PathBuf::from("/h/.spacetime"));
    }

    #[test]
    fn the_config_file_names_socket_and_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("miner.yaml");
        std::fs::write(
            &yaml,
            "dataDirectory: /srv/miner\ncontrolSocket: /run/m.sock\n",
        )
        .unwrap();
        let a = ConnArgs {
            config: Some(yaml.clone()),
            ..ConnArgs::default()
        };
        let r = a.resolve_with(&env(&[("HOME", "/h")])).unwrap();
        assert_eq!(socket(&r), PathBuf::from("/run/m.sock"));
        assert_eq!(r.data_dir, PathBuf::from("/srv/miner"));
        // Without controlSocket the socket follows the data directory of the file.
        std::fs::write(&yaml, "dataDirectory: /srv/miner\n").unwrap();
        let r = a.resolve_with(&env(&[("HOME", "/h")])).unwrap();
        assert_eq!(socket(&r), PathBuf::from("/srv/miner/minerd.sock"));
        // The environment variable beats the file, the flag beats both.
        let e = env(&[("HOME", "/h"), (SOCKET_ENV, "/env.sock")]);
        assert_eq!(
            socket(&a.resolve_with(&e).unwrap()),
            PathBuf::from("/env.sock")
        );
        let flag = ConnArgs {
            socket: Some("/flag.sock".into()),
            ..a.clone()
        };
        assert_eq!(
            socket(&flag.resolve_with(&e).unwrap()),
            PathBuf::from("/flag.sock")
        );
    }

    #[test]
    fn data_dir_flag_finds_its_miner_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("miner.yaml"),
            "controlSocket: /run/x.sock\n",
        )
        .unwrap();
        let a = ConnArgs {
            data_dir: Some(dir.path().to_owned()),
            ..ConnArgs::default()
        };
        let r = a.resolve_with(&env(&[("HOME", "/h")])).unwrap();
        assert_eq!(socket(&r), PathBuf::from("/run/x.sock"));
        assert_eq!(r.data_dir, dir.path());
    }

    #[test]
    fn a_missing_config_file_is_a_usage_error() {
        let a = ConnArgs {
            config: Some("/nonexistent/miner.yaml".into()),
            ..ConnArgs::default()
        };
        let f = a.resolve_with(&env(&[("HOME", "/h")])).unwrap_err();
        assert_eq!(f.code, crate::EXIT_USAGE);
        assert!(
            f.message.contains("/nonexistent/miner.yaml"),
            "{}",
            f.message
        );
    }
}
