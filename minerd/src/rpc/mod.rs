//! The gRPC control plane: listeners, access control, and the one error mapping.
//!
//! * Unix socket (always): `controlSocket`, mode 0600, inside the 0700 data directory. A socket
//!   file left by a crashed daemon is removed after checking that nothing answers on it.
//! * TCP (optional, `listenTcp`): every call needs `authorization: Bearer <token>`, the token
//!   being the content of `tokenFile` (created 0600 with 256 random bits if absent). The TCP
//!   listener also speaks gRPC-Web (HTTP/1.1 and HTTP/2, `application/grpc-web[-text]`), so a
//!   browser can call every unary and server-streaming method with the same token; CORS
//!   answers only the origins of `grpcWebOrigins` (none by default).
//! * Both serve `spacetime.miner.v1.MinerService`, `grpc.health.v1.Health` (SERVING while the
//!   daemon runs) and server reflection, both v1 and v1alpha (grpcurl asks v1; Python's
//!   `grpcio-reflection` and many other clients only speak v1alpha).
//! * The Unix socket accepts the `:authority` gRPC core and grpc-java send for Unix sockets
//!   (see [`authority`]).
//! * TLS (`tlsCertFile`, `tlsKeyFile`) on the TCP listener, required for addresses other
//!   hosts can reach unless `allowPlaintextTcp` (see [`tls`]).
//! * Hostile peers are bounded ([`listen`]): a connection cap per listener (the Unix socket
//!   has its own), a deadline for the first bytes or the TLS handshake, accept errors that
//!   back off; and per connection ([`server_builder`]): concurrent streams, header list
//!   size, HTTP/2 keepalive, a deadline for every response to start.

pub mod authority;
pub mod convert;
mod errors;
pub mod listen;
pub mod service;
pub mod tls;

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use spacetime_proto::pb::miner_service_server::MinerServiceServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Server;
use tonic::Status;

use crate::context::Daemon;
use crate::files::set_owner_only;
use crate::shutdown::{drain, GRACE};
pub use errors::map_error;
pub use service::MinerRpc;

/// Checks `authorization: Bearer <token>` on every TCP call (constant-time comparison).
#[derive(Clone)]
pub struct RequireToken {
    token: Arc<[u8]>,
}

impl std::fmt::Debug for RequireToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequireToken(<redacted>)")
    }
}

impl RequireToken {
    /// Requires `token`.
    pub fn new(token: &str) -> Self {
        Self {
            token: token.as_bytes().into(),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for RequireToken {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let ok = req
            .metadata()
            .get(spacetime_proto::client::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), &self.token));
        if ok {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "missing or invalid bearer token (see tokenFile in the daemon's data directory)",
            ))
        }
    }
}

/// CORS for gRPC-Web from browsers: only `origins` are allowed (none when empty: then no
/// cross-origin page can read a response), with the headers a gRPC-Web client sends and
/// the gRPC status headers exposed to it.
fn cors_layer(origins: &[&str]) -> tower_http::cors::CorsLayer {
    use http::header::{HeaderName, HeaderValue};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([http::Method::POST, http::Method::OPTIONS])
        .allow_headers(
            [
                "authorization",
                "content-type",
                "x-grpc-web",
                "x-user-agent",
                "grpc-timeout",
            ]
            .map(HeaderName::from_static),
        )
        .expose_headers(
            ["grpc-status", "grpc-message", "grpc-status-details-bin"].map(HeaderName::from_static),
        )
        .max_age(std::time::Duration::from_secs(600))
}

/// Reads the token file, or creates it (0600) with a random 256-bit token. A token file that
/// group or others can read is refused.
pub fn load_or_create_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::metadata(path) {
        Ok(md) => {
            let mode = md.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "token file {} has mode {mode:04o}: group/others may read it; run `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {}", path.display()))?
                .trim()
                .to_owned();
            if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
                anyhow::bail!(
                    "token file {} must hold one printable token",
                    path.display()
                );
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = hex::encode(rand::random::<[u8; 32]>());
            // Created whole or not at all (0600): a crash never leaves an empty token file.
            spacetime::atomic_file::write_atomic_new(path, format!("{token}\n").as_bytes())
                .with_context(|| format!("creating token file {}", path.display()))?;
            tracing::info!(path = %path.display(), "created the TCP bearer token file");
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("reading token file {}", path.display())),
    }
}

/// Removes a socket file left by a crashed daemon; refuses when something answers on it or
/// when the path is not a socket.
async fn clear_stale_socket(path: &Path) -> anyhow::Result<()> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
    };
    if !md.file_type().is_socket() {
        anyhow::bail!(
            "{} exists and is not a socket; refusing to replace it (set controlSocket elsewhere)",
            path.display()
        );
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        anyhow::bail!(
            "another process is listening on {}; is another minerd running with a different data directory?",
            path.display()
        );
    }
    tracing::info!(path = %path.display(), "removing stale control socket");
    std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))
}

/// Streams one HTTP/2 connection may have open at once (a client needs a few).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Largest request header list (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`); gRPC clients send
/// well under 8 KiB.
pub const MAX_HEADER_LIST: u32 = 16 * 1024;
/// HTTP/2 ping interval, and how long a ping may go unanswered before the connection is
/// closed: a vanished peer frees its slot within 40 s.
pub const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(10));
/// A response must start within this (a client's shorter `grpc-timeout` wins). Streaming
/// calls (events, plot progress, checks) start at once and then run as long as they need:
/// the deadline covers the response headers, not the stream.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP/2 limits and timeouts both listeners share.
pub fn server_builder() -> Server {
    Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST)
        .http2_keepalive_interval(Some(KEEPALIVE.0))
        .http2_keepalive_timeout(Some(KEEPALIVE.1))
        .timeout(REQUEST_TIMEOUT)
}

/// The running listeners.
#[derive(Debug)]
pub struct Servers {
    tasks: Vec<(String, JoinHandle<Result<(), tonic::transport::Error>>)>,
    stop: CancellationToken,
    socket: PathBuf,
    health: tonic_health::server::HealthReporter,
    /// The bound TCP address, if any (useful with port 0).
    pub tcp: Option<SocketAddr>,
}

impl Servers {
    /// Marks the service NOT_SERVING, stops accepting, waits for in-flight calls (bounded),
    /// and removes the socket file.
    pub async fn stop(self) {
        self.health
            .set_not_serving::<MinerServiceServer<MinerRpc>>()
            .await;
        self.stop.cancel();
        for (name, task) in self.tasks {
            drain(&name, GRACE, async {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(listener = %name, error = %e, "listener failed"),
                    Err(e) => tracing::error!(listener = %name, error = %e, "listener panicked"),
                }
            })
            .await;
        }
        if let Err(e) = std::fs::remove_file(&self.socket) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.socket.display(), error = %e, "cannot remove the control socket");
            }
        }
    }
}

/// Binds the Unix socket (and TCP when configured) and serves the API until
/// [`Servers::stop`].
pub async fn serve(daemon: Arc<Daemon>) -> anyhow::Result<Servers> {
    let config = daemon.config.clone();
    let rpc = MinerRpc::new(daemon);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<MinerServiceServer<MinerRpc>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(spacetime_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(spacetime_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection service (v1alpha)")?;
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let fd_limit = listen::raise_nofile_limit();
    let (tcp_cap, unix_cap) = listen::fit_caps(
        fd_limit,
        config.listen_tcp.map(|_| config.max_tcp_connections),
        config.max_socket_connections,
    );
    if unix_cap < config.max_socket_connections as usize
        || tcp_cap.is_some_and(|c| c < config.max_tcp_connections as usize)
    {
        tracing::warn!(
            open_file_limit = fd_limit,
            max_tcp_connections = tcp_cap,
            max_socket_connections = unix_cap,
            "connection caps lowered to fit the open-file limit (raise it, e.g. LimitNOFILE= in the service unit)"
        );
    }

    let socket = config.control_socket.clone();
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    clear_stale_socket(&socket).await?;
    let unix = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("binding the control socket {}", socket.display()))?;
    set_owner_only(&socket).with_context(|| format!("chmod 600 {}", socket.display()))?;
    tracing::info!("control API listening on unix:{}", socket.display());
    {
        let router = server_builder()
            .add_service(MinerServiceServer::new(rpc.clone()))
            .add_service(health_service.clone())
            .add_service(reflection.clone())
            .add_service(reflection_alpha.clone());
        let stop = stop.clone();
        tasks.push((
            "unix listener".to_owned(),
            tokio::spawn(
                router.serve_with_incoming_shutdown(
                    listen::incoming(
                        unix,
                        listen::Limits {
                            name: "unix",
                            max_connections: unix_cap,
                            handshake_timeout: listen::HANDSHAKE_TIMEOUT,
                        },
                        |s| async move {
                            Ok(authority::FixAuthority::new(listen::first_bytes(s).await?))
                        },
                        stop.clone(),
                    ),
                    stop.cancelled_owned(),
                ),
            ),
        ));
    }

    let mut tcp = None;
    if let Some(addr) = config.listen_tcp {
        crate::config::check_tcp_security(&config, &|_| "configuration".to_owned())?;
        let token = load_or_create_token(&config.token_file)?;
        let acceptor = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
                cert, key,
            )?)),
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the TCP control listener {addr}"))?;
        let bound = listener
            .local_addr()
            .context("reading the bound TCP address")?;
        match &acceptor {
            Some(_) => tracing::info!(
                token_file = %config.token_file.display(),
                "control API listening on tcp:{bound} (TLS)"
            ),
            None if bound.ip().is_loopback() => tracing::info!(
                token_file = %config.token_file.display(),
                "control API listening on tcp:{bound} (plaintext, loopback only)"
            ),
            None => tracing::warn!(
                token_file = %config.token_file.display(),
                "control API listening on tcp:{bound} in PLAINTEXT on an address other hosts \
                 can reach (allowPlaintextTcp): the bearer token and every call cross the \
                 network in clear; set tlsCertFile and tlsKeyFile (`minerd tls-init`)"
            ),
        }
        tcp = Some(bound);
        let auth = RequireToken::new(&token);
        let origins = config.grpc_web_origins();
        if !origins.is_empty() {
            tracing::info!(origins = %origins.join(","), "gRPC-Web: CORS allows these origins");
        }
        let router = server_builder()
            .accept_http1(true)
            .layer(cors_layer(&origins))
            .layer(tonic_web::GrpcWebLayer::new())
            .add_service(InterceptedService::new(
                MinerServiceServer::new(rpc),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(health_service, auth.clone()))
            .add_service(InterceptedService::new(reflection, auth.clone()))
            .add_service(InterceptedService::new(reflection_alpha, auth));
        let stop = stop.clone();
        tasks.push((
            "tcp listener".to_owned(),
            tokio::spawn(router.serve_with_incoming_shutdown(
                listen::incoming(
                    listener,
                    listen::Limits {
                        name: "tcp",
                        max_connections: tcp_cap.unwrap_or(1),
                        handshake_timeout: listen::HANDSHAKE_TIMEOUT,
                    },
                    move |s| tls::accept(s, acceptor.clone()),
                    stop.clone(),
                ),
                stop.cancelled_owned(),
            )),
        ));
    }
    Ok(Servers {
        tasks,
        stop,
        socket,
        health,
        tcp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_interceptor_accepts_only_the_token() {
        let mut auth = RequireToken::new("abc123");
        let mk = |v: Option<&str>| {
            let mut r = tonic::Request::new(());
            if let Some(v) = v {
                r.metadata_mut().insert("authorization", v.parse().unwrap());
            }
            r
        };
        assert!(auth.call(mk(Some("Bearer abc123"))).is_ok());
        for bad in [
            None,
            Some("Bearer abc124"),
            Some("abc123"),
            Some("Bearer abc1234"),
        ] {
            assert_eq!(
                auth.call(mk(bad)).unwrap_err().code(),
                tonic::Code::Unauthenticated
            );
        }
    }

    #[test]
    fn token_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("minerd.token");
        let t = load_or_create_token(&p).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create_token(&p).unwrap(), t);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create_token(&p)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
    }

    #[test]
    fn a_crash_while_creating_the_token_file_leaves_none_or_a_whole_one() {
        use spacetime::atomic_file::{crash_points::crashed, remove_stale_temporaries, Step};
        for step in Step::ALL {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("minerd.token");
            crashed(step, || load_or_create_token(&p)).unwrap_err();
            assert_eq!(p.exists(), step == Step::Renamed, "{step:?}");
            remove_stale_temporaries(&p);
            let t = load_or_create_token(&p).unwrap();
            assert_eq!(t.len(), 64, "{step:?}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }

    #[tokio::test]
    async fn stale_sockets_are_removed_live_ones_and_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        clear_stale_socket(&p).await.unwrap();
        assert!(!p.exists());
        let _live = tokio::net::UnixListener::bind(&p).unwrap();
        assert!(clear_stale_socket(&p).await.is_err());
        let f = dir.path().join("file");
        std::fs::write(&f, "x").unwrap();
        assert!(clear_stale_socket(&f)
            .await
            .unwrap_err()
            .to_string()
            .contains("not a socket"));
    }
}
