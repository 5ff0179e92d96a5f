//! A typed client of `minerd`: connect over the Unix socket, or over TCP with a bearer token
//! (in TLS when the daemon has a certificate: [`ClientTls`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use spacetime_proto::client::{connect, Target};
//! let mut client = connect(&Target::Unix("/home/me/.spacetime/minerd.sock".into())).await?;
//! let status = client.get_status(spacetime_proto::pb::GetStatusRequest {}).await?;
//! # let _ = status; Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use crate::pb::miner_service_client::MinerServiceClient;

/// How long a connection attempt may take before the daemon counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The metadata key carrying the bearer token on TCP connections.
pub const AUTHORIZATION: &str = "authorization";

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The daemon's Unix socket (no token needed: the socket's file mode guards it).
    Unix(PathBuf),
    /// A TCP listener, `host:port`, with the bearer token the daemon wrote to its token file.
    Tcp {
        /// `host:port` (a host name or an IP literal; IPv6 in brackets).
        address: String,
        /// The bearer token, if any (the daemon refuses TCP calls without it).
        token: Option<String>,
        /// TLS, when the listener has a certificate (`tlsCertFile`); `None` = plaintext.
        tls: Option<ClientTls>,
    },
}

/// How to verify the daemon's TLS certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// Trusted certificates, PEM: the daemon's own self-signed certificate (pinning it), or
    /// the CA that issued it.
    pub ca_pem: Vec<u8>,
    /// The name to verify the certificate against, when it is not the host of the address
    /// (an IP address is verified against the certificate's IP names).
    pub server_name: Option<String>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Trusts the PEM certificates in `path`.
    pub fn from_ca_file(path: &Path, server_name: Option<String>) -> Result<Self, ConnectError> {
        let ca_pem = std::fs::read(path).map_err(|source| ConnectError::CaFile {
            path: path.to_owned(),
            source,
        })?;
        if !ca_pem
            .windows(b"-----BEGIN CERTIFICATE-----".len())
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(ConnectError::CaFile {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "no PEM certificate in it",
                ),
            });
        }
        Ok(Self {
            ca_pem,
            server_name,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Tcp {
                address, tls: None, ..
            } => write!(f, "tcp:{address}"),
            Target::Tcp {
                address,
                tls: Some(_),
                ..
            } => write!(f, "tcp:{address} (TLS)"),
        }
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answers at the target (no daemon running, wrong path or port, refused).
    #[error("cannot reach minerd at {target}")]
    Unreachable {
        /// Where we tried.
        target: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TCP address is not a valid `host:port`.
    #[error("invalid TCP address {address:?}: expected host:port")]
    InvalidAddress {
        /// The address given.
        address: String,
    },
    /// The token contains characters that cannot travel in an HTTP header.
    #[error("the bearer token contains characters that are not allowed in a header")]
    InvalidToken,
    /// The trusted-certificate file could not be read or holds no certificate.
    #[error("cannot use the TLS CA file {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The TLS settings are unusable (e.g. a server name that is not a valid name).
    #[error("invalid TLS settings")]
    Tls {
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The token file could not be read.
    #[error("cannot read the token file {path}")]
    TokenFile {
        /// The token file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ConnectError {
    /// True when the daemon is simply not there (as opposed to a bad address or token).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone, Default)]
pub struct BearerAuth {
    header: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("BearerAuth")
            .field("token", &self.header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl BearerAuth {
    /// An interceptor sending `token`, or nothing when `None`.
    pub fn new(token: Option<&str>) -> Result<Self, ConnectError> {
        let header = match token {
            Some(t) => Some(
                format!("Bearer {}", t.trim())
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| ConnectError::InvalidToken)?,
            ),
            None => None,
        };
        Ok(Self { header })
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert(AUTHORIZATION, h.clone());
        }
        Ok(req)
    }
}

/// The typed client of the miner service.
pub type MinerClient = MinerServiceClient<InterceptedService<Channel, BearerAuth>>;

/// Reads a token file (as written by the daemon: the token, optionally followed by a newline).
pub fn read_token_file(path: &Path) -> Result<String, ConnectError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| ConnectError::TokenFile {
            path: path.to_owned(),
            source,
        })
}

/// Opens a channel to the daemon (for the miner service, health or reflection clients).
pub async fn connect_channel(target: &Target) -> Result<Channel, ConnectError> {
    let unreachable = |source| ConnectError::Unreachable {
        target: target.to_string(),
        source,
    };
    match target {
        Target::Unix(path) => {
            let path = path.clone();
            // The URI is required by the API but ignored: the connector dials the socket.
            Endpoint::from_static("http://minerd.sock")
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
                .map_err(unreachable)
        }
        Target::Tcp { address, tls, .. } => {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
                .map_err(|_| ConnectError::InvalidAddress {
                    address: address.clone(),
                })?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true);
            if let Some(tls) = tls {
                let mut config =
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
                if let Some(name) = &tls.server_name {
                    config = config.domain_name(name.clone());
                }
                endpoint = endpoint
                    .tls_config(config)
                    .map_err(|source| ConnectError::Tls { source })?;
            }
            endpoint.connect().await.map_err(unreachable)
        }
    }
}

/// Connects the typed miner client, adding the bearer token for TCP targets.
pub async fn connect(target: &Target) -> Result<MinerClient, ConnectError> {
    let auth = match target {
        Target::Unix(_) => BearerAuth::default(),
        Target::Tcp { token, .. } => BearerAuth::new(token.as_deref())?,
    };
    let channel = connect_channel(target).await?;
    Ok(MinerServiceClient::with_interceptor(channel, auth))
}

/// `GetStatus` with the status taken out of its reply (a reply without one is an error).
pub async fn get_status(client: &mut MinerClient) -> Result<crate::pb::Status, tonic::Status> {
    client
        .get_status(crate::pb::GetStatusRequest {})
        .await?
        .into_inner()
        .status
        .ok_or_else(|| tonic::Status::internal("the daemon sent an empty status"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FILE_DESCRIPTOR_SET;
    use crate::SERVICE_NAME;

    #[test]
    fn bearer_header_is_added_and_redacted_in_debug() {
        let mut auth = BearerAuth::new(Some("s3cret\n")).unwrap();
        let req = auth.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            req.metadata().get(AUTHORIZATION).unwrap().to_str().unwrap(),
            "Bearer s3cret"
        );
        assert!(!format!("{auth:?}").contains("s3cret"));
        let mut none = BearerAuth::new(None).unwrap();
        let req = none.call(tonic::Request::new(())).unwrap();
        assert!(req.metadata().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn token_with_control_characters_is_refused() {
        assert!(matches!(
            BearerAuth::new(Some("a\u{7}b")),
            Err(ConnectError::InvalidToken)
        ));
    }

    #[tokio::test]
    async fn missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let err = connect(&Target::Unix(dir.path().join("nope.sock")))
            .await
            .unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        assert!(err.to_string().contains("nope.sock"));
    }

    #[test]
    fn descriptor_set_names_the_service() {
        let needle = SERVICE_NAME.rsplit('.').next().unwrap();
        assert!(FILE_DESCRIPTOR_SET
            .windows(needle.len())
            .any(|w| w == needle.as_bytes()));
    }
}
