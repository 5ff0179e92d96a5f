//! TLS on the TCP listener (issue 10, row 6): `minerd tls-init` makes a self-signed pair;
//! with it the listener speaks only TLS, to the typed client, minerctl and Python grpcio,
//! and the bearer token is still required; a listener other hosts can reach is refused in
//! clear unless waived. (gRPC-Web over TLS: `grpc_web.rs`.)

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use e2e::tls::TlsFiles;
use e2e::{binary, Home, Minerd, MinerdOptions};
use spacetime_proto::client::{self, Target};
use spacetime_proto::pb;

use crate::clients::{check_dashboard_view, have_grpcio, run_reflection_client};

/// `minerctl --tcp ADDR <extra> status --json` with the daemon's home (and so its
/// miner.yaml) as HOME.
fn minerctl_tcp(home: &Home, addr: &str, extra: &[&str]) -> std::process::Output {
    Command::new(binary("minerctl"))
        .args(["--tcp", addr])
        .args(extra)
        .args(["status", "--json"])
        .env_clear()
        .env("HOME", home.path())
        .output()
        .unwrap()
}

#[tokio::test]
async fn tls_listener_serves_the_typed_client_minerctl_and_grpcio_with_the_token() {
    let home = Home::new().unwrap();
    let tls = TlsFiles::init(&home, &["--name", "miner.test"]).unwrap();
    let mode = std::fs::metadata(&tls.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A second tls-init keeps the pair.
    let before = std::fs::read(&tls.cert).unwrap();
    let again = home.minerd_output(&["tls-init"], &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(&tls.cert).unwrap(), before);

    let d = Minerd::start_in(
        home,
        MinerdOptions {
            args: vec!["--no-auto-start".into()],
            config_yaml: Some(tls.yaml()),
            tcp: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(d.log().contains("(TLS)"), "{}", d.log());
    let addr = d.tcp.clone().unwrap();
    let token = client::read_token_file(&d.home.data_dir().join("minerd.token")).unwrap();
    let target = |token: Option<&str>, tls: Option<client::ClientTls>| Target::Tcp {
        address: addr.clone(),
        token: token.map(str::to_owned),
        tls,
    };

    // The typed client over TLS, with the token.
    let mut c = client::connect(&target(Some(&token), Some(tls.client().unwrap())))
        .await
        .unwrap();
    let status = client::get_status(&mut c).await.unwrap();
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    // The token is still required inside TLS.
    for bad in [None, Some("wrong")] {
        let mut c = client::connect(&target(bad, Some(tls.client().unwrap())))
            .await
            .unwrap();
        let e = c.get_status(pb::GetStatusRequest {}).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    }
    // In clear, nothing is served.
    let plain = async {
        let mut c = client::connect(&target(Some(&token), None)).await?;
        anyhow::Ok(client::get_status(&mut c).await?)
    };
    assert!(plain.await.is_err(), "a plaintext call was answered");
    // A client that trusts another certificate refuses the daemon's.
    let other_home = Home::new().unwrap();
    let other = TlsFiles::init(&other_home, &[]).unwrap();
    let stranger = async {
        let mut c = client::connect(&target(Some(&token), Some(other.client()?))).await?;
        anyhow::Ok(client::get_status(&mut c).await?)
    };
    assert!(
        stranger.await.is_err(),
        "an unknown certificate was trusted"
    );

    // minerctl: on this host the configuration's tlsCertFile is the trust anchor...
    let out = minerctl_tcp(&d.home, &addr, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    // ... or --tls-ca names it; with another certificate it fails.
    let cert = tls.cert.to_str().unwrap();
    let out = minerctl_tcp(&d.home, &addr, &["--tls-ca", cert]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = minerctl_tcp(&d.home, &addr, &["--tls-ca", other.cert.to_str().unwrap()]);
    assert!(!out.status.success());
    // In clear (a home whose configuration has no tlsCertFile): refused, with a hint.
    let token_file = d.home.data_dir().join("minerd.token");
    let out = minerctl_tcp(
        &other_home,
        &addr,
        &["--token-file", token_file.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-ca"), "{err}");
    // The certificate names the host it was made for: verifying another name fails.
    let out = minerctl_tcp(
        &d.home,
        &addr,
        &["--tls-ca", cert, "--tls-server-name", "miner.test"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = minerctl_tcp(
        &d.home,
        &addr,
        &["--tls-ca", cert, "--tls-server-name", "elsewhere.test"],
    );
    assert!(!out.status.success());

    // Python grpcio with ssl_channel_credentials(root_certificates=the certificate).
    if have_grpcio() {
        check_dashboard_view(&run_reflection_client(&addr, Some(&token), Some(&tls.cert)));
        let out = run_reflection_client(&addr, Some("wrong"), Some(&tls.cert));
        assert!(String::from_utf8_lossy(&out.stderr).contains("UNAUTHENTICATED"));
    }
}

#[test]
fn plaintext_tcp_other_hosts_can_reach_is_refused_unless_waived() {
    let home = Home::new().unwrap();
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let out = home.minerd_output(&["--listen-tcp", addr], &[]);
        assert_eq!(out.status.code(), Some(64), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for want in ["in clear", "tls-init", "allowPlaintextTcp", "--listen-tcp"] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }
    // A certificate without its key.
    let out = home.minerd_output(
        &[
            "--listen-tcp",
            "127.0.0.1:0",
            "--set",
            "tlsCertFile=/nonexistent.pem",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tlsKeyFile"));
    // A key file others can read.
    let tls = TlsFiles::init(&home, &[]).unwrap();
    std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let yaml = home.data_dir().join("miner.yaml");
    std::fs::write(&yaml, tls.yaml()).unwrap();
    let out = home.minerd_output(&["--listen-tcp", "127.0.0.1:0"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{out:?}"
    );
}
