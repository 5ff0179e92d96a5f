//! Hostile peers against the control listeners (issue 10, row 5): more silent TCP
//! connections than the daemon has descriptors must not stop the Unix socket from answering,
//! nor make the daemon spin a core, and the TCP listener recovers once they are gone.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::process::{cpu_time, open_fds, raise_own_fd_limit};
use e2e::{binary, wait_until, Minerd, MinerdOptions};

/// The daemon's open-file limit in this test (soft = hard, so it cannot raise it).
const NOFILE: u64 = 1024;
/// Silent connections opened: more than the daemon has descriptors.
const HOSTILE: usize = 1200;

/// Runs `minerctl <conn> status --json` against `d` (over its Unix socket when `conn` is
/// empty), killed after `deadline`; returns whether it succeeded, how long it took and its
/// stderr.
pub fn timed_status(d: &Minerd, conn: &[&str], deadline: Duration) -> (bool, Duration, String) {
    let started = Instant::now();
    let socket = d.home.socket();
    let unix = ["--socket", socket.to_str().unwrap()];
    let mut child = Command::new(binary("minerctl"))
        .args(if conn.is_empty() { &unix[..] } else { conn })
        .args(["status", "--json"])
        .env_clear()
        .env("HOME", d.home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until(deadline, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let took = started.elapsed();
    match status {
        Some(s) => {
            let out = child.wait_with_output().unwrap();
            (
                s.success(),
                took,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        None => {
            let _ = child.kill();
            let _ = child.wait();
            (false, took, "timed out".into())
        }
    }
}

#[test]
fn silent_tcp_connections_beyond_the_descriptor_limit_leave_the_unix_socket_answering() {
    raise_own_fd_limit();
    let d = Minerd::start_with(MinerdOptions {
        args: vec!["--no-auto-start".into()],
        tcp: true,
        nofile: Some(NOFILE),
        ..Default::default()
    })
    .unwrap();
    let addr: SocketAddr = d.tcp.clone().unwrap().parse().unwrap();
    let baseline_fds = open_fds(d.pid()).unwrap();

    // Connections that never send a byte. Once the kernel's backlog is full (a daemon that
    // no longer accepts), connects time out: stop there.
    let mut hostile = Vec::new();
    let mut last_error = None;
    let t0 = Instant::now();
    while hostile.len() < HOSTILE {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => hostile.push(s),
            Err(e) => {
                last_error = Some(e);
                break;
            }
        }
    }
    eprintln!("{} connects in {:?}", hostile.len(), t0.elapsed());
    assert!(
        hostile.len() >= 1000,
        "only {} connects: {last_error:?}",
        hostile.len()
    );

    // The Unix socket answers, quickly, every time.
    for _ in 0..5 {
        let (ok, took, err) = timed_status(&d, &[], Duration::from_secs(5));
        assert!(
            ok && took < Duration::from_secs(3),
            "{took:?} {err}\n{}",
            d.log()
        );
    }
    // The daemon holds at most its cap of TCP connections, and does not spin: under a
    // tenth of a core over two seconds while the connections stay open.
    let fds = open_fds(d.pid()).unwrap();
    assert!(
        fds <= baseline_fds + 256 + 8,
        "{fds} descriptors open (baseline {baseline_fds})"
    );
    let cpu0 = cpu_time(d.pid()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_time(d.pid()).unwrap() - cpu0;
    assert!(cpu < Duration::from_millis(200), "{cpu:?} of CPU in 2 s");
    assert!(d.log().contains("connection cap"), "{}", d.log());

    // The silent ones are closed after the handshake deadline (10 s): the TCP listener
    // then serves a well-behaved client again, while the hostile sockets are still open on
    // our side.
    let token_file = d.home.data_dir().join("minerd.token");
    let tcp_args = [
        "--tcp",
        &addr.to_string(),
        "--token-file",
        token_file.to_str().unwrap(),
    ];
    let mut last = None;
    let back = wait_until(Duration::from_secs(30), || {
        let r = timed_status(&d, &tcp_args, Duration::from_secs(5));
        let ok = r.0;
        last = Some(r);
        ok
    });
    eprintln!(
        "tcp answered again {:?} after the connects: {last:?}",
        t0.elapsed()
    );
    assert!(
        back,
        "the TCP listener never recovered: {last:?}\n{}",
        d.log()
    );
    drop(hostile);
}
