//! The daemon and its mining switch: `start [--daemon]`, `stop [--shutdown]`, `shutdown`.

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use spacetime_proto::client::{self, ConnectError, MinerClient, Target};
use spacetime_proto::pb;

use crate::conn::ConnArgs;
use crate::output;
use crate::{CmdResult, Failure, EXIT_UNAVAILABLE};

/// How long `start --daemon` waits for a new minerd to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `shutdown` waits for the daemon to be gone.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The log file of a daemon started by `start --daemon`, in its data directory.
pub const LOG_FILE: &str = "minerd.log";
/// The daemon's lock file in its data directory: it holds the daemon's pid.
pub const LOCK_FILE: &str = "minerd.lock";

/// Options of `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Run minerd in the background if none is running: it is found next to minerctl or on
    /// PATH, logs to <data dir>/minerd.log, its pid is in <data dir>/minerd.lock; minerctl
    /// waits until it answers, then enables mining
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// Options of `stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Also shut the daemon down (as `minerctl shutdown`), waiting until it has exited
    #[arg(long)]
    pub shutdown: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// Options of `shutdown`.
#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// A daemon started by `start --daemon`.
struct Spawned {
    pid: u32,
    log: PathBuf,
    lock: PathBuf,
}

/// Enables mining, first starting a daemon with `--daemon` when none answers.
pub async fn start(conn_args: &ConnArgs, a: &StartArgs, debug: bool) -> CmdResult {
    let resolved = conn_args.resolve()?;
    if debug {
        eprintln!("minerctl: connecting to {}", resolved.target);
    }
    let mut spawned = None;
    let mut c = match client::connect(&resolved.target).await {
        Ok(c) => c,
        Err(ConnectError::Unreachable { .. }) if a.daemon => {
            let Target::Unix(socket) = &resolved.target else {
                return Err(Failure::usage(
                    "--daemon starts a local minerd; it cannot start one behind --tcp",
                ));
            };
            let s = spawn_minerd(conn_args, &resolved.data_dir)?;
            let c = wait_ready(&resolved.target, socket, &s).await?;
            spawned = Some(s);
            c
        }
        Err(e @ ConnectError::Unreachable { .. }) => {
            return Err(Failure {
                code: EXIT_UNAVAILABLE,
                message: format!(
                    "{}\nno minerd answers there: start one in the background with \
                     `minerctl start --daemon`, or run `minerd` in a terminal",
                    crate::error_chain(&e)
                ),
            })
        }
        Err(e) => return Err(Failure::usage(crate::error_chain(&e))),
    };
    let r = c
        .start_mining(pb::StartMiningRequest {})
        .await?
        .into_inner();
    if a.json {
        output::print_json(&json!({
            "miningEnabled": true,
            "changed": r.changed,
            "daemonStarted": spawned.is_some(),
            "pid": spawned.as_ref().map(|s| s.pid),
            "logFile": spawned.as_ref().map(|s| s.log.display().to_string()),
        }));
        return Ok(());
    }
    if let Some(s) = &spawned {
        outln!(
            "minerd started in the background (pid {}, recorded in {}); log: {}",
            s.pid,
            s.lock.display(),
            s.log.display()
        );
    } else if a.daemon {
        outln!("minerd is already running");
    }
    outln!(
        "{}",
        if r.changed {
            "mining enabled"
        } else {
            "mining was already enabled"
        }
    );
    Ok(())
}

/// The `minerd` binary: beside this `minerctl`, else the first on PATH.
fn find_minerd() -> Result<PathBuf, Failure> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("minerd")))
        .filter(|p| p.is_file());
    if let Some(p) = beside {
        return Ok(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("minerd"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Failure::other(
                "cannot find minerd: it is neither next to minerctl nor on PATH \
                 (build it with `cargo build --release -p minerd`)",
            )
        })
}

/// The daemon's log file, for appending: created 0600, never opened through a symbolic
/// link (so a link planted at that name cannot make minerctl write into another file) and
/// only if it is a regular file.
fn open_log(log: &Path) -> Result<std::fs::File, Failure> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(log)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Failure::other(format!(
                    "{} is a symbolic link: the daemon's log is not written through one \
                     (remove it, or use another --data-dir)",
                    log.display()
                ))
            } else {
                Failure::other(format!("cannot open {}: {e}", log.display()))
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Failure::other(format!("cannot open {}: {e}", log.display())))?;
    if !meta.is_file() {
        return Err(Failure::other(format!(
            "{} is not a regular file: the daemon's log is not written to it",
            log.display()
        )));
    }
    Ok(file)
}

fn spawn_minerd(conn_args: &ConnArgs, data_dir: &Path) -> Result<Spawned, Failure> {
    let minerd = find_minerd()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| {
            Failure::other(format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            ))
        })?;
    let log = data_dir.join(LOG_FILE);
    let file = open_log(&log)?;
    let err = file
        .try_clone()
        .map_err(|e| Failure::other(format!("cannot open {}: {e}", log.display())))?;
    let mut cmd = Command::new(&minerd);
    cmd.args(conn_args.minerd_args())
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        // Its own process group: a Ctrl-C in this terminal does not reach it.
        .process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| Failure::other(format!("cannot start {}: {e}", minerd.display())))?;
    Ok(Spawned {
        pid: child.id(),
        log,
        lock: data_dir.join(LOCK_FILE),
    })
}

/// The last `n` lines of the log (what a failed start said).
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether process `pid` still exists (and is not a zombie we could reap).
fn alive(pid: u32) -> bool {
    // A child that exited stays a zombie until minerctl ends: that counts as gone.
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

async fn wait_ready(target: &Target, socket: &Path, s: &Spawned) -> Result<MinerClient, Failure> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if socket.exists() {
            if let Ok(mut c) = client::connect(target).await {
                if c.get_status(pb::GetStatusRequest {}).await.is_ok() {
                    return Ok(c);
                }
            }
        }
        if !alive(s.pid) {
            return Err(Failure::other(format!(
                "minerd (pid {}) exited during start-up; the end of {}:\n{}",
                s.pid,
                s.log.display(),
                log_tail(&s.log, 20)
            )));
        }
        if Instant::now() >= deadline {
            return Err(Failure {
                code: EXIT_UNAVAILABLE,
                message: format!(
                    "minerd (pid {}) did not answer on {} within {} s; see {}",
                    s.pid,
                    socket.display(),
                    READY_TIMEOUT.as_secs(),
                    s.log.display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Disables mining; with `--shutdown` ends the daemon too.
pub async fn stop(c: &mut MinerClient, target: &Target, a: &StopArgs) -> CmdResult {
    if a.shutdown {
        return shutdown(c, target, &ShutdownArgs { json: a.json }).await;
    }
    let r = c.stop_mining(pb::StopMiningRequest {}).await?.into_inner();
    if a.json {
        output::print_json(&json!({"miningEnabled": false, "changed": r.changed}));
    } else {
        outln!(
            "{}",
            if r.changed {
                "mining disabled (minerd keeps running; `minerctl stop --shutdown` ends it)"
            } else {
                "mining was already disabled"
            }
        );
    }
    Ok(())
}

/// Asks the daemon to shut down and waits until its socket no longer answers.
pub async fn shutdown(c: &mut MinerClient, target: &Target, a: &ShutdownArgs) -> CmdResult {
    let status = c
        .get_status(pb::GetStatusRequest {})
        .await
        .ok()
        .and_then(|r| r.into_inner().status);
    c.shutdown(pb::ShutdownRequest {}).await?;
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let mut gone = false;
    while Instant::now() < deadline {
        match client::connect(target).await {
            Ok(mut probe) => {
                if probe.get_status(pb::GetStatusRequest {}).await.is_err() {
                    gone = true;
                    break;
                }
            }
            Err(_) => {
                gone = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if a.json {
        output::print_json(&json!({
            "shutdown": true,
            "exited": gone,
            "version": status.as_ref().map(|s| s.version.clone()),
        }));
    } else if gone {
        outln!("minerd has shut down");
    } else {
        outln!(
            "minerd is shutting down (still answering after {} s)",
            EXIT_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_never_written_through_a_link_or_into_a_non_file() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"not minerd's").unwrap();
        let log = dir.path().join(LOG_FILE);
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        let err = open_log(&log).unwrap_err();
        assert!(format!("{err:?}").contains("symbolic link"), "{err:?}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"not minerd's");

        std::fs::remove_file(&log).unwrap();
        std::fs::create_dir(&log).unwrap();
        assert!(open_log(&log).is_err());

        std::fs::remove_dir(&log).unwrap();
        let file = open_log(&log).unwrap();
        drop(file);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
