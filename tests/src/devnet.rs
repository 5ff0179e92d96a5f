//! Harness for the devnet node: runs `minerd devnet-node` on loopback in a temporary data
//! dir (a [`ChildProcess`]: own process group, killed on drop), and a raw wire peer built on
//! `spacetime::wire` for talking to it.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context as _};
use spacetime::wire::{
    user_agent, Handshake, Message, MessageDecoder, NewEpoch, WireError, MAX_FRAME_LENGTH,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{minerd_command, ChildProcess, START_TIMEOUT};

/// The Development network id.
pub const DEVNET: &str = "spacetime-devnet-local";

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

/// How a receive ended without a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvEnd {
    /// The node closed the connection.
    Closed,
    /// Nothing arrived in time.
    Timeout,
}

/// A raw peer speaking the wire protocol.
#[derive(Debug)]
pub struct WirePeer {
    stream: TcpStream,
    decoder: MessageDecoder,
}

impl WirePeer {
    /// Connects (TCP_NODELAY, as decisions D9 asks).
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            decoder: MessageDecoder::new(MAX_FRAME_LENGTH),
        })
    }

    /// Connects and completes the version-2 handshake on `network`; returns the first
    /// NewEpoch.
    pub async fn handshaken(addr: SocketAddr, network: &str) -> anyhow::Result<(Self, NewEpoch)> {
        let mut p = Self::connect(addr).await?;
        p.send(&handshake(2, network)).await?;
        match p.recv(Duration::from_secs(5)).await {
            Ok(Message::Handshake(_)) => {}
            other => bail!("expected Handshake, got {other:?}"),
        }
        match p.recv(Duration::from_secs(5)).await {
            Ok(Message::HandshakeAck) => {}
            other => bail!("expected HandshakeAck, got {other:?}"),
        }
        p.send(&Message::HandshakeAck).await?;
        match p.recv(Duration::from_secs(5)).await {
            Ok(Message::NewEpoch(e)) => Ok((p, e)),
            other => bail!("expected NewEpoch, got {other:?}"),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, m: &Message) -> std::io::Result<()> {
        self.send_raw(&m.encode()).await
    }

    /// Sends raw bytes (garbage, hostile lengths).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next message within `limit`.
    pub async fn recv(&mut self, limit: Duration) -> Result<Message, RecvEnd> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => {
                    return Ok(m);
                }
                Ok(None) => {}
                // A node that sends bad frames is a failure of the node; report it loudly.
                Err(WireError::Frame(e)) => panic!("node sent a bad frame: {e}"),
                Err(WireError::Message { error, .. }) => panic!("node sent a bad message: {error}"),
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(RecvEnd::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(RecvEnd::Closed),
                Ok(Ok(n)) => self.decoder.extend(&chunk[..n]),
            }
        }
    }

    /// Skips messages until one matches `pred`, within `limit` overall.
    pub async fn recv_until(
        &mut self,
        limit: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> Result<Message, RecvEnd> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await?;
            if pred(&m) {
                return Ok(m);
            }
        }
    }

    /// Reads until the node closes (within `limit`); returns what arrived on the way, or
    /// `Err` with it when the node kept the connection open.
    pub async fn until_closed(&mut self, limit: Duration) -> Result<Vec<Message>, Vec<Message>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Ok(m) => seen.push(m),
                Err(RecvEnd::Closed) => return Ok(seen),
                Err(RecvEnd::Timeout) => return Err(seen),
            }
        }
    }
}

/// A Handshake of `version` on `network`.
pub fn handshake(version: i32, network: &str) -> Message {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Message::Handshake(Handshake {
        protocol_version: version,
        timestamp: i64::try_from(now).unwrap_or(i64::MAX),
        node_id: "e2e-peer".into(),
        user_agent: user_agent("e2e", "0", network),
    })
}

/// The reason of the first Error among `messages`.
pub fn error_reason(messages: &[Message]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        Message::Error(r) => Some(r.as_str()),
        _ => None,
    })
}
