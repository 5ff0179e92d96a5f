//! TLS of the TCP control listener (issue 10, row 6): rustls on ring, served by minerd itself
//! so that the handshake runs under the listener's connection cap and deadline
//! ([`super::listen`]).
//!
//! * `tlsCertFile` + `tlsKeyFile` (PEM) make the TCP listener TLS-only; ALPN offers `h2` and
//!   `http/1.1` (browsers' gRPC-Web may use either). TLS 1.2 and 1.3, rustls' safe defaults.
//! * A listener reachable from other hosts without TLS is refused at configuration load
//!   unless `allowPlaintextTcp` (see `config::load`), and warned about at every start.
//! * `minerd tls-init` ([`init`]) writes a self-signed pair (ECDSA P-256, 10 years, names
//!   `localhost`, `127.0.0.1`, `::1`, the host name and any `--name`), the key 0600, both
//!   through the atomic writer; clients trust the certificate itself (`minerctl --tls-ca`,
//!   grpcio `root_certificates`, the browser's certificate store).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The rustls server configuration of `cert` (a PEM chain, leaf first) and `key` (PEM,
/// PKCS#8, PKCS#1 or SEC1). A key file that group or others can read is refused.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mode = std::fs::metadata(key)
        .with_context(|| format!("reading the TLS key file {} (tlsKeyFile)", key.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "TLS key file {} has mode {mode:04o}: group/others may read it; run `chmod 600 {}`",
            key.display(),
            key.display()
        );
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "reading the TLS certificate {} (tlsCertFile, PEM)",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!(
            "the TLS certificate file {} (tlsCertFile) holds no PEM certificate",
            cert.display()
        );
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "reading the TLS private key {} (tlsKeyFile, PEM)",
                key.display()
            )
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("setting up TLS")?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .with_context(|| {
        format!(
            "the TLS key {} does not fit the certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An accepted TCP connection, in clear or inside TLS.
#[derive(Debug)]
pub enum MaybeTls {
    /// No TLS configured (loopback, or `allowPlaintextTcp`).
    Plain(TcpStream),
    /// After a completed handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The handshake of the TCP listener: waits for the first bytes in clear, or runs the TLS
/// handshake (under the listener's deadline, see [`super::listen::incoming`]).
pub async fn accept(s: TcpStream, tls: Option<TlsAcceptor>) -> io::Result<MaybeTls> {
    super::listen::tune_tcp(&s);
    match tls {
        Some(acceptor) => Ok(MaybeTls::Tls(Box::new(acceptor.accept(s).await?))),
        None => Ok(MaybeTls::Plain(super::listen::first_bytes(s).await?)),
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The names a self-signed certificate of this host covers: loopback, the host name, and
/// `extra` (host names or IP addresses), without duplicates.
pub fn default_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() && h != "localhost" {
            names.push(h.to_owned());
        }
    }
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

/// A self-signed server certificate for `names` and its key, both PEM.
pub fn self_signed(names: &[String]) -> anyhow::Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .context("a certificate name is neither a valid DNS name nor an IP address")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "minerd control API");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let days = (spacetime::clock::now_unix_secs() / 86_400) as i64;
    let year = spacetime::clock::civil_from_days(days).0 as i32;
    // From the start of this year (clocks a little behind still accept it), ten years on.
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let key = rcgen::KeyPair::generate().context("generating the TLS key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the TLS certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What [`init`] wrote.
#[derive(Debug)]
pub struct Written {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, 0600).
    pub key: PathBuf,
    /// The names the certificate covers.
    pub names: Vec<String>,
}

/// `minerd tls-init`: writes a self-signed certificate and its key to `cert` and `key`
/// (atomically, 0600). Existing files are kept (an error) unless `force`.
pub fn init(cert: &Path, key: &Path, names: Vec<String>, force: bool) -> anyhow::Result<Written> {
    if !force {
        for p in [cert, key] {
            if p.exists() {
                anyhow::bail!(
                    "{} exists; keep it, or pass --force to replace the certificate and key \
                     (clients that trust the old certificate must then be given the new one)",
                    p.display()
                );
            }
        }
    }
    let (cert_pem, key_pem) = self_signed(&names)?;
    for p in [cert, key] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let write = |p: &Path, text: &str| {
        if force {
            spacetime::atomic_file::write_atomic(p, text.as_bytes())
        } else {
            spacetime::atomic_file::write_atomic_new(p, text.as_bytes())
        }
        .with_context(|| format!("writing {}", p.display()))
    };
    // The key first: a certificate never exists without its key.
    write(key, &key_pem)?;
    write(cert, &cert_pem)?;
    Ok(Written {
        cert: cert.to_owned(),
        key: key.to_owned(),
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_pair_the_server_accepts_and_keeps_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("tls/c.pem"), dir.path().join("tls/k.pem"));
        let w = init(&c, &k, default_names(&["miner.example".into()]), false).unwrap();
        assert!(w.names.contains(&"miner.example".to_owned()));
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let cfg = server_config(&c, &k).unwrap();
        assert_eq!(cfg.alpn_protocols[0], b"h2");
        let before = std::fs::read(&c).unwrap();
        assert!(init(&c, &k, default_names(&[]), false)
            .unwrap_err()
            .to_string()
            .contains("--force"));
        assert_eq!(std::fs::read(&c).unwrap(), before);
        init(&c, &k, default_names(&[]), true).unwrap();
        assert_ne!(std::fs::read(&c).unwrap(), before);
        server_config(&c, &k).unwrap();
    }

    #[test]
    fn bad_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        init(&c, &k, default_names(&[]), false).unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = server_config(&c, &k).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = format!("{:#}", server_config(&junk, &k).unwrap_err());
        assert!(e.contains("junk.pem"), "{e}");
        // A key of another pair does not fit.
        let (c2, k2) = (dir.path().join("c2.pem"), dir.path().join("k2.pem"));
        init(&c2, &k2, default_names(&[]), false).unwrap();
        let e = format!("{:#}", server_config(&c, &k2).unwrap_err());
        assert!(e.contains("does not fit"), "{e}");
    }
}
