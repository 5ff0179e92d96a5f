//! Harness for the devnet node: [`spawn_node`] runs `minerd devnet-node` on loopback (a
//! [`ChildProcess`]: own process group, killed on drop); the one wrapper around it is
//! [`crate::mining::DevnetNode`]. The raw wire peer for talking to a node is the devnet
//! crate's test kit ([`WirePeer`], re-exported here).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;

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
