//! The API over TLS with client certificates: a court's enforcement system
//! and an auditor are known by the certificates a CA of the operator's
//! signed; a client without one, with one from another CA, or that does not
//! trust the gateway's own certificate gets no HTTP exchange at all; a
//! certificate bound to a caller cannot be stood in for by a token.

use std::path::Path;

use e2e_tests::{AUDITOR, ENFORCEMENT, System, inquiry_body, zhang_san};
use gateway::tls::{ClientAuth, TlsSettings};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use reqwest::StatusCode;

/// A CA of its own, able to sign server and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM, and its fingerprint.
struct Issued {
    cert_pem: String,
    key_pem: String,
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

    // No client certificate.
    sys.client = client(&pki.ca, None)?;
    let err = sys.get("/healthz", AUDITOR).await.err();
    assert!(err.is_some(), "a client without a certificate was served");
    // A certificate the operator's CA did not sign, for the very name of a
    // known caller.
    let forged = pki.stranger.client("demo-court enforcement system")?;
    sys.client = client(&pki.ca, Some(&forged))?;
    let err = sys.get("/healthz", AUDITOR).await.err();
    assert!(err.is_some(), "a certificate of another CA was accepted");
    // The other way round: a client that trusts another CA does not accept
    // the gateway's certificate.
    sys.client = client(&pki.stranger, Some(&pki.auditor))?;
    let err = sys.get("/healthz", AUDITOR).await.err();
    assert!(err.is_some(), "the client trusted a server it should not");
    // Plain HTTP on the TLS port is no way in either.
    let plain = reqwest::Client::new()
        .get(sys.base.replace("https://", "http://") + "/healthz")
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| r.status() != StatusCode::OK),
        "plain HTTP was served"
    );

    // The gateway counted the refused handshakes, and still serves.
    sys.client = client(&pki.ca, Some(&pki.auditor))?;
    let metrics = sys.get("/metrics", AUDITOR).await?;
    assert_eq!(metrics.status, StatusCode::OK);
    let after = handshake_failures(metrics.body.as_str().unwrap_or(""));
    assert!(after >= before + 2.0, "before {before}, after {after}");
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
    // optional.
    let forged = pki.stranger.client("demo-auditor")?;
    sys.client = client(&pki.ca, Some(&forged))?;
    assert!(sys.get("/healthz", AUDITOR).await.is_err());
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
