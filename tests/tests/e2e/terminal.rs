//! What a user sees on a terminal, driven through tmux (a real pseudo-terminal): the plot
//! progress bar (one percentage, rate and time left, within 80 columns), Ctrl-C during
//! `create-plot` asking whether to cancel the job, and the `delete-plot` question.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{binary, Minerd};

const WAIT: Duration = Duration::from_secs(60);

/// A tmux server of its own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            // CI installs tmux (.ci/run); elsewhere the test says why it did not run.
            assert!(
                std::env::var_os("CI").is_none(),
                "tmux is required in CI (installed by .ci/run)"
            );
            eprintln!("tmux not installed: terminal test skipped");
            return None;
        }
        let t = Tmux {
            socket: format!("e2e-{}-{}", std::process::id(), rand_suffix()),
        };
        // The pane outlives the command, so its last screen can be read.
        let status = t
            .cmd(&["new-session", "-d", "-s", "t", "-x", "80", "-y", "24"])
            .arg(format!("{cmd}; echo \"[exit $?]\"; sleep 600"))
            .status()
            .unwrap();
        assert!(status.success());
        Some(t)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]).args(args);
        c
    }

    fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().unwrap().success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

/// The screen without line breaks: messages longer than 80 columns wrap.
fn flat(s: &str) -> String {
    s.replace('\n', "")
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn minerctl_line(d: &Minerd, args: &str) -> String {
    format!(
        "env -i HOME={} TERM=xterm {} --socket {} {args}",
        d.home.path().display(),
        binary("minerctl").display(),
        d.home.socket().display()
    )
}

#[test]
fn progress_bar_and_ctrl_c_on_a_terminal() {
    let d = Minerd::start().unwrap();
    // 2 GB: long enough to see the bar; the job is cancelled from the prompt.
    let Some(t) = Tmux::start(&minerctl_line(&d, "create-plot --size 2")) else {
        return;
    };
    let s = t.wait_for("the progress bar", |s| {
        s.contains("leaves/s") && s.contains("ETA")
    });
    assert!(s.starts_with("plot job "), "the job id comes first:\n{s}");
    let bar = s
        .lines()
        .find(|l| l.contains("leaves/s"))
        .unwrap()
        .trim_end()
        .to_owned();
    assert!(bar.chars().count() <= 80, "wider than 80 columns: {bar:?}");
    assert_eq!(bar.matches('%').count(), 1, "one percentage: {bar:?}");
    t.keys(&["C-c"]);
    let s = t.wait_for("the question", |s| s.contains("Cancel plot job"));
    assert!(flat(&s).contains("leave it running"), "{s}");
    t.keys(&["y", "Enter"]);
    let s = t.wait_for("the end", |s| s.contains("[exit "));
    assert!(
        flat(&s).contains("cancelled; its partial file was removed"),
        "{s}"
    );
    assert!(s.contains("[exit 130]"), "{s}");
    let jobs = d.minerctl_json(&["jobs", "--json"]).unwrap();
    assert_eq!(jobs, serde_json::json!([]));
    assert!(e2e::list_files(&d.home.plot_dir()).is_empty());
}

#[test]
fn ctrl_c_can_leave_the_job_running_and_delete_plot_asks() {
    let d = Minerd::start().unwrap();
    let Some(t) = Tmux::start(&minerctl_line(&d, "create-plot --size 0.5")) else {
        return;
    };
    t.wait_for("the progress bar", |s| s.contains("leaves/s"));
    t.keys(&["C-c"]);
    t.wait_for("the question", |s| s.contains("Cancel plot job"));
    t.keys(&["n", "Enter"]);
    let s = t.wait_for("the end", |s| s.contains("[exit "));
    assert!(flat(&s).contains("keeps running in the daemon"), "{s}");
    assert!(s.contains("[exit 0]"), "{s}");
    // The job goes on and registers its plot.
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let plots = d.minerctl_json(&["list-plots", "--json"]).unwrap();
        if let Some(p) = plots.as_array().and_then(|a| a.first()) {
            if p["state"] == "valid" {
                break p["plotId"].as_str().unwrap().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the plot never finished: {plots}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(t);

    // delete-plot on a terminal: shows, asks; "n" keeps it.
    let t = Tmux::start(&minerctl_line(&d, &format!("delete-plot {id}"))).unwrap();
    let s = t.wait_for("the question", |s| s.contains("Remove it? [y/N]"));
    assert!(s.contains("This removes plot"), "{s}");
    t.keys(&["n", "Enter"]);
    let s = t.wait_for("the end", |s| s.contains("[exit "));
    assert!(
        s.contains("nothing was removed") && s.contains("[exit 1]"),
        "{s}"
    );
    drop(t);
    let t = Tmux::start(&minerctl_line(&d, &format!("delete-plot {id}"))).unwrap();
    t.wait_for("the question", |s| s.contains("Remove it? [y/N]"));
    t.keys(&["y", "Enter"]);
    let s = t.wait_for("the end", |s| s.contains("[exit "));
    assert!(s.contains("removed") && s.contains("[exit 0]"), "{s}");
    assert_eq!(
        d.minerctl_json(&["list-plots", "--json"]).unwrap(),
        serde_json::json!([])
    );
}
