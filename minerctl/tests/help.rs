//! Snapshot of `minerctl --help` (and of each command's help): the CLI is an interface, so a
//! change in it should be a reviewed change. Run with `UPDATE_SNAPSHOTS=1` to accept a change.

use std::path::PathBuf;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_minerctl"))
        .args(args)
        .env("COLUMNS", "100")
        .env_remove("SPACETIME_MINER_CONTROL_SOCKET")
        .env_remove("SPACETIME_MINER_CONFIG")
        .env_remove("SPACETIME_MINER_DATA_DIRECTORY")
        .output()
        .expect("run minerctl");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn help_matches_snapshot() {
    // Every command of the top-level help is in the snapshot (none forgotten).
    let mut text = String::new();
    let top = help(&["--help"]);
    text.push_str("$ minerctl --help\n");
    text.push_str(&top);
    let commands = [
        "status",
        "start",
        "stop",
        "create-plot",
        "list-plots",
        "show-plot",
        "delete-plot",
        "check-plot",
        "jobs",
        "cancel-job",
        "events",
        "shutdown",
        "completions",
    ];
    for cmd in commands {
        assert!(top.contains(cmd), "top-level help lacks {cmd}");
        text.push_str(&format!("\n$ minerctl {cmd} --help\n"));
        text.push_str(&help(&[cmd, "--help"]));
    }
    let mut listed: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    listed.sort_unstable();
    let mut want: Vec<&str> = commands.to_vec();
    want.sort_unstable();
    assert_eq!(listed, want, "the snapshot must cover every command");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    assert!(
        want == text,
        "minerctl help changed; review it and run with UPDATE_SNAPSHOTS=1 to accept.\n--- want\n{want}\n--- got\n{text}"
    );
}
