//! systemd as it is used: the shipped unit passes `systemd-analyze verify`, and the daemon's
//! readiness and stopping notifications reach a real `NOTIFY_SOCKET` listener.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Minerd, MinerdOptions};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../minerd/minerd.service");

/// Runs `systemd-analyze verify` on `unit_text` (with the installed binary path pointed at
/// the built `minerd`, the only change, since verify checks that ExecStart is executable).
/// Returns (success, everything it printed). `None` when the tool is absent outside CI.
fn verify(unit_text: &str) -> Option<(bool, String)> {
    let dir = tempfile::tempdir().unwrap();
    let minerd = e2e::binary("minerd");
    let text = unit_text.replace("/usr/local/bin/minerd", &minerd.to_string_lossy());
    let path = dir.path().join("minerd.service");
    std::fs::write(&path, text).unwrap();
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(out) => {
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // verify exits 0 on some problems (an unparsable value is "ignored"): any
            // output at all is a finding.
            Some((out.status.success() && said.trim().is_empty(), said))
        }
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "systemd-analyze is missing under CI ({e}): .ci/run must install `systemd`"
            );
            eprintln!("SKIPPED: systemd-analyze not installed (apt-get install systemd)");
            None
        }
    }
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let Some((ok, said)) = verify(&unit) else {
        return;
    };
    assert!(ok, "systemd-analyze verify minerd/minerd.service:\n{said}");
    // The check can fail: a unit with a bad value or an unknown directive is caught.
    for broken in [
        unit.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe"),
        unit.replace("Type=notify", "Type=notify\nNoSuchDirective=1"),
    ] {
        let (ok, said) = verify(&broken).unwrap();
        assert!(!ok, "a broken unit passed: {said}");
    }
    // What the unit promises is what the daemon does.
    assert!(unit.contains("Type=notify"));
    assert!(unit.contains("RestartPreventExitStatus=64"));
}

/// Waits for one datagram on `sock` that contains `want`, collecting everything received.
fn wait_for_notification(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == want);
                seen.push(msg);
                if hit {
                    return true;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("NOTIFY_SOCKET receive: {e}"),
        }
    }
    false
}

#[test]
fn readiness_and_stopping_reach_a_real_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut d = Minerd::start_with(MinerdOptions {
        args: vec!["--no-auto-start".into()],
        env: vec![("NOTIFY_SOCKET".into(), path.to_string_lossy().into_owned())],
        ..Default::default()
    })
    .unwrap();
    let mut seen = Vec::new();
    assert!(
        wait_for_notification(&sock, "READY=1", &mut seen),
        "no READY=1: {seen:?}\n{}",
        d.log()
    );
    // READY means the control socket answers.
    d.minerctl_ok(&["status"]).unwrap();
    assert!(
        !seen.iter().any(|m| m.contains("STOPPING=1")),
        "stopping before asked: {seen:?}"
    );
    d.process().signal("-TERM").unwrap();
    assert!(
        wait_for_notification(&sock, "STOPPING=1", &mut seen),
        "no STOPPING=1: {seen:?}\n{}",
        d.log()
    );
    let status = d.wait(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status:?}\n{}", d.log());
}
