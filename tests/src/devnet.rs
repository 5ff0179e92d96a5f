//! Harness for the devnet node: runs `minerd devnet-node` on loopback in a temporary data
//! dir (a [`ChildProcess`]: own process group, killed on drop). The raw wire peer for
//! talking to it is the devnet crate's test kit ([`WirePeer`], re-exported here).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context as _;
pub use spacetime_devnet::testkit::{error_reason, handshake, RecvEnd, WirePeer, DEVNET};

use crate::{minerd_command, ChildProcess, START_TIMEOUT};

/// Spawns `minerd devnet-node --listen <listen> --data-dir <data_dir> <extra>` with `HOME`
/// set to `home` and waits for its "devnet node listening on ADDR" line; returns the
/// process and the bound address. Every devnet node of the harness starts here.
pub fn spawn_node<I, S>(
    home: &Path,
    data_dir: &Path,
    listen: SocketAddr,
    extra: I,
) -> anyhow::Result<(ChildProcess, SocketAddr)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    const LISTENING: &str = "devnet node listening on ";
    let mut cmd = minerd_command(home);
    cmd.arg("devnet-node")
        .args(["--listen", &listen.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "info");
    let process = ChildProcess::spawn("devnet node", cmd)?;
    let line = process.wait_for_line(LISTENING, START_TIMEOUT)?;
    let addr = line
        .split(LISTENING)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("bad address in {line:?}"))?;
    Ok((process, addr))
}

/// A running `minerd devnet-node` on a fresh port, killed (whole group) on drop.
#[derive(Debug)]
pub struct DevnetNode {
    // Declared before `dir`: fields drop in order, so the node dies before its data dir goes.
    process: ChildProcess,
    dir: tempfile::TempDir,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl DevnetNode {
    /// Starts a node in a fresh data dir with `extra` flags (e.g. `--epoch-ms 300`) and
    /// waits for its "devnet node listening on ADDR" line.
    pub fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("e2e-devnet-").tempdir()?;
        Self::start_in(dir, extra)
    }

    /// Starts a node on an existing data dir (e.g. one returned by [`DevnetNode::kill`]).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> anyhow::Result<Self> {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let (process, addr) = spawn_node(dir.path(), dir.path(), listen, extra)?;
        Ok(Self { process, dir, addr })
    }

    /// The node's data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The node's process.
    pub fn process(&self) -> &ChildProcess {
        &self.process
    }

    /// Everything the node wrote to stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Waits (bounded) until the log has a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.process.wait_for_line(needle, timeout).is_ok()
    }

    /// Sends SIGTERM and waits (bounded) for the node to exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.process.terminate(timeout)
    }

    /// Kills the node's process group with SIGKILL (no chance to clean up) and returns its
    /// data dir, for a restart with [`DevnetNode::start_in`].
    pub fn kill(self) -> tempfile::TempDir {
        let Self {
            mut process, dir, ..
        } = self;
        process.kill();
        dir
    }
}
