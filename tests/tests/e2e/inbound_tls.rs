//! The API over TLS with client certificates: a court's enforcement system
//! and an auditor are known by the certificates a CA of the operator's
//! signed; a client without one, with one from another CA, or that does not
//! trust the gateway's own certificate gets no HTTP exchange at all; a
//! certificate bound to a caller cannot be stood in for by a token.
//!
//! A refused handshake is checked for what it is with a raw TLS client (no
//! HTTP library between the test and rustls): the alert the gateway sent,
//! or the client's own refusal of the gateway's certificate, after a TCP
//! connection the gateway accepted. The same gateway serves a client with
//! the right certificate in the same test, so a dead listener cannot pass
//! for a refusing one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::{AUDITOR, ENFORCEMENT, System, inquiry_body, zhang_san};
use gateway::tls::{ClientAuth, TlsSettings};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, AlertDescription, CertificateError};

/// A CA of its own, able to sign server and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM and DER, and its fingerprint.
struct Issued {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivateKeyDer<'static>,
    fingerprint: String,
}

impl Ca {
    fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        Ok(Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn server(&self) -> anyhow::Result<Issued> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    fn client(&self, name: &str) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> anyhow::Result<Issued> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            fingerprint: gateway::tls::fingerprint(cert.der()),
        })
    }
}

struct Pki {
    /// Signs the gateway's server certificate and the callers'.
    ca: Ca,
    /// Somebody else's.
    stranger: Ca,
    court: Issued,
    auditor: Issued,
}

fn pki() -> anyhow::Result<Pki> {
    let ca = Ca::new("operator")?;
    let court = ca.client("demo-court enforcement system")?;
    let auditor = ca.client("demo-auditor")?;
    Ok(Pki {
        stranger: Ca::new("stranger")?,
        court,
        auditor,
        ca,
    })
}

/// The gateway on TLS, with `demo-court` known by its certificate and
/// `demo-auditor` by its certificate or token.
async fn gateway_on_tls(pki: &Pki, client_auth: ClientAuth) -> anyhow::Result<System> {
    let dir = tempfile::tempdir()?;
    let server = pki.ca.server()?;
    let write = |name: &str, text: &str| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let settings = TlsSettings {
        cert_file: write("gateway.pem", &server.cert_pem)?,
        key_file: write("gateway.key", &server.key_pem)?,
        client_ca_file: Some(write("callers-ca.pem", &pki.ca.pem())?),
        client_auth,
    };
    let (court, auditor) = (
        pki.court.fingerprint.clone(),
        pki.auditor.fingerprint.clone(),
    );
    let system = System::start_with(move |config, _| {
        config.tls = Some(settings);
        for caller in &mut config.callers {
            match caller.name.as_str() {
                // Known only by its certificate.
                "demo-court" => {
                    caller.client_cert_sha256 = Some(court.clone());
                    caller.token_sha256 = None;
                }
                // Its certificate, or its token over a connection without one.
                "demo-auditor" => caller.client_cert_sha256 = Some(colons(&auditor)),
                _ => {}
            }
        }
    })
    .await?;
    // The key files are read at start; the folder may go.
    drop(dir);
    Ok(system)
}

/// `ab:cd:...`, as openssl prints fingerprints.
fn colons(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// A client that trusts `trusted` and presents `identity`.
fn client(trusted: &Ca, identity: Option<&Issued>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().tls_certs_only(
        reqwest::Certificate::from_pem_bundle(trusted.pem().as_bytes())?,
    );
    if let Some(id) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(
            format!("{}{}", id.cert_pem, id.key_pem).as_bytes(),
        )?);
    }
    Ok(builder.build()?)
}

/// The gateway's `host:port`.
fn address(sys: &System) -> String {
    sys.base.trim_start_matches("https://").to_owned()
}

/// A TCP connection to the gateway; failing here means nothing listens.
async fn connect(sys: &System) -> anyhow::Result<TcpStream> {
    let addr = address(sys);
    TcpStream::connect(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("the gateway did not accept a TCP connection at {addr}: {e}"))
}

/// The rustls error an I/O error carries, if it is one.
fn rustls_error(e: &std::io::Error) -> Option<rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
}

/// How the gateway ended the TLS connection of a raw client that trusts
/// `trusted` and presents `identity`: the rustls error of the refused
/// handshake, the client's own or the alert the gateway sent. The client
/// sends no request: under TLS 1.3 its side of the handshake ends before
/// the gateway has checked its certificate, so the gateway's verdict is the
/// first thing it reads.
async fn refused_handshake(
    sys: &System,
    trusted: &Ca,
    identity: Option<&Issued>,
) -> anyhow::Result<rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.der())?;
    let config = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match identity {
        Some(id) => {
            config.with_client_auth_cert(vec![id.cert_der.clone()], id.key_der.clone_key())?
        }
        None => config.with_no_client_auth(),
    };
    let tcp = connect(sys).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let attempt = async {
        let mut stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let mut byte = [0u8; 1];
        stream.read(&mut byte).await
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Err(_) => anyhow::bail!("the gateway neither refused nor closed the connection in 10 s"),
        Ok(Ok(read)) => anyhow::bail!("the handshake was accepted (then {read} bytes read)"),
        Ok(Err(e)) => rustls_error(&e)
            .ok_or_else(|| anyhow::anyhow!("not a refused TLS handshake: {e} ({:?})", e.kind())),
    }
}

/// What a plain-HTTP client gets from the TLS port: the bytes the gateway
/// sent before it closed the connection.
async fn plain_http_answer(sys: &System) -> anyhow::Result<Vec<u8>> {
    let mut tcp = connect(sys).await?;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 1024];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match read {
        Err(_) => anyhow::bail!("the gateway kept a plain-HTTP connection open for 10 s"),
        Ok(Err(e)) => anyhow::bail!("reading the plain-HTTP answer failed: {e}"),
        Ok(Ok(())) => Ok(answer),
    }
}

fn handshake_failures(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with("gateway_tls_handshake_failures_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn callers_are_known_by_their_client_certificates() -> anyhow::Result<()> {
    let pki = pki()?;
    let mut sys = gateway_on_tls(&pki, ClientAuth::Required).await?;
    assert!(sys.base.starts_with("https://"), "{}", sys.base);

    // The court's system, with its certificate and no token at all.
    sys.client = client(&pki.ca, Some(&pki.court))?;
    let r = sys
        .call(
            reqwest::Method::POST,
            "/v1/inquiries?wait=10",
            None,
            Some(serde_json::to_vec(&inquiry_body(zhang_san()))?),
        )
        .await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "completed");
    // Its certificate carries its role: the audit log is not for it.
    let r = sys
        .call(reqwest::Method::GET, "/v1/audit/events", None, None)
        .await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // The auditor by certificate, and the log names the court's caller.
    sys.client = client(&pki.ca, Some(&pki.auditor))?;
    let r = sys
        .call(
            reqwest::Method::GET,
            "/v1/audit/events?action=inquiry.create",
            None,
            None,
        )
        .await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let callers: Vec<&str> = r.body["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["caller"].as_str())
        .collect();
    assert_eq!(callers, ["demo-court"], "{}", r.body);

    // A certificate and another caller's token on one request: refused.
    let r = sys.get("/v1/audit/events", ENFORCEMENT).await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // The certificate's own caller's token with it is fine.
    let r = sys.get("/v1/audit/events", AUDITOR).await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn a_client_without_a_certificate_of_the_ca_gets_no_exchange() -> anyhow::Result<()> {
    let pki = pki()?;
    let mut sys = gateway_on_tls(&pki, ClientAuth::Required).await?;
    let before = {
        sys.client = client(&pki.ca, Some(&pki.auditor))?;
        handshake_failures(
            sys.get("/metrics", AUDITOR)
                .await?
                .body
                .as_str()
                .unwrap_or(""),
        )
    };

    // No client certificate: the gateway asked for one and says so.
    assert_eq!(
        refused_handshake(&sys, &pki.ca, None).await?,
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
    );
    // A certificate the operator's CA did not sign, for the very name of a
    // known caller: the gateway knows no such CA.
    let forged = pki.stranger.client("demo-court enforcement system")?;
    assert_eq!(
        refused_handshake(&sys, &pki.ca, Some(&forged)).await?,
        rustls::Error::AlertReceived(AlertDescription::UnknownCA)
    );
    // The other way round: a client that trusts another CA does not accept
    // the gateway's certificate.
    assert_eq!(
        refused_handshake(&sys, &pki.stranger, Some(&pki.auditor)).await?,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    // Plain HTTP on the TLS port is no way in either: no HTTP answer, only
    // a TLS alert record (content type 21, two bytes: fatal, decode_error),
    // then the end.
    let answer = plain_http_answer(&sys).await?;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&answer)
    );
    let decode_error = u8::from(AlertDescription::DecodeError);
    assert!(
        matches!(answer.as_slice(), [21, 3, _, 0, 2, 2, d] if *d == decode_error),
        "not a fatal decode_error alert: {answer:?}"
    );

    // The gateway counted the refused handshakes, and still serves.
    sys.client = client(&pki.ca, Some(&pki.auditor))?;
    let metrics = sys.get("/metrics", AUDITOR).await?;
    assert_eq!(metrics.status, StatusCode::OK);
    let after = handshake_failures(metrics.body.as_str().unwrap_or(""));
    assert!(after >= before + 4.0, "before {before}, after {after}");
    Ok(())
}

#[tokio::test]
async fn a_token_does_not_stand_in_for_a_bound_certificate() -> anyhow::Result<()> {
    let pki = pki()?;
    let mut sys = gateway_on_tls(&pki, ClientAuth::Optional).await?;
    // Without a certificate (allowed here), a caller bound to one is not
    // admitted by its token...
    sys.client = client(&pki.ca, None)?;
    let r = sys.get("/v1/audit/events", AUDITOR).await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("client certificate")),
        "{}",
        r.body
    );
    // ...a caller with a token only still is...
    let r = sys.get("/v1/agencies", e2e_tests::ADMIN).await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // ...and nobody is admitted with neither.
    let r = sys
        .call(reqwest::Method::GET, "/v1/audit/events", None, None)
        .await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // A certificate of another CA is refused even where certificates are
    // optional, in the handshake.
    let forged = pki.stranger.client("demo-auditor")?;
    assert_eq!(
        refused_handshake(&sys, &pki.ca, Some(&forged)).await?,
        rustls::Error::AlertReceived(AlertDescription::UnknownCA)
    );
    // The same gateway still serves the auditor's own certificate.
    sys.client = client(&pki.ca, Some(&pki.auditor))?;
    let r = sys.get("/v1/audit/events", AUDITOR).await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    Ok(())
}

#[test]
fn a_certificate_binding_needs_a_client_ca() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = std::fs::read_to_string(e2e_tests::config_dir().join("gateway.toml"))?;
    let text = text.replacen(
        "name = \"demo-auditor\"",
        "name = \"demo-auditor\"\nclient_cert_sha256 = \"00\"",
        1,
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text)?;
    let err = gateway::config::GatewayConfig::load(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("client_cert_sha256 must be 64 hex digits"),
        "{err}"
    );
    let text = std::fs::read_to_string(&path)?.replace(
        "client_cert_sha256 = \"00\"",
        &format!("client_cert_sha256 = \"{}\"", "ab".repeat(32)),
    );
    std::fs::write(&path, text)?;
    let err = gateway::config::GatewayConfig::load(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("client_cert_sha256 needs [tls] with a client_ca_file"),
        "{err}"
    );
    Ok(())
}

#[test]
fn broken_tls_files_are_named_without_their_contents() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let secret_key = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
    std::fs::write(dir.path().join("key.pem"), secret_key)?;
    std::fs::write(dir.path().join("cert.pem"), "no certificate here\n")?;
    let settings = TlsSettings {
        cert_file: dir.path().join("cert.pem"),
        key_file: dir.path().join("key.pem"),
        client_ca_file: None,
        client_auth: ClientAuth::Required,
    };
    let err = settings.server_config().err().unwrap_or_default();
    assert!(err.contains("tls.cert_file"), "{err}");
    assert!(!err.contains("bm90IGEga2V5"), "{err}");
    let missing = TlsSettings {
        cert_file: Path::new("/nonexistent/cert.pem").to_owned(),
        ..settings
    };
    let err = missing.server_config().err().unwrap_or_default();
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    Ok(())
}
