//! The one child-process wrapper of the harness: every daemon and node the tests start runs
//! through [`ChildProcess`].
//!
//! * It runs in its own process group, so a drop (also on a failed assertion) kills the
//!   process and anything it started, and a test never leaks a daemon.
//! * Its stderr is read line by line on a thread into a shared buffer: tests wait for a line
//!   ([`ChildProcess::wait_for_line`]) instead of sleeping, and failure messages carry the
//!   whole log ([`ChildProcess::log`]). `E2E_SHOW_LOGS=1` also echoes each line, prefixed
//!   with the process name.
//! * stdin and stdout are `/dev/null`: the binaries log to stderr only.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::wait_until;

/// What the stderr reader has collected so far.
#[derive(Debug, Default)]
struct Stderr {
    lines: Vec<String>,
    /// The reader hit end of file: the process (group) closed stderr, so no line will come.
    closed: bool,
}

/// The buffer shared with the reader thread; the condvar signals every new line and the end.
#[derive(Debug, Default)]
struct Shared {
    stderr: Mutex<Stderr>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Stderr> {
        // A panicking test thread must not hide the log from the next failure message.
        self.stderr.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A spawned binary in its own process group, its stderr captured line by line; the group
/// is killed with SIGKILL on drop unless the process was already reaped.
#[derive(Debug)]
pub struct ChildProcess {
    /// Names the process in log echoes and error messages ("minerd", "devnet node").
    name: String,
    /// `None` once the process has been reaped (by [`ChildProcess::wait`] or a kill).
    child: Option<Child>,
    /// The pid, kept after reaping for error messages.
    pid: u32,
    shared: Arc<Shared>,
}

impl ChildProcess {
    /// Spawns `cmd` in a new process group with stdin and stdout on `/dev/null` and stderr
    /// captured; `name` labels it in messages.
    pub fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        // From here on a failure drops `me`, which kills the group: nothing is left running.
        let mut me = Self {
            name: name.to_owned(),
            pid: child.id(),
            child: Some(child),
            shared: Arc::new(Shared::default()),
        };
        let stderr = me
            .child
            .as_mut()
            .and_then(|c| c.stderr.take())
            .with_context(|| format!("{name} has no stderr pipe"))?;
        let shared = me.shared.clone();
        let prefix = me.name.clone();
        let reader = move || {
            let echo = std::env::var_os("E2E_SHOW_LOGS").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[{prefix}] {line}");
                }
                shared.lock().lines.push(line);
                shared.changed.notify_all();
            }
            shared.lock().closed = true;
            shared.changed.notify_all();
        };
        std::thread::Builder::new()
            .name(format!("{name} stderr"))
            .spawn(reader)
            .context("starting the stderr reader thread")?;
        Ok(me)
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has been reaped (it exited and was waited for, or was killed).
    pub fn reaped(&self) -> bool {
        self.child.is_none()
    }

    /// Every stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        self.shared.lock().lines.clone()
    }

    /// Everything written to stderr so far, one line per line: for failure messages.
    pub fn log(&self) -> String {
        self.shared.lock().lines.join("\n")
    }

    /// The first stderr line (from the start of the log) containing `pattern`, waiting up to
    /// `timeout` for it. Fails early when stderr closes (the process exited) without it;
    /// both errors carry the log.
    pub fn wait_for_line(&self, pattern: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let mut out = self.shared.lock();
        let mut scanned = 0;
        loop {
            if let Some(line) = out.lines[scanned..].iter().find(|l| l.contains(pattern)) {
                return Ok(line.clone());
            }
            scanned = out.lines.len();
            if out.closed {
                bail!(
                    "{} (pid {}) closed stderr without printing {pattern:?}; log:\n{}",
                    self.name,
                    self.pid,
                    out.lines.join("\n")
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} (pid {}) printed no line with {pattern:?} within {timeout:?}; log:\n{}",
                    self.name,
                    self.pid,
                    out.lines.join("\n")
                );
            }
            out = self
                .shared
                .changed
                .wait_timeout(out, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sends `signal` (a `kill` option such as `-TERM`) to the process itself (not its
    /// group): what an operator or a service manager does.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        if self.reaped() {
            bail!("{} (pid {}) was already reaped", self.name, self.pid);
        }
        let status = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!(
                "kill {signal} {} ({}) failed: {status}",
                self.pid,
                self.name
            );
        }
        Ok(())
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.signal("-TERM")?;
        self.wait(timeout)
    }

    /// Waits (bounded) for the process to exit by itself and reaps it.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .with_context(|| format!("{} (pid {}) was already reaped", self.name, self.pid))?;
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
                "{} did not exit within {timeout:?}; log:\n{}",
                self.name,
                self.log()
            ),
        }
    }

    /// Kills the whole process group with SIGKILL (no chance to clean up) and reaps the
    /// process; a no-op once it was reaped (its pid may belong to someone else by then).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            // In case `kill` itself could not run: at least the leader goes.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Raises this process's open-file limit to its hard limit (children inherit it): a test
/// that opens one descriptor per hostile connection needs more than the usual 1024.
pub fn raise_own_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// CPU time (user + system, all threads) that process `pid` has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name in parentheses (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f
        .get(11)
        .zip(f.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .context("malformed /proc stat")?;
    // SAFETY: sysconf only reads a system constant.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn waits_for_a_line_and_keeps_the_log() {
        let mut p = ChildProcess::spawn("sh", sh("echo one >&2; echo 'two: x' >&2; exec sleep 30"))
            .unwrap();
        let line = p.wait_for_line("two:", Duration::from_secs(10)).unwrap();
        assert_eq!(line, "two: x");
        // Earlier lines still match: the search starts at the beginning of the log.
        assert_eq!(
            p.wait_for_line("one", Duration::from_secs(1)).unwrap(),
            "one"
        );
        assert_eq!(p.log(), "one\ntwo: x");
        assert_eq!(p.lines(), ["one", "two: x"]);
        let status = p.terminate(Duration::from_secs(10)).unwrap();
        assert!(!status.success(), "killed by SIGTERM: {status:?}");
        assert!(p.reaped());
        assert!(
            p.signal("-TERM").is_err(),
            "a reaped pid is never signalled"
        );
    }

    #[test]
    fn a_missing_line_fails_fast_when_the_process_exits() {
        let mut p = ChildProcess::spawn("sh", sh("echo bye >&2; exit 3")).unwrap();
        let started = Instant::now();
        let err = p
            .wait_for_line("never", Duration::from_secs(20))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let msg = format!("{err:#}");
        assert!(
            msg.contains("closed stderr") && msg.contains("bye"),
            "{msg}"
        );
        assert_eq!(p.wait(Duration::from_secs(10)).unwrap().code(), Some(3));
    }

    #[test]
    fn a_missing_line_times_out_with_the_log() {
        let p = ChildProcess::spawn("sh", sh("echo waiting >&2; exec sleep 30")).unwrap();
        let err = p
            .wait_for_line("never", Duration::from_millis(300))
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("within") && msg.contains("waiting"), "{msg}");
    }

    #[test]
    fn kill_takes_the_whole_group() {
        // The grandchild `sleep` holds stderr open: only a group kill lets the reader end.
        let mut p = ChildProcess::spawn("sh", sh("sleep 30 & echo started >&2; wait")).unwrap();
        p.wait_for_line("started", Duration::from_secs(10)).unwrap();
        p.kill();
        assert!(p.reaped());
        let ended = wait_until(Duration::from_secs(10), || p.shared.lock().closed);
        assert!(ended, "a process of the group survived the kill");
    }
}
