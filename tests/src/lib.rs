//! Harness for the end-to-end tests: locates the built binaries and runs them on loopback.
//!
//! * [`binary`] finds `minerd` / `minerctl`: `$MINERD_BIN` / `$MINERCTL_BIN` when set, else
//!   the cargo target directory of this test executable. On first use it runs
//!   `cargo build -p minerd -p minerctl` once (a no-op when they are fresh), so a plain
//!   `cargo test --workspace` on a clean clone works and never tests stale binaries.
//! * [`Minerd`] starts the daemon in a temporary home, waits for the "listening" lines on
//!   stderr, hands out typed clients and runs `minerctl` against it.
//! * [`ChildProcess`] ([`process`]) is the one process wrapper under `Minerd` and the devnet
//!   nodes ([`devnet`], [`mining`]): own process group, stderr captured line by line,
//!   `wait_for_line`, SIGTERM/SIGKILL, the whole group killed on drop.
//! * [`wait_until`] / [`wait_until_async`] poll a condition with a deadline: no bare sleeps.

pub mod devnet;
pub mod load;
pub mod mining;
pub mod process;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use spacetime_proto::client::{self, MinerClient, Target};
use spacetime_proto::pb;

pub use process::ChildProcess;

/// How long a daemon may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

fn target_dir() -> anyhow::Result<PathBuf> {
    // A test is <target>/<profile>/deps/e2e-<hash>, a tool of this crate (the load test)
    // <target>/<profile>/<name>: the binaries live in <target>/<profile>.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let parent = exe.parent().context("executable has no parent directory")?;
    let dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent
            .parent()
            .context("test executable has no grandparent directory")?
    } else {
        parent
    };
    Ok(dir.to_owned())
}

fn build_once() -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if std::env::var_os("MINERD_BIN").is_some()
                && std::env::var_os("MINERCTL_BIN").is_some()
            {
                return Ok(());
            }
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let release = target_dir()
                .ok()
                .and_then(|d| d.file_name().map(|n| n == "release"))
                .unwrap_or(false);
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "minerd", "-p", "minerctl"]);
            if release {
                cmd.arg("--release");
            }
            cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            match cmd.status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("cargo build of minerd/minerctl failed: {s}")),
                Err(e) => Err(format!("cannot run cargo to build minerd/minerctl: {e}")),
            }
        })
        .clone()
}

/// Path of a workspace binary (`minerd` or `minerctl`), built if needed.
pub fn binary(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_ascii_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        return PathBuf::from(p);
    }
    if let Err(e) = build_once() {
        panic!("{e}");
    }
    let dir = target_dir().unwrap_or_else(|e| panic!("{e:#}"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found; build it or set {var}",
        path.display()
    );
    path
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async [`wait_until`]: polls an async condition every 20 ms.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `minerd` with a clean environment: only `HOME` (= `home`) and `PATH`, so the user's
/// environment (`RUST_LOG`, a real `~/.spacetime`) never leaks into a test.
pub fn minerd_command(home: &Path) -> Command {
    let mut cmd = Command::new(binary("minerd"));
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

/// How to start a daemon.
#[derive(Debug, Default, Clone)]
pub struct MinerdOptions {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Contents of `~/.spacetime/miner.yaml`, if any.
    pub config_yaml: Option<String>,
    /// Also listen on TCP (127.0.0.1, port 0).
    pub tcp: bool,
    /// Start the daemon with this open-file limit, soft and hard (so it cannot raise it).
    pub nofile: Option<u64>,
    /// Largest file the daemon may write (`RLIMIT_FSIZE`, with SIGXFSZ ignored so that a
    /// write past it fails with EFBIG): a disk that fills up, without a small filesystem.
    pub file_size_limit: Option<u64>,
}

/// Makes `cmd` run with resource limit `resource` = `limit` (soft and hard), and signal
/// `ignore` ignored when given.
#[allow(unsafe_code)]
pub fn limit_at_exec(
    cmd: &mut Command,
    resource: libc::__rlimit_resource_t,
    limit: u64,
    ignore: Option<libc::c_int>,
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit) run.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(sig) = ignore {
                if libc::signal(sig, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `cmd` run with `RLIMIT_FSIZE` = `limit` bytes and SIGXFSZ ignored: a write past
/// the limit fails with EFBIG ("File too large"), as a full disk fails with ENOSPC.
pub fn limit_file_size(cmd: &mut Command, limit: u64) {
    limit_at_exec(cmd, libc::RLIMIT_FSIZE, limit, Some(libc::SIGXFSZ));
}

impl MinerdOptions {
    /// A daemon mining on its embedded devnet node: the node on a free port with one-second
    /// epochs, then each of `sets` (`key=value`) as one more `--set`.
    pub fn fast_devnet(sets: &[&str]) -> Self {
        let mut args = vec!["--devnet".to_owned()];
        for set in ["devnet.listenPort=0", "devnet.epochDurationSeconds=1"]
            .iter()
            .chain(sets)
        {
            args.extend(["--set".to_owned(), (*set).to_owned()]);
        }
        Self {
            args,
            ..Self::default()
        }
    }
}

/// A temporary home directory with a `.spacetime` data directory.
#[derive(Debug)]
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A fresh empty home.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new().prefix("e2e-home-").tempdir()?,
        })
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `~/.spacetime`.
    pub fn data_dir(&self) -> PathBuf {
        self.path().join(".spacetime")
    }

    /// `~/.spacetime/plots`.
    pub fn plot_dir(&self) -> PathBuf {
        self.data_dir().join("plots")
    }

    /// `~/.spacetime/minerd.sock`.
    pub fn socket(&self) -> PathBuf {
        self.data_dir().join("minerd.sock")
    }

    /// Runs `minerd <args>` to completion (for subcommands and start-up failures).
    pub fn minerd_output(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = minerd_command(self.path());
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run minerd")
    }
}

/// A running `minerd` in its own process group, killed on drop.
#[derive(Debug)]
pub struct Minerd {
    // Declared before `home`: fields drop in order, so the daemon dies before its home goes.
    process: ChildProcess,
    /// Its home directory (kept alive as long as the daemon).
    pub home: Home,
    /// The bound TCP address, when started with `tcp`.
    pub tcp: Option<String>,
}

impl Minerd {
    /// Starts a daemon with default options in a fresh home.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(MinerdOptions::default())
    }

    /// Starts a daemon in a fresh home.
    pub fn start_with(opts: MinerdOptions) -> anyhow::Result<Self> {
        Self::start_in(Home::new()?, opts)
    }

    /// Starts a daemon in `home` and waits until it listens.
    pub fn start_in(home: Home, opts: MinerdOptions) -> anyhow::Result<Self> {
        if let Some(yaml) = &opts.config_yaml {
            std::fs::create_dir_all(home.data_dir())?;
            std::fs::write(home.data_dir().join("miner.yaml"), yaml)?;
        }
        let mut cmd = minerd_command(home.path());
        cmd.args(&opts.args).env("RUST_LOG", "info");
        if opts.tcp {
            cmd.args(["--listen-tcp", "127.0.0.1:0"]);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if let Some(n) = opts.nofile {
            limit_at_exec(&mut cmd, libc::RLIMIT_NOFILE, n, None);
        }
        if let Some(limit) = opts.file_size_limit {
            limit_file_size(&mut cmd, limit);
        }
        let process = ChildProcess::spawn("minerd", cmd)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let left = || deadline.saturating_duration_since(Instant::now());
        process.wait_for_line("listening on unix:", left())?;
        let tcp = if opts.tcp {
            let line = process.wait_for_line("listening on tcp:", left())?;
            line.split("listening on tcp:")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        } else {
            None
        };
        Ok(Minerd { home, process, tcp })
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The daemon's process.
    pub fn process(&self) -> &ChildProcess {
        &self.process
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// A typed client over the Unix socket.
    pub async fn client(&self) -> anyhow::Result<MinerClient> {
        Ok(client::connect(&Target::Unix(self.home.socket())).await?)
    }

    /// A typed client and its event feed, subscribed before anything else happens.
    pub async fn client_and_events(
        &self,
    ) -> anyhow::Result<(MinerClient, tonic::Streaming<pb::WatchEventsResponse>)> {
        let mut c = self.client().await?;
        let events = c
            .watch_events(pb::WatchEventsRequest {})
            .await?
            .into_inner();
        Ok((c, events))
    }

    /// A raw channel over the Unix socket (health, reflection).
    pub async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        Ok(client::connect_channel(&Target::Unix(self.home.socket())).await?)
    }

    /// Runs `minerctl --socket <socket> <args>`.
    pub fn minerctl(&self, args: &[&str]) -> Output {
        Command::new(binary("minerctl"))
            .arg("--socket")
            .arg(self.home.socket())
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .output()
            .expect("run minerctl")
    }

    /// Runs minerctl and returns stdout, failing with its stderr when it exits non-zero.
    pub fn minerctl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.minerctl(args);
        if !out.status.success() {
            bail!(
                "minerctl {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Runs minerctl with `--json` output and parses it.
    pub fn minerctl_json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let text = self.minerctl_ok(args)?;
        serde_json::from_str(&text).with_context(|| format!("minerctl {args:?} printed {text}"))
    }

    /// Sends SIGTERM and waits (bounded) for the daemon to exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.process.terminate(timeout)
    }

    /// Stops the daemon with SIGTERM (bounded) and hands back its home, to start another
    /// daemon on the same files.
    pub fn stop_keep_home(mut self, timeout: Duration) -> anyhow::Result<Home> {
        let status = self.process.terminate(timeout)?;
        if !status.success() {
            bail!("minerd exited with {status}\n{}", self.process.log());
        }
        let Minerd { process, home, .. } = self;
        drop(process);
        Ok(home)
    }

    /// Kills the daemon's process group with SIGKILL (a crash: no cleanup at all) and hands
    /// back its home, to start another daemon on what it left.
    pub fn kill_keep_home(self) -> Home {
        let Minerd {
            mut process, home, ..
        } = self;
        process.kill();
        home
    }

    /// Runs `minerctl --socket <socket> <args>` in directory `cwd`.
    pub fn minerctl_in(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(binary("minerctl"))
            .arg("--socket")
            .arg(self.home.socket())
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .output()
            .expect("run minerctl")
    }

    /// Waits (bounded) for the daemon to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.process.wait(timeout)
    }
}

/// Every file under `dir` (recursively), sorted, as paths relative to it.
pub fn list_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else if let Ok(rel) = p.strip_prefix(base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
