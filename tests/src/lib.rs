//! Harness for the end-to-end tests: locates the built binaries and runs them on loopback.
//!
//! * [`binary`] finds `minerd` / `minerctl`: `$MINERD_BIN` / `$MINERCTL_BIN` when set, else
//!   the cargo target directory of this test executable. On first use it runs
//!   `cargo build -p minerd -p minerctl` once (a no-op when they are fresh), so a plain
//!   `cargo test --workspace` on a clean clone works and never tests stale binaries.
//! * [`Minerd`] starts the daemon in a temporary home (its own process group), waits for the
//!   "listening" lines on stderr, hands out typed clients, runs `minerctl` against it, and
//!   kills the whole group on drop.
//! * [`wait_until`] / [`wait_until_async`] poll a condition with a deadline: no bare sleeps.

pub mod devnet;
pub mod mining;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use spacetime_proto::client::{self, MinerClient, Target};

/// How long a daemon may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

fn target_dir() -> anyhow::Result<PathBuf> {
    // <target>/<profile>/deps/e2e-<hash>: the binaries live in <target>/<profile>.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no grandparent directory")?;
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
        let mut cmd = Command::new(binary("minerd"));
        cmd.args(args)
            .env_clear()
            .env("HOME", self.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run minerd")
    }
}

/// A running `minerd` in its own process group.
#[derive(Debug)]
pub struct Minerd {
    /// Its home directory (kept alive as long as the daemon).
    pub home: Home,
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
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
        use std::os::unix::process::CommandExt;
        if let Some(yaml) = &opts.config_yaml {
            std::fs::create_dir_all(home.data_dir())?;
            std::fs::write(home.data_dir().join("miner.yaml"), yaml)?;
        }
        let mut cmd = Command::new(binary("minerd"));
        cmd.args(&opts.args)
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        if opts.tcp {
            cmd.args(["--listen-tcp", "127.0.0.1:0"]);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("spawning minerd")?;
        let stderr = child.stderr.take().context("minerd stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if std::env::var_os("E2E_SHOW_LOGS").is_some() {
                        eprintln!("[minerd] {line}");
                    }
                    lines
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut me = Minerd {
            home,
            child: Some(child),
            stderr: lines,
            tcp: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut unix = false;
        while !(unix && (me.tcp.is_some() || !opts.tcp)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if line.contains("listening on unix:") {
                        unix = true;
                    }
                    if let Some(rest) = line.split("listening on tcp:").nth(1) {
                        me.tcp = rest.split_whitespace().next().map(str::to_owned);
                    }
                }
                Err(_) => bail!(
                    "minerd did not start listening within {START_TIMEOUT:?}; log:\n{}",
                    me.log()
                ),
            }
        }
        Ok(me)
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// A typed client over the Unix socket.
    pub async fn client(&self) -> anyhow::Result<MinerClient> {
        Ok(client::connect(&Target::Unix(self.home.socket())).await?)
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

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill {sig} {} failed", self.pid());
        }
        Ok(())
    }

    /// Sends SIGTERM and waits (bounded) for the daemon to exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.signal("-TERM")?;
        self.wait(timeout)
    }

    /// Waits (bounded) for the daemon to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let child = self.child.as_mut().context("daemon already reaped")?;
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(s) => {
                self.child = None;
                Ok(s)
            }
            None => bail!(
                "minerd did not exit within {timeout:?}; log:\n{}",
                self.log()
            ),
        }
    }
}

impl Drop for Minerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Kill the whole process group, then reap.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
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
