//! Clients that abuse connections: one that stops halfway through its
//! headers, one that never finishes its body, one that keeps a connection
//! open and says nothing, one that announces a gigantic body or sends a
//! gigantic URI, and hundreds of them at once. The gateway refuses or
//! closes each within its configured limits, and keeps answering everyone
//! else. The clients are raw TCP (and TLS) sockets on 127.0.0.1, so they
//! can misbehave as no HTTP library would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use e2e_tests::{ENFORCEMENT, System, zhang_san};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Long enough for any check here on a loaded machine; every wait is
/// bounded by it.
const PATIENCE: Duration = Duration::from_secs(20);

/// A gateway whose connection limits are the given milliseconds.
async fn gateway(header_ms: u64, body_ms: u64, idle_ms: u64) -> anyhow::Result<System> {
    System::start_with(move |config, _| {
        config.limits.header_read_timeout_ms = header_ms;
        config.limits.body_read_timeout_ms = body_ms;
        config.limits.idle_timeout_ms = idle_ms;
    })
    .await
}

fn address(sys: &System) -> anyhow::Result<SocketAddr> {
    Ok(sys.gateway.as_ref().context("the gateway runs")?.addr)
}

/// Reads until the server closes the connection; how long that took, or
/// an error if it kept it open for `PATIENCE`.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin)) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        // A reset counts as closed as much as an orderly end.
        while let Ok(n) = stream.read(&mut buf).await
            && n > 0
        {}
    })
    .await
    .map_err(|_| anyhow::anyhow!("the server kept the connection open for {PATIENCE:?}"))?;
    Ok(start.elapsed())
}

/// A response as read off the wire.
struct RawReply {
    status: u16,
    head: String,
    body: Value,
}

impl RawReply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

/// Reads one response (head and `Content-Length` body) within `PATIENCE`.
async fn read_reply(stream: &mut (impl AsyncRead + Unpin)) -> anyhow::Result<RawReply> {
    tokio::time::timeout(PATIENCE, async {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while data.len() < end + 4 + length {
                    let n = stream.read(&mut buf).await?;
                    anyhow::ensure!(n > 0, "closed in the middle of the body: {head}");
                    data.extend_from_slice(&buf[..n]);
                }
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .context("a status line")?;
                let body =
                    serde_json::from_slice(&data[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                return Ok(RawReply { status, head, body });
            }
            let n = stream.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "closed before a response");
            data.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no response within {PATIENCE:?}"))?
}

async fn send(stream: &mut (impl AsyncWrite + Unpin), text: &str) -> anyhow::Result<()> {
    stream.write_all(text.as_bytes()).await?;
    stream.flush().await?;
    Ok(())
}

const HALF_A_HEAD: &str = "POST /v1/inquiries HTTP/1.1\r\nHost: gateway\r\nContent-Type: app";

fn healthz() -> &'static str {
    "GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
}

/// The head of an inquiry that announces a body of `length` bytes.
fn inquiry_head(length: u64, extra: &str) -> String {
    format!(
        "POST /v1/inquiries HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {ENFORCEMENT}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn a_client_that_stops_halfway_through_its_headers_is_disconnected() -> anyhow::Result<()> {
    let sys = gateway(500, 10_000, 10_000).await?;
    let mut stream = TcpStream::connect(address(&sys)?).await?;
    send(&mut stream, HALF_A_HEAD).await?;
    let after = closed_by_server(&mut stream).await?;
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
    Ok(())
}

#[tokio::test]
async fn a_client_that_connects_and_says_nothing_is_disconnected() -> anyhow::Result<()> {
    let sys = gateway(500, 10_000, 10_000).await?;
    let mut stream = TcpStream::connect(address(&sys)?).await?;
    let after = closed_by_server(&mut stream).await?;
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
    Ok(())
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_a_408() -> anyhow::Result<()> {
    let sys = gateway(10_000, 500, 10_000).await?;
    let mut stream = TcpStream::connect(address(&sys)?).await?;
    send(&mut stream, &inquiry_head(400, "")).await?;
    send(&mut stream, r#"{"case_number": "(2024)"#).await?;
    let reply = read_reply(&mut stream).await?;
    assert_eq!(reply.status, 408, "{}", reply.head);
    assert_eq!(reply.code(), "body_timeout", "{}", reply.body);
    assert!(
        reply
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{}",
        reply.head
    );
    closed_by_server(&mut stream).await?;
    Ok(())
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    // The header timeout is far longer: the idle one must be what ends it.
    let sys = gateway(30_000, 10_000, 500).await?;
    let mut stream = TcpStream::connect(address(&sys)?).await?;
    send(&mut stream, healthz()).await?;
    assert_eq!(read_reply(&mut stream).await?.status, 200);
    let after = closed_by_server(&mut stream).await?;
    assert!(after < Duration::from_secs(10), "closed after {after:?}");
    Ok(())
}

#[tokio::test]
async fn a_kept_alive_connection_may_rest_longer_than_the_header_timeout() -> anyhow::Result<()> {
    let sys = gateway(300, 10_000, 30_000).await?;
    let mut stream = TcpStream::connect(address(&sys)?).await?;
    send(&mut stream, healthz()).await?;
    assert_eq!(read_reply(&mut stream).await?.status, 200);
    // Three header timeouts of rest: the connection stays open...
    let mut byte = [0u8; 1];
    let rest = tokio::time::timeout(Duration::from_millis(900), stream.read(&mut byte)).await;
    assert!(rest.is_err(), "the server ended the connection: {rest:?}");
    // ...and serves the next request.
    send(&mut stream, healthz()).await?;
    assert_eq!(read_reply(&mut stream).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_any_of_it_is_sent() -> anyhow::Result<()>
{
    let sys = gateway(10_000, 10_000, 10_000).await?;
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut stream = TcpStream::connect(address(&sys)?).await?;
        send(&mut stream, &inquiry_head(1_000_000_000, expect)).await?;
        // Not a byte of the body is sent; the refusal comes anyway, and no
        // 100 Continue before it.
        let reply = read_reply(&mut stream).await?;
        assert_eq!(reply.status, 413, "{expect:?}: {}", reply.head);
        assert_eq!(reply.code(), "body_too_large", "{}", reply.body);
        closed_by_server(&mut stream).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_uri_over_the_bound_is_414_in_the_error_shape() -> anyhow::Result<()> {
    let sys = System::start().await?;
    assert_eq!(sys.config.limits.max_uri_bytes, 8 * 1024);
    let under = format!("/healthz?pad={}", "x".repeat(8_000));
    let r = sys.get(&under, ENFORCEMENT).await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let over = format!("/v1/inquiries?case_number={}", "x".repeat(20_000));
    let r = sys.get(&over, ENFORCEMENT).await?;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert_eq!(r.body["error"]["code"], "uri_too_long", "{}", r.body);
    Ok(())
}

/// How one of the crowd misbehaves.
#[derive(Clone, Copy)]
enum Slowness {
    /// Connects and sends nothing.
    Silent,
    /// Sends a header a byte at a time, never ending it.
    DribblingHead,
    /// Sends a whole head, then its body a byte at a time.
    DribblingBody,
}

/// Plays `slowness` on `stream` until the server closes it; whether it did
/// within `PATIENCE`.
async fn slow_client(mut stream: TcpStream, slowness: Slowness) -> anyhow::Result<bool> {
    let (start, drip) = match slowness {
        Slowness::Silent => (String::new(), None),
        Slowness::DribblingHead => (
            "GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: ".to_owned(),
            Some(b'a'),
        ),
        Slowness::DribblingBody => (inquiry_head(1_000, ""), Some(b' ')),
    };
    send(&mut stream, &start).await?;
    let mut drips = tokio::time::interval(Duration::from_millis(200));
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::sleep(PATIENCE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                // A 408 may come first; the close follows.
                Ok(n) if n > 0 => {}
                _ => return Ok(true),
            },
            _ = drips.tick(), if drip.is_some() => {
                if let Some(byte) = drip
                    && stream.write_all(&[byte]).await.is_err()
                {
                    return Ok(true);
                }
            }
            () = &mut deadline => return Ok(false),
        }
    }
}

#[tokio::test]
async fn hundreds_of_slow_clients_neither_crowd_out_others_nor_keep_their_connections()
-> anyhow::Result<()> {
    let sys = gateway(3_000, 3_000, 3_000).await?;
    let addr = address(&sys)?;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut crowd = Vec::new();
    for i in 0..300 {
        let stream = TcpStream::connect(addr).await?;
        let slowness = [
            Slowness::Silent,
            Slowness::DribblingHead,
            Slowness::DribblingBody,
        ][i % 3];
        let closed = closed.clone();
        crowd.push(tokio::spawn(async move {
            let was_closed = slow_client(stream, slowness).await?;
            closed.fetch_add(usize::from(was_closed), Ordering::Relaxed);
            anyhow::Ok(was_closed)
        }));
    }

    // Everybody else is served meanwhile.
    let health = sys
        .client
        .get(format!("{}/healthz", sys.base))
        .send()
        .await?;
    assert_eq!(health.status(), StatusCode::OK);
    let inquiry = sys.inquire(zhang_san(), 20).await?;
    assert_eq!(inquiry.status, StatusCode::OK, "{}", inquiry.body);
    let held = 300 - closed.load(Ordering::Relaxed);
    assert!(
        held >= 150,
        "only {held} slow clients still held a connection when the others were served"
    );

    // And the crowd is shown the door.
    let mut kept_open = 0;
    for client in crowd {
        if !client.await?? {
            kept_open += 1;
        }
    }
    assert_eq!(kept_open, 0, "connections the server never closed");
    Ok(())
}

/// Over TLS, the same limits hold once the handshake is done.
#[tokio::test]
async fn over_tls_a_client_that_stops_halfway_through_its_headers_is_disconnected()
-> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tokio_rustls::rustls;

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &ca)?;
    let dir = tempfile::tempdir()?;
    let (cert_file, key_file) = (
        dir.path().join("gateway.pem"),
        dir.path().join("gateway.key"),
    );
    std::fs::write(&cert_file, cert.pem())?;
    std::fs::write(&key_file, key.serialize_pem())?;
    let sys = System::start_with(move |config, _| {
        config.limits.header_read_timeout_ms = 500;
        config.tls = Some(gateway::tls::TlsSettings {
            cert_file,
            key_file,
            client_ca_file: None,
            client_auth: gateway::tls::ClientAuth::Required,
        });
    })
    .await?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(address(&sys)?).await?;
    let mut stream = connector
        .connect(rustls::pki_types::ServerName::try_from("localhost")?, tcp)
        .await?;
    send(&mut stream, HALF_A_HEAD).await?;
    let after = closed_by_server(&mut stream).await?;
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
    Ok(())
}

/// An older `gateway.toml` without the connection limits gets the
/// documented ones; a zero is refused, as it would close every connection.
#[test]
fn connection_limits_have_defaults_and_must_be_positive() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    let repository = std::fs::read_to_string(e2e_tests::config_dir().join("gateway.toml"))?;
    let keys = [
        "max_uri_bytes",
        "header_read_timeout_ms",
        "body_read_timeout_ms",
        "idle_timeout_ms",
    ];
    let older: String = repository
        .lines()
        .filter(|line| !keys.iter().any(|key| line.starts_with(key)))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&path, &older)?;
    let limits = gateway::config::GatewayConfig::load(&path)?.limits;
    let documented =
        gateway::config::GatewayConfig::load(&e2e_tests::config_dir().join("gateway.toml"))?.limits;
    assert_eq!(
        (
            limits.max_uri_bytes,
            limits.header_read_timeout_ms,
            limits.body_read_timeout_ms,
            limits.idle_timeout_ms
        ),
        (8_192, 10_000, 30_000, 60_000)
    );
    assert_eq!(
        (
            documented.max_uri_bytes,
            documented.header_read_timeout_ms,
            documented.body_read_timeout_ms,
            documented.idle_timeout_ms
        ),
        (8_192, 10_000, 30_000, 60_000)
    );

    std::fs::write(
        &path,
        repository.replace("idle_timeout_ms = 60000", "idle_timeout_ms = 0"),
    )?;
    let err = gateway::config::GatewayConfig::load(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("must be positive"), "{err}");
    Ok(())
}
