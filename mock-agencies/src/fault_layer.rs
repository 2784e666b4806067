//! Injecting the faults of [`crate::faults`] into dialect requests: a
//! middleware around an agency's dialect routes only (never its inspection
//! API), and the per-agency state it decides with (a seeded generator, the
//! rolling window of the rate limit, and a tally of what was injected).
//!
//! Each request is decided once, on arrival, in this order:
//! 1. throttling: beyond `rate_limit_per_second` admitted requests in the
//!    last second, or by `throttle_rate`: HTTP 429 with `Retry-After` and
//!    the dialect's error body, at once (no latency);
//! 2. latency: `latency_ms` plus a draw from `latency`;
//! 3. `reset_rate`: the connection is closed without an answer;
//! 4. `mode: error` or `error_rate`: HTTP `error_status` with the dialect's
//!    error body; the request is not processed;
//! 5. the dialect processes the request (`mode: refuse` and `malformed` are
//!    its business), then its reply is reshaped: re-encoded
//!    (`wrong_encoding`), replaced by garbage (`mode: garbage`,
//!    `garbage_rate`) or else cut in half (`malformed_rate`), padded
//!    (`oversize_bytes`), and trickled (`trickle_ms_per_byte`).
//!
//! Every draw is made for every request, whether its rate is set or not, so
//! the generator's sequence depends on the seed and the number of requests
//! alone.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};

use crate::agency::Agency;
use crate::config::MockDialect;
use crate::faults::{FaultConfig, FaultMode};
use crate::{
    bank_json, bank_xml, fund_callback, iso_bank_xml, market_gbk_xml, payment_json, registry_json,
    securities_xml, vehicle_soap,
};

/// How many injected faults the ledger keeps, the most recent.
const LOG_LIMIT: usize = 1_000;

/// The window of `rate_limit_per_second`.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The faults in force for an agency: the two delays that predate
/// [`FaultConfig`] and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Faults {
    pub latency_ms: u64,
    /// How long a registry takes to produce a result after accepting a
    /// request (registries only).
    pub result_delay_ms: u64,
    pub config: FaultConfig,
}

impl Faults {
    pub fn mode(&self) -> FaultMode {
        self.config.mode
    }

    /// What `GET /_mock/faults` shows: `latency_ms`, `mode` and
    /// `result_delay_ms` always, the rest when not off, or every field
    /// with `all`.
    pub fn view(self, all: bool) -> Value {
        let c = &self.config;
        let mut body = if all {
            json!({
                "seed": c.seed,
                "latency": c.latency,
                "error_rate": c.error_rate,
                "error_status": c.error_status,
                "reset_rate": c.reset_rate,
                "malformed_rate": c.malformed_rate,
                "garbage_rate": c.garbage_rate,
                "wrong_encoding": c.wrong_encoding,
                "oversize_bytes": c.oversize_bytes,
                "trickle_ms_per_byte": c.trickle_ms_per_byte,
                "rate_limit_per_second": c.rate_limit_per_second,
                "throttle_rate": c.throttle_rate,
            })
        } else {
            serde_json::to_value(c).unwrap_or_else(|_| json!({}))
        };
        body["latency_ms"] = self.latency_ms.into();
        body["mode"] = serde_json::to_value(c.mode).unwrap_or_default();
        body["result_delay_ms"] = self.result_delay_ms.into();
        body
    }
}

/// What happens to one dialect request, decided on arrival.
#[derive(Debug, Clone, Default)]
pub(crate) struct Visit {
    /// `Retry-After` seconds of a 429.
    pub throttled: Option<u64>,
    pub delay: Duration,
    pub reset: bool,
    pub error: Option<StatusCode>,
    pub wrong_encoding: bool,
    pub garbage: Option<u64>,
    /// Cut by this layer (`malformed_rate`); `mode: malformed` is cut by
    /// the dialect itself.
    pub cut: bool,
    pub oversize_bytes: u64,
    pub trickle: Duration,
}

impl Visit {
    fn reshapes(&self) -> bool {
        self.wrong_encoding
            || self.garbage.is_some()
            || self.cut
            || self.oversize_bytes > 0
            || !self.trickle.is_zero()
    }
}

/// One request a fault hit, as the ledger lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultHit {
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub faults: Vec<&'static str>,
}

/// An agency's fault generator, rate window and tally.
#[derive(Debug)]
pub(crate) struct FaultEngine {
    rng: ChaCha8Rng,
    /// When the requests admitted in the last second arrived, oldest first
    /// (kept only while a rate limit is set).
    admitted: VecDeque<Instant>,
    requests: u64,
    counts: BTreeMap<&'static str, u64>,
    log: VecDeque<FaultHit>,
}

impl FaultEngine {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            admitted: VecDeque::new(),
            requests: 0,
            counts: BTreeMap::new(),
            log: VecDeque::new(),
        }
    }

    /// Starts the generator's sequence again from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Decides what happens to a request arriving `now`, and tallies it.
    pub fn visit(&mut self, faults: &Faults, method: &str, path: &str, now: Instant) -> Visit {
        let c = &faults.config;
        self.requests += 1;
        let [throttle, reset, error, garbage, malformed, u1, u2]: [f64; 7] =
            std::array::from_fn(|_| self.rng.random());
        let garbage_seed = self.rng.next_u64();
        let mut hits = Vec::new();
        let mut visit = Visit::default();

        let limit = usize::try_from(c.rate_limit_per_second).unwrap_or(usize::MAX);
        while self
            .admitted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
        {
            self.admitted.pop_front();
        }
        if limit > 0 && self.admitted.len() >= limit {
            let frees_at = self.admitted.front().map_or(now, |t| *t + RATE_WINDOW);
            let wait = frees_at.saturating_duration_since(now);
            visit.throttled = Some(wait.as_millis().div_ceil(1000).max(1) as u64);
            hits.push("rate_limited");
        } else if c.throttle_rate.hits(throttle) {
            visit.throttled = Some(1);
            hits.push("throttled");
        } else if limit > 0 {
            self.admitted.push_back(now);
        } else {
            self.admitted.clear();
        }

        if visit.throttled.is_none() {
            let drawn = c.latency.map_or(0.0, |l| l.sample_ms(u1, u2));
            visit.delay = Duration::from_millis(faults.latency_ms)
                + Duration::from_secs_f64(drawn.max(0.0) / 1000.0);
            if c.reset_rate.hits(reset) {
                visit.reset = true;
                hits.push("reset");
            } else if c.mode == FaultMode::Error || c.error_rate.hits(error) {
                visit.error = Some(
                    StatusCode::from_u16(c.error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                );
                hits.push("error");
            } else {
                if c.mode == FaultMode::Refuse {
                    hits.push("refuse");
                }
                if c.wrong_encoding {
                    visit.wrong_encoding = true;
                    hits.push("wrong_encoding");
                }
                if c.mode == FaultMode::Garbage || c.garbage_rate.hits(garbage) {
                    visit.garbage = Some(garbage_seed);
                    hits.push("garbage");
                } else if c.mode == FaultMode::Malformed {
                    hits.push("malformed");
                } else if c.malformed_rate.hits(malformed) {
                    visit.cut = true;
                    hits.push("malformed");
                }
                if c.oversize_bytes > 0 {
                    visit.oversize_bytes = c.oversize_bytes;
                    hits.push("oversize");
                }
                if c.trickle_ms_per_byte > 0 {
                    visit.trickle = Duration::from_millis(c.trickle_ms_per_byte);
                    hits.push("trickle");
                }
            }
        }
        if !hits.is_empty() {
            for hit in &hits {
                *self.counts.entry(*hit).or_default() += 1;
            }
            if self.log.len() >= LOG_LIMIT {
                self.log.pop_front();
            }
            self.log.push_back(FaultHit {
                at: Utc::now(),
                method: method.to_owned(),
                path: path.to_owned(),
                faults: hits,
            });
        }
        visit
    }

    /// The ledger's `injected`: how many dialect requests arrived, how many
    /// each fault hit, and the most recent hits.
    pub fn tally(&self) -> Value {
        json!({
            "requests": self.requests,
            "counts": self.counts,
            "log": self.log,
        })
    }
}

/// The middleware around an agency's dialect routes.
pub(crate) async fn inject(
    State(agency): State<Arc<Agency>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let visit = agency.visit(request.method().as_str(), &path);
    if let Some(retry_after) = visit.throttled {
        tracing::debug!(agency = agency.id(), %path, "injected: throttled");
        let mut response = fault_reply(&agency, StatusCode::TOO_MANY_REQUESTS, &path);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return response;
    }
    if !visit.delay.is_zero() {
        tokio::time::sleep(visit.delay).await;
    }
    if visit.reset {
        tracing::debug!(agency = agency.id(), %path, "injected: connection reset");
        return reset();
    }
    if let Some(status) = visit.error {
        return fault_reply(&agency, status, &path);
    }
    let response = next.run(request).await;
    if visit.reshapes() {
        reshape(&agency, response, &visit).await
    } else {
        response
    }
}

/// The dialect's own error reply with `status`: busy for 5xx (and any
/// error status but 429), too many requests for 429.
fn fault_reply(agency: &Agency, status: StatusCode, path: &str) -> Response {
    match agency.spec.dialect {
        MockDialect::CourtBankXml => bank_xml::fault_reply(agency, status),
        MockDialect::BankJson => bank_json::fault_reply(status),
        MockDialect::RegistryJson => registry_json::fault_reply(status, path),
        MockDialect::IsoBankXml => iso_bank_xml::fault_reply(status),
        MockDialect::VehicleSoap => vehicle_soap::fault_reply(status),
        MockDialect::SecuritiesXml => securities_xml::fault_reply(status, path),
        MockDialect::PaymentJson => payment_json::fault_reply(agency, status),
        MockDialect::FundCallback => fund_callback::fault_reply(status),
        MockDialect::MarketGbkXml => market_gbk_xml::fault_reply(agency, status, path),
    }
}

/// A response whose body fails before its first byte: hyper then closes the
/// connection without having written anything, not even the status line.
fn reset() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected connection reset",
        ))
    });
    Body::from_stream(failing).into_response()
}

async fn reshape(agency: &Agency, response: Response, visit: &Visit) -> Response {
    let (mut parts, body) = response.into_parts();
    let mut bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes.to_vec(),
        Err(e) => {
            tracing::warn!(agency = agency.id(), error = %e, "reply body unreadable");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let is_xml = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("xml"));
    if visit.wrong_encoding {
        bytes = misdeclare(agency, &mut parts.headers, bytes, is_xml);
    }
    if let Some(seed) = visit.garbage {
        bytes = garbage(seed, bytes.len());
    } else if visit.cut {
        bytes.truncate(bytes.len() / 2);
    }
    if let Ok(target) = usize::try_from(visit.oversize_bytes) {
        pad(&mut bytes, target, is_xml && visit.garbage.is_none());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    if visit.trickle.is_zero() {
        return Response::from_parts(parts, Body::from(bytes));
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Response::from_parts(parts, trickle(Bytes::from(bytes), visit.trickle))
}

/// The body one byte at a time, `delay` before each.
fn trickle(bytes: Bytes, delay: Duration) -> Body {
    let bytes_left = futures::stream::unfold(0usize, move |at| {
        let bytes = bytes.clone();
        async move {
            if at >= bytes.len() {
                return None;
            }
            tokio::time::sleep(delay).await;
            Some((Ok::<Bytes, Infallible>(bytes.slice(at..at + 1)), at + 1))
        }
    });
    Body::from_stream(bytes_left)
}

/// Makes a reply claim UTF-8 while its bytes are GB18030: a reply already
/// in a non-UTF-8 encoding (a GB18030 court bank) keeps its bytes and has
/// its XML declaration relabelled; a UTF-8 reply is re-encoded in GB18030
/// under its UTF-8 declaration. The Content-Type says `charset=UTF-8`.
fn misdeclare(
    agency: &Agency,
    headers: &mut axum::http::HeaderMap,
    bytes: Vec<u8>,
    is_xml: bool,
) -> Vec<u8> {
    let in_utf8 = agency.encoding == encoding_rs::UTF_8;
    let bytes = if in_utf8 {
        let text = String::from_utf8_lossy(&bytes);
        encoding_rs::GB18030.encode(&text).0.into_owned()
    } else if is_xml {
        relabel(&bytes, "UTF-8")
    } else {
        bytes
    };
    if let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or(content_type)
            .trim();
        if let Ok(value) = HeaderValue::from_str(&format!("{mime}; charset=UTF-8")) {
            headers.insert(header::CONTENT_TYPE, value);
        }
    }
    bytes
}

/// The document with its XML declaration naming `label` as its encoding
/// (unchanged when it has no declaration naming one).
fn relabel(bytes: &[u8], label: &str) -> Vec<u8> {
    let prolog_end = match find(bytes, b"?>") {
        Some(end) if bytes.starts_with(b"<?xml") => end,
        _ => return bytes.to_vec(),
    };
    let Some(key) = find(&bytes[..prolog_end], b"encoding=") else {
        return bytes.to_vec();
    };
    let start = key + b"encoding=".len();
    let Some(quote) = bytes
        .get(start)
        .copied()
        .filter(|q| matches!(q, b'"' | b'\''))
    else {
        return bytes.to_vec();
    };
    let Some(len) = bytes[start + 1..prolog_end]
        .iter()
        .position(|b| *b == quote)
    else {
        return bytes.to_vec();
    };
    let mut out = Vec::with_capacity(bytes.len() + label.len());
    out.extend_from_slice(&bytes[..=start]);
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(&bytes[start + 1 + len..]);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `len` bytes (16 at least) that no XML or JSON parser takes: a NUL and
/// bytes that are never UTF-8 first, then noise from `seed`.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut bytes = vec![0u8; len.max(16)];
    rng.fill_bytes(&mut bytes);
    bytes[..4].copy_from_slice(b"\x00\xff\xfe\x00");
    bytes
}

/// Pads a reply to at least `target` bytes: a trailing XML comment for
/// XML (valid after the root element), blanks otherwise (valid after a
/// JSON value).
fn pad(bytes: &mut Vec<u8>, target: usize, is_xml: bool) {
    const OPEN: &[u8] = b"\n<!-- ";
    const CLOSE: &[u8] = b" -->\n";
    let Some(missing) = target.checked_sub(bytes.len()).filter(|m| *m > 0) else {
        return;
    };
    if is_xml && missing >= OPEN.len() + CLOSE.len() {
        bytes.extend_from_slice(OPEN);
        bytes.resize(target - CLOSE.len(), b'x');
        bytes.extend_from_slice(CLOSE);
    } else {
        bytes.resize(target, b' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_is_relabelled_and_nothing_else_changes() {
        let doc = "<?xml version=\"1.0\" encoding=\"GB18030\"?>\n<A>é</A>".as_bytes();
        let out = relabel(doc, "UTF-8");
        assert_eq!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<A>é</A>".as_bytes()
        );
        assert_eq!(relabel(b"{\"a\":1}", "UTF-8"), b"{\"a\":1}");
        assert_eq!(
            relabel(b"<?xml version='1.0' encoding='x'?><A/>", "UTF-8"),
            b"<?xml version='1.0' encoding='UTF-8'?><A/>"
        );
    }

    #[test]
    fn padding_reaches_the_target_exactly_and_keeps_the_document() {
        let mut xml = b"<A/>".to_vec();
        pad(&mut xml, 100, true);
        assert_eq!(xml.len(), 100);
        assert!(xml.starts_with(b"<A/>\n<!-- x") && xml.ends_with(b"x -->\n"));
        let mut json = b"{}".to_vec();
        pad(&mut json, 10, false);
        assert_eq!(json, b"{}        ");
        let mut big = vec![b'a'; 20];
        pad(&mut big, 10, true);
        assert_eq!(big.len(), 20);
    }

    #[test]
    fn garbage_is_neither_utf8_nor_json() {
        let bytes = garbage(7, 3);
        assert_eq!(bytes.len(), 16);
        assert!(std::str::from_utf8(&bytes).is_err());
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
        assert_eq!(garbage(7, 40), garbage(7, 40));
    }

    #[test]
    fn the_rate_limit_admits_n_per_rolling_second() {
        let faults = Faults {
            latency_ms: 0,
            result_delay_ms: 0,
            config: FaultConfig {
                rate_limit_per_second: 2,
                ..FaultConfig::default()
            },
        };
        let mut engine = FaultEngine::new(1);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(engine.visit(&faults, "GET", "/", at(0)).throttled, None);
        assert_eq!(engine.visit(&faults, "GET", "/", at(100)).throttled, None);
        assert_eq!(
            engine.visit(&faults, "GET", "/", at(200)).throttled,
            Some(1)
        );
        // The first admitted leaves the window at 1000 ms.
        assert_eq!(engine.visit(&faults, "GET", "/", at(1000)).throttled, None);
        assert_eq!(
            engine.visit(&faults, "GET", "/", at(1050)).throttled,
            Some(1)
        );
        assert_eq!(engine.tally()["counts"]["rate_limited"], 2);
        assert_eq!(engine.tally()["requests"], 5);
    }
}
