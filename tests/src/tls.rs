//! TLS for the end-to-end tests: a self-signed pair made by the real `minerd tls-init`, the
//! configuration that enables it, and the clients that trust it (the typed client's
//! [`ClientTls`] and a rustls HTTP/1.1 client for gRPC-Web, as a browser connects).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use spacetime_proto::client::ClientTls;
use tokio_rustls::rustls;

use crate::Home;

/// A certificate and key written by `minerd tls-init` into a home's data directory.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `<data dir>/tls.crt`.
    pub cert: PathBuf,
    /// `<data dir>/tls.key`.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Runs `minerd tls-init` in `home` (extra `args`, e.g. `--name`).
    pub fn init(home: &Home, args: &[&str]) -> anyhow::Result<Self> {
        let mut all = vec!["tls-init"];
        all.extend_from_slice(args);
        let out = home.minerd_output(&all, &[]);
        if !out.status.success() {
            bail!(
                "minerd tls-init failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self {
            cert: home.data_dir().join("tls.crt"),
            key: home.data_dir().join("tls.key"),
        })
    }

    /// The `miner.yaml` lines that enable TLS on the TCP listener.
    pub fn yaml(&self) -> String {
        format!(
            "tlsCertFile: {}\ntlsKeyFile: {}\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// The typed client's TLS settings, trusting this certificate.
    pub fn client(&self) -> anyhow::Result<ClientTls> {
        Ok(ClientTls::from_ca_file(&self.cert, None)?)
    }

    /// A rustls client configuration that trusts this certificate and offers `alpn`.
    pub fn rustls_client(&self, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.cert).context("reading the certificate")? {
            roots.add(c.context("parsing the certificate")?)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// A blocking TLS connection to `addr` (`ip:port`), verified against `config`'s roots with
/// the IP address as the server name.
pub fn connect_blocking(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let ip: std::net::SocketAddr = addr.parse().context("an ip:port address")?;
    let name = rustls_pki_types::ServerName::from(ip.ip());
    let conn = rustls::ClientConnection::new(config, name)?;
    let tcp = std::net::TcpStream::connect(ip)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}
