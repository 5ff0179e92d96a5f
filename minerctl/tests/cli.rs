//! minerctl behaviour that needs no daemon: completions, a closed stdout, an absent daemon.

use std::os::unix::net::UnixStream;
use std::process::{Command, Output, Stdio};

fn minerctl(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_minerctl"));
    let home = std::env::temp_dir().join("minerctl-cli-test-home-that-does-not-exist");
    c.args(args)
        .env_clear()
        .env("HOME", home)
        .stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    minerctl(args).output().expect("run minerctl")
}

#[test]
fn completions_cover_every_command_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for cmd in [
            "create-plot",
            "list-plots",
            "delete-plot",
            "start",
            "status",
        ] {
            assert!(script.contains(cmd), "{shell} completion lacks {cmd}");
        }
        assert!(
            script.contains("cache-levels"),
            "{shell} completion lacks flags"
        );
    }
    let out = run(&["completions", "powershell-of-doom"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_closed_stdout_ends_quietly_with_exit_0() {
    // stdout is a socket whose other end is already closed: the first write fails with
    // EPIPE, as with `minerctl ... | head` once head has exited.
    let (ours, theirs) = UnixStream::pair().unwrap();
    drop(ours);
    let out = minerctl(&["completions", "bash"])
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn no_daemon_is_exit_69_with_how_to_start_one() {
    for args in [&["status"][..], &["start"][..], &["list-plots", "-v"][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(69), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("minerctl start --daemon"), "{args:?}: {err}");
    }
}

#[test]
fn flags_are_checked_before_anything_is_sent() {
    let code = |args: &[&str]| run(args).status.code();
    assert_eq!(code(&["check-plot", "x.plot", "--samples", "0"]), Some(64));
    assert_eq!(code(&["create-plot", "--size", "ten"]), Some(64));
    assert_eq!(
        code(&["create-plot", "--size", "1", "--leaves", "5"]),
        Some(64)
    );
    assert_eq!(
        code(&["create-plot", "--cache", "--cache-levels", "0"]),
        Some(64)
    );
    assert_eq!(code(&["create-plot", "-o", "plot.txt"]), Some(64));
    assert_eq!(code(&["-c", "/nonexistent/miner.yaml", "status"]), Some(64));
}
