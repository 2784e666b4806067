//! Inbound TLS: the API served over rustls, optionally requiring client
//! certificates signed by a configured CA, each of which maps to a caller.
//!
//! The TCP accept loop never waits on a handshake: each connection's
//! handshake runs in its own task, bounded in time, and only finished
//! handshakes reach the HTTP server. A client that offers no certificate, or
//! one the CA did not sign, is refused during the handshake; no request of
//! it is ever read.
//!
//! The leaf certificate a client presented travels with each request as
//! [`PeerCertificate`] (axum's connect info); `auth.rs` maps it to the caller
//! whose `client_cert_sha256` it matches.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 256;

/// `[tls]` in `gateway.toml`. Relative paths are relative to the working
/// directory, as the other paths of the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM, leaf first).
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA bundle (PEM) that signs callers' client certificates. When it
    /// is set, clients must present a certificate it signed.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// With a client CA: `required` (default) refuses a handshake without a
    /// client certificate; `optional` lets such clients through, to
    /// authenticate by bearer token alone.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Required,
    Optional,
}

impl TlsSettings {
    /// The rustls server configuration; the error names the file at fault
    /// and never prints a key.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        crate::install_crypto_provider();
        let chain: Vec<CertificateDer<'static>> = read_certs(&self.cert_file, "tls.cert_file")?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| {
            format!(
                "tls.key_file {}: no usable PEM private key ({e})",
                self.key_file.display()
            )
        })?;
        let builder = rustls::ServerConfig::builder();
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca_file) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca_file, "tls.client_ca_file")? {
                    roots.add(cert).map_err(|e| {
                        format!(
                            "tls.client_ca_file {}: not a usable CA certificate ({e})",
                            ca_file.display()
                        )
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
                let verifier = match self.client_auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                }
                .build()
                .map_err(|e| format!("tls.client_ca_file {}: {e}", ca_file.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            format!("tls.cert_file and tls.key_file do not form a usable certificate and key: {e}")
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn read_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "{field} {}: not readable PEM certificates ({e})",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{field} {}: holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The hex SHA-256 of a certificate's DER bytes: how a caller's client
/// certificate is named in the configuration (`client_cert_sha256`), as
/// `openssl x509 -noout -fingerprint -sha256` prints it without colons.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A listener that serves TLS: it accepts TCP connections and hands the HTTP
/// server only those whose handshake finished.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: rustls::ServerConfig) -> std::io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor_task = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(Self {
            local_addr,
            ready,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly,
                // as hyper's own accept loop does.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, addr)).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(peer = %addr, error = %e, "TLS handshake refused");
                    crate::metrics::global().tls_handshake_failures.inc();
                }
                Err(_) => {
                    tracing::info!(peer = %addr, "TLS handshake not finished in time");
                    crate::metrics::global().tls_handshake_failures.inc();
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// The client certificate a request's connection presented, over TLS.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate {
    /// Hex SHA-256 of the client's leaf certificate (DER).
    pub fingerprint: Option<String>,
}

impl PeerCertificate {
    /// The certificate the client of a finished handshake presented.
    pub fn of(stream: &TlsStream<TcpStream>) -> Self {
        let (_, session) = stream.get_ref();
        Self {
            fingerprint: session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| fingerprint(leaf.as_ref())),
        }
    }
}
