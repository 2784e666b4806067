//! What it takes to reach an agency beyond its URL: the auth headers, whose
//! values an agency file gives by reference (an environment variable or a
//! file, never inline), and the TLS files (CA, client certificate and key).
//!
//! References are resolved when the configuration loads, so a missing
//! variable or file refuses the set before anything runs. Resolved secrets
//! live in [`Secret`], whose `Debug` prints `***`: they never reach a log
//! line or an error message.

use std::fmt;
use std::path::Path;

use super::{AgencyConfig, KeyPath};

/// A secret value. `Debug` never shows it; read it with [`Secret::expose`]
/// at the one place it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One auth header with its resolved value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeaderValue {
    pub name: String,
    pub value: Secret,
}

/// The TLS files of an agency, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// PEM of the CA the agency's server certificate must chain to. When
    /// set, only this CA is trusted for the agency.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate followed by its private key, for
    /// mutual TLS.
    pub identity_pem: Option<Secret>,
}

/// How to reach an agency besides its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    pub headers: Vec<AuthHeaderValue>,
    pub tls: Option<TlsMaterial>,
    /// The key a signing dialect signs requests and checks replies with
    /// (`auth.signing_key`).
    pub signing_key: Option<Secret>,
}

/// Headers the gateway sets itself; an agency file may not override them.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "x-request-id",
    "transfer-encoding",
    "connection",
    "user-agent",
];

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl Connection {
    /// Resolves the references of an agency file: reads the environment
    /// variables and files it names. Every problem is listed with the key it
    /// belongs to; none of them shows a secret.
    pub fn resolve(config: &AgencyConfig) -> Result<Self, Vec<(KeyPath, String)>> {
        let mut problems = Vec::new();
        let mut headers = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (i, header) in config.auth.headers.iter().enumerate() {
            let key = |k: &str| KeyPath::key("auth").then("headers").index(i).then(k);
            let lower = header.name.to_ascii_lowercase();
            if !is_token(&header.name) {
                problems.push((
                    key("name"),
                    format!(
                        "auth header name {:?} is not a valid HTTP header name",
                        header.name
                    ),
                ));
            } else if RESERVED_HEADERS.contains(&lower.as_str()) {
                problems.push((
                    key("name"),
                    format!("auth header {:?} is set by the gateway itself", header.name),
                ));
            } else if seen.contains(&lower) {
                problems.push((
                    key("name"),
                    format!("auth header {:?} is given twice", header.name),
                ));
            }
            seen.push(lower);
            if header.has_inline_value() {
                problems.push((
                    key("value"),
                    format!(
                        "auth header {:?} has a literal value: secrets never inline; \
                         give it by reference with `env = \"VARIABLE\"` or `file = \"path\"`",
                        header.name
                    ),
                ));
                continue;
            }
            let what = format!("auth header {:?}", header.name);
            let value = match read_secret(header.env.as_deref(), header.file.as_deref(), &what) {
                Ok(value) => value,
                Err((k, message)) => {
                    problems.push((key(k), message));
                    continue;
                }
            };
            if !is_header_value(&value) {
                problems.push((
                    key(if header.env.is_some() { "env" } else { "file" }),
                    format!(
                        "the value of auth header {:?} holds characters a header cannot carry \
                         (control characters, line breaks or non-ASCII)",
                        header.name
                    ),
                ));
                continue;
            }
            headers.push(AuthHeaderValue {
                name: header.name.clone(),
                value: Secret::new(value),
            });
        }
        let tls = config
            .tls
            .as_ref()
            .and_then(|tls| resolve_tls(tls, &config.base_url, &mut problems));
        let signing_key = config.auth.signing_key.as_ref().and_then(|source| {
            let key = |k: &str| match k {
                "name" => KeyPath::key("auth").then("signing_key"),
                k => KeyPath::key("auth").then("signing_key").then(k),
            };
            if source.has_inline_value() {
                problems.push((
                    key("value"),
                    "auth.signing_key has a literal value: secrets never inline; \
                     give it by reference with `env = \"VARIABLE\"` or `file = \"path\"`"
                        .into(),
                ));
                return None;
            }
            read_secret(
                source.env.as_deref(),
                source.file.as_deref(),
                "auth.signing_key",
            )
            .map(Secret::new)
            .map_err(|(k, message)| problems.push((key(k), message)))
            .ok()
        });
        if problems.is_empty() {
            Ok(Self {
                headers,
                tls,
                signing_key,
            })
        } else {
            Err(problems)
        }
    }
}

/// Reads a secret given by reference, exactly one of an environment
/// variable and a file (surrounding whitespace trimmed). The error names
/// the key at fault (`env`, `file`) and says what is wrong without the
/// secret; `what` names the secret (`auth header "X-Api-Key"`).
fn read_secret(
    env: Option<&str>,
    file: Option<&Path>,
    what: &str,
) -> Result<Vec<u8>, (&'static str, String)> {
    match (env, file) {
        (Some(_), Some(_)) => Err((
            "env",
            format!("{what} names both env and file: give exactly one"),
        )),
        (None, None) => Err((
            "name",
            format!(
                "{what} needs its value by reference: `env = \"VARIABLE\"` or `file = \"path\"`"
            ),
        )),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(v.trim().as_bytes().to_vec()),
            Ok(_) => Err((
                "env",
                format!("environment variable {var} ({what}) is empty"),
            )),
            Err(_) => Err((
                "env",
                format!("environment variable {var} ({what}) is not set"),
            )),
        },
        (None, Some(path)) => match read_file(path) {
            Ok(bytes) => {
                let trimmed = bytes.trim_ascii().to_vec();
                if trimmed.is_empty() {
                    Err((
                        "file",
                        format!("secret file {} ({what}) is empty", path.display()),
                    ))
                } else {
                    Ok(trimmed)
                }
            }
            Err(e) => Err(("file", format!("{what}: {e}"))),
        },
    }
}

fn resolve_tls(
    tls: &super::TlsFiles,
    base_url: &str,
    problems: &mut Vec<(KeyPath, String)>,
) -> Option<TlsMaterial> {
    let key = |k: &str| KeyPath::key("tls").then(k);
    let before = problems.len();
    if tls.ca.is_none() && tls.client_cert.is_none() && tls.client_key.is_none() {
        problems.push((
            KeyPath::key("tls"),
            "tls names no file: give ca, or client_cert with client_key, or leave tls out".into(),
        ));
    }
    if base_url.starts_with("http://") {
        problems.push((
            KeyPath::key("tls"),
            "tls is set but base_url is plain http: use an https:// base_url".into(),
        ));
    }
    let mut read_pem =
        |k: &'static str, path: &Path, marker: &str, what: &str| match read_file(path) {
            Ok(bytes) => {
                if String::from_utf8_lossy(&bytes).contains(marker) {
                    Some(bytes)
                } else {
                    problems.push((key(k), format!("{} holds no PEM {what}", path.display())));
                    None
                }
            }
            Err(e) => {
                problems.push((key(k), e));
                None
            }
        };
    let ca = tls
        .ca
        .as_deref()
        .and_then(|p| read_pem("ca", p, "-----BEGIN CERTIFICATE-----", "certificate"));
    let cert = tls.client_cert.as_deref().and_then(|p| {
        read_pem(
            "client_cert",
            p,
            "-----BEGIN CERTIFICATE-----",
            "certificate",
        )
    });
    let key_pem = tls
        .client_key
        .as_deref()
        .and_then(|p| read_pem("client_key", p, "PRIVATE KEY-----", "private key"));
    match (&tls.client_cert, &tls.client_key) {
        (Some(_), None) => problems.push((
            key("client_cert"),
            "tls.client_cert needs its tls.client_key".into(),
        )),
        (None, Some(_)) => problems.push((
            key("client_key"),
            "tls.client_key needs its tls.client_cert".into(),
        )),
        _ => {}
    }
    if problems.len() > before {
        return None;
    }
    let identity_pem = match (cert, key_pem) {
        (Some(mut cert), Some(key)) => {
            if !cert.ends_with(b"\n") {
                cert.push(b'\n');
            }
            cert.extend_from_slice(&key);
            Some(Secret::new(cert))
        }
        _ => None,
    };
    Some(TlsMaterial {
        ca_pem: ca,
        identity_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let header = AuthHeaderValue {
            name: "X-Api-Key".into(),
            value: Secret::new("s3cr3t-value"),
        };
        let shown = format!(
            "{header:?} {:?}",
            Connection {
                headers: vec![header.clone()],
                tls: Some(TlsMaterial {
                    ca_pem: None,
                    identity_pem: Some(Secret::new("-----BEGIN PRIVATE KEY-----")),
                }),
                signing_key: Some(Secret::new("s3cr3t-signing-key")),
            }
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn header_names_and_values_are_checked() {
        assert!(is_token("X-Api-Key"));
        assert!(!is_token("X Api"));
        assert!(!is_token(""));
        assert!(is_header_value(b"abc def\t1"));
        assert!(!is_header_value(b"abc\ndef"));
    }
}
