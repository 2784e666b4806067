//! An agency behind TLS with a private CA and client certificates (mutual
//! TLS), and auth headers given by reference: the transport reaches it with
//! the agency file's settings, and does not without them.
//!
//! A refusal is checked for what it is, on both ends: the rustls error the
//! agency's listener refused the handshake with, and the TLS failure the
//! transport reports (an alert or an untrusted certificate, never a
//! connection nobody accepted). Each refusal test then reaches the same
//! listener with the right settings, so a dead listener cannot pass for a
//! refusing one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use adapters::agency::{Connection, parse_agency};
use adapters::dialect::{HttpMethod, WireRequest};
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use gateway::transport::Transport;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, AlertDescription, CertificateError, RootCertStore, ServerConfig};

const API_KEY: &str = "bank-t-api-key-4711";

/// A CA that signs a server and a client certificate.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client_pem: String,
    client_key_pem: String,
}

fn pki(name: &str) -> anyhow::Result<Pki> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let server_key = KeyPair::generate()?;
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &ca)?;

    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "court gateway");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &ca)?;

    Ok(Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server: (
            server_cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        ),
        client_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

/// Accepts TLS connections whose client certificate the CA signed, and
/// reports why it refused each handshake it refused.
struct MutualTlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    refused: mpsc::UnboundedSender<rustls::Error>,
}

impl axum::serve::Listener for MutualTlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            match self.acceptor.accept(stream).into_fallible().await {
                Ok(tls) => return (tls, addr),
                Err((e, tcp)) => {
                    let reason = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .cloned()
                        .unwrap_or_else(|| rustls::Error::General(e.to_string()));
                    let _ = self.refused.send(reason);
                    // The alert is on its way; read what the client still
                    // sends until it closes, so that closing here is a
                    // FIN and not a reset that could overtake the alert.
                    tokio::spawn(drain(tcp));
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Reads a refused client's connection to its end (at most 10 s).
async fn drain(mut tcp: TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// An agency over mutual TLS: its address, and why it refused each
/// handshake it refused.
struct Agency {
    addr: SocketAddr,
    refused: mpsc::UnboundedReceiver<rustls::Error>,
}

impl Agency {
    /// The reason of the next handshake the agency refuses (waits 10 s at
    /// most: a listener that refused nothing fails the test).
    async fn refusal(&mut self) -> anyhow::Result<rustls::Error> {
        tokio::time::timeout(Duration::from_secs(10), self.refused.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the agency refused no handshake within 10 s"))?
            .ok_or_else(|| anyhow::anyhow!("the agency's listener is gone"))
    }
}

/// An agency that answers `/echo` with the API key it received.
async fn agency_over_mutual_tls(pki: &Pki) -> anyhow::Result<Agency> {
    gateway::install_crypto_provider();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone())?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build()?;
    let config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())?;
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let (tx, refused) = mpsc::unbounded_channel();
    let listener = MutualTlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
        refused: tx,
    };
    let app = Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no key")
                .to_owned()
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Agency { addr, refused })
}

/// Writes the PKI's files and an agency file naming them (relative paths),
/// and returns the agency file's resolved connection.
fn agency_file(dir: &Path, addr: SocketAddr, pki: &Pki, tls: &str) -> anyhow::Result<Connection> {
    std::fs::create_dir_all(dir.join("tls"))?;
    std::fs::write(dir.join("tls/ca.pem"), &pki.ca_pem)?;
    std::fs::write(dir.join("tls/gateway.pem"), &pki.client_pem)?;
    std::fs::write(dir.join("tls/gateway.key"), &pki.client_key_pem)?;
    std::fs::write(dir.join("bank-t.key"), format!("{API_KEY}\n"))?;
    let text = format!(
        r#"id = "bank-t"
name = "Bank T (mutual TLS)"
kind = "bank"
dialect = "bank-json"
base_url = "https://127.0.0.1:{port}"
{tls}

[[auth.headers]]
name = "X-Api-Key"
file = "bank-t.key"
"#,
        port = addr.port()
    );
    let file: PathBuf = dir.join("bank-t.toml");
    std::fs::write(&file, &text)?;
    let config = parse_agency(&file, &text)
        .map_err(|e| anyhow::anyhow!("{}", adapters::agency::ConfigErrors(e)))?;
    Connection::resolve(&config).map_err(|e| anyhow::anyhow!("{e:?}"))
}

fn echo() -> WireRequest {
    WireRequest {
        method: HttpMethod::Get,
        path: "/echo".into(),
        content_type: None,
        body: bytes::Bytes::new(),
        headers: Default::default(),
    }
}

/// Sends `/echo` to the agency at `addr` with the connection's settings: the
/// transport's answer, or why there was none.
async fn echo_through(
    connection: &Connection,
    addr: SocketAddr,
    request_id: &str,
) -> anyhow::Result<Result<gateway::transport::HttpReply, gateway::transport::TransportError>> {
    let transport = Transport::new(1 << 20)?;
    let channel = transport
        .channel_for(connection)
        .map_err(anyhow::Error::msg)?;
    Ok(transport
        .send(
            &channel,
            &format!("https://127.0.0.1:{}", addr.port()),
            &echo(),
            Duration::from_secs(5),
            request_id,
        )
        .await)
}

/// The TLS failure the transport reports for a refused exchange: the
/// message of a connection or HTTP failure (a timeout or a reply is not a
/// refusal).
fn tls_failure(
    result: &Result<gateway::transport::HttpReply, gateway::transport::TransportError>,
) -> anyhow::Result<String> {
    use gateway::transport::TransportError;
    match result {
        Err(TransportError::Connect(m) | TransportError::Http(m)) => {
            anyhow::ensure!(
                !m.to_lowercase().contains("connection refused"),
                "nothing was listening: {m}"
            );
            Ok(m.clone())
        }
        other => anyhow::bail!("expected a refused TLS handshake, got {other:?}"),
    }
}

/// The same listener, reached with the right settings: it is alive and
/// serving, so the refusal before was the handshake's.
async fn served_with_the_right_settings(
    dir: &Path,
    agency: &Agency,
    pki: &Pki,
) -> anyhow::Result<()> {
    let right = dir.join("right");
    let connection = agency_file(&right, agency.addr, pki, FULL_TLS)?;
    let reply = echo_through(&connection, agency.addr, "test-guard").await??;
    anyhow::ensure!(reply.status == 200, "status {}", reply.status);
    anyhow::ensure!(&reply.body[..] == API_KEY.as_bytes(), "{:?}", reply.body);
    Ok(())
}

const FULL_TLS: &str = r#"tls = { ca = "tls/ca.pem", client_cert = "tls/gateway.pem", client_key = "tls/gateway.key" }"#;

#[tokio::test]
async fn an_agency_with_a_private_ca_and_client_certificates_is_reached_with_its_api_key()
-> anyhow::Result<()> {
    let pki = pki("agency")?;
    let addr = agency_over_mutual_tls(&pki).await?.addr;
    let dir = tempfile::tempdir()?;
    let connection = agency_file(dir.path(), addr, &pki, FULL_TLS)?;
    let transport = Transport::new(1 << 20)?;
    let channel = transport
        .channel_for(&connection)
        .map_err(anyhow::Error::msg)?;
    assert!(channel.has_own_client());
    assert_eq!(channel.header_names(), vec!["x-api-key"]);
    assert!(!format!("{channel:?} {connection:?}").contains(API_KEY));

    let reply = transport
        .send(
            &channel,
            &format!("https://127.0.0.1:{}", addr.port()),
            &echo(),
            Duration::from_secs(5),
            "test-1",
        )
        .await?;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], API_KEY.as_bytes());
    Ok(())
}

#[tokio::test]
async fn without_its_client_certificate_the_agency_refuses_the_gateway() -> anyhow::Result<()> {
    let pki = pki("agency")?;
    let mut agency = agency_over_mutual_tls(&pki).await?;
    let dir = tempfile::tempdir()?;
    let connection = agency_file(
        dir.path(),
        agency.addr,
        &pki,
        r#"tls = { ca = "tls/ca.pem" }"#,
    )?;
    let result = echo_through(&connection, agency.addr, "test-2").await?;
    // The agency's TLS 1.3 server asked for a certificate, got none, and
    // said so with an alert.
    assert_eq!(
        agency.refusal().await?,
        rustls::Error::NoCertificatesPresented
    );
    let failure = tls_failure(&result)?;
    let alert = rustls::Error::AlertReceived(AlertDescription::CertificateRequired).to_string();
    assert!(failure.contains(&alert), "{failure}");
    served_with_the_right_settings(dir.path(), &agency, &pki).await?;
    Ok(())
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_not_trusted() -> anyhow::Result<()> {
    let agency_pki = pki("agency")?;
    let mut agency = agency_over_mutual_tls(&agency_pki).await?;
    let other = pki("other")?;
    let dir = tempfile::tempdir()?;
    // Our client certificate is right, but we trust another CA.
    let files = Pki {
        ca_pem: other.ca_pem,
        ca_der: agency_pki.ca_der.clone(),
        server: (agency_pki.server.0.clone(), agency_pki.server.1.clone_key()),
        client_pem: agency_pki.client_pem.clone(),
        client_key_pem: agency_pki.client_key_pem.clone(),
    };
    let connection = agency_file(dir.path(), agency.addr, &files, FULL_TLS)?;
    let result = echo_through(&connection, agency.addr, "test-3").await?;
    // We refused the agency's certificate, and told it why.
    let failure = tls_failure(&result)?;
    let untrusted = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer).to_string();
    assert!(failure.contains(&untrusted), "{failure}");
    assert_eq!(
        agency.refusal().await?,
        rustls::Error::AlertReceived(AlertDescription::UnknownCA)
    );
    served_with_the_right_settings(dir.path(), &agency, &agency_pki).await?;
    Ok(())
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_by_the_agency() -> anyhow::Result<()> {
    let agency_pki = pki("agency")?;
    let mut agency = agency_over_mutual_tls(&agency_pki).await?;
    let other = pki("other")?;
    let dir = tempfile::tempdir()?;
    // We trust the agency's CA, but present a certificate it did not sign.
    let files = Pki {
        ca_pem: agency_pki.ca_pem.clone(),
        ca_der: agency_pki.ca_der.clone(),
        server: (agency_pki.server.0.clone(), agency_pki.server.1.clone_key()),
        client_pem: other.client_pem,
        client_key_pem: other.client_key_pem,
    };
    let connection = agency_file(dir.path(), agency.addr, &files, FULL_TLS)?;
    let result = echo_through(&connection, agency.addr, "test-4").await?;
    assert_eq!(
        agency.refusal().await?,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    let failure = tls_failure(&result)?;
    let alert = rustls::Error::AlertReceived(AlertDescription::UnknownCA).to_string();
    assert!(failure.contains(&alert), "{failure}");
    served_with_the_right_settings(dir.path(), &agency, &agency_pki).await?;
    Ok(())
}

#[tokio::test]
async fn an_agency_without_tls_settings_shares_the_common_client() -> anyhow::Result<()> {
    let transport = Transport::new(1 << 20)?;
    let channel = transport
        .channel_for(&Connection::default())
        .map_err(anyhow::Error::msg)?;
    assert!(!channel.has_own_client());
    assert!(channel.header_names().is_empty());
    Ok(())
}
