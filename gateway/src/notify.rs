//! Signed callbacks to callers: when an inquiry completes, an order reaches
//! a decided state (or changes it later: promoted, released, expired), an
//! order is about to lapse, or a freeze plan ends, the gateway POSTs the
//! resource to the caller's `callback_url`.
//!
//! Each callback is first written to the outbox in the same transaction as
//! the change it reports, so none is lost; a worker delivers it with retries
//! (exponential backoff with jitter) until the caller answers 2xx or
//! `callbacks.max_attempts` is reached. Every attempt is audited before it
//! is sent and its answer after.
//!
//! The body is JSON: `{"event", "delivery", "created_at", "resource"}`. The
//! signature is HMAC-SHA256 over the exact body bytes with the caller's
//! secret, sent as `X-Gateway-Signature: sha256=<hex>`, with
//! `X-Gateway-Event` and `X-Gateway-Delivery` (the same delivery id on every
//! attempt, so a receiver can drop repeats).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::audit::{AuditLog, AuditRecord, Direction};
use crate::config::{CallbackSettings, CallerConfig};
use crate::inquiry::timestamp;
use crate::store::{Change, OutboxOutcome, OutboxRecord};

pub const SIGNATURE_HEADER: &str = "x-gateway-signature";
pub const EVENT_HEADER: &str = "x-gateway-event";
pub const DELIVERY_HEADER: &str = "x-gateway-delivery";

impl crate::store::CompletionCallbacks for Notifier {
    fn takes(&self, caller: &str) -> bool {
        self.takes_callbacks(caller)
    }

    fn completed(
        &self,
        inquiry: &crate::store::InquiryRecord,
        tasks: &[crate::store::TaskRecord],
        now_ms: i64,
    ) -> Option<OutboxRecord> {
        let view = crate::inquiry::view(inquiry, tasks)
            .map_err(|e| tracing::warn!(inquiry = %inquiry.id, error = %e, "cannot render a completed inquiry for its callback; the dispatcher will"))
            .ok()?;
        let resource = serde_json::to_value(&view).ok()?;
        self.event(
            &inquiry.caller,
            "inquiry.completed",
            &inquiry.id,
            &resource,
            now_ms,
        )
    }

    fn lapsed(&self, order: &crate::store::OrderRecord, now_ms: i64) -> Option<OutboxRecord> {
        let mut order = order.clone();
        order.status = crate::store::OrderStatus::Expired;
        order.phase = crate::store::OrderPhase::Done;
        let resource = crate::order::view(&order);
        self.event(&order.caller, "order.expired", &order.id, &resource, now_ms)
    }
}

/// `sha256=<hex>` of the body under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` under `secret` (constant
/// time), as a receiver checks it.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[derive(Clone)]
struct Target {
    url: String,
    secret: Arc<Vec<u8>>,
}

/// Builds callbacks for the outbox and delivers them.
#[derive(Clone)]
pub struct Notifier {
    targets: Arc<HashMap<String, Target>>,
    client: reqwest::Client,
    settings: CallbackSettings,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("callers", &self.targets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Notifier {
    pub fn new(callers: &[CallerConfig], settings: CallbackSettings) -> anyhow::Result<Self> {
        let mut targets = HashMap::new();
        for c in callers {
            let Some(url) = &c.callback_url else { continue };
            let secret = c
                .callback_secret()
                .map_err(anyhow::Error::msg)?
                .ok_or_else(|| {
                    anyhow::anyhow!("caller {:?}: callback_url without a secret", c.name)
                })?;
            targets.insert(
                c.name.clone(),
                Target {
                    url: url.clone(),
                    secret: Arc::new(secret),
                },
            );
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(settings.timeout_ms))
            .build()?;
        Ok(Self {
            targets: Arc::new(targets),
            client,
            settings,
        })
    }

    /// Whether any caller takes callbacks.
    pub fn has_targets(&self) -> bool {
        !self.targets.is_empty()
    }

    /// The callers that take callbacks.
    pub fn callers(&self) -> Vec<String> {
        let mut callers: Vec<String> = self.targets.keys().cloned().collect();
        callers.sort();
        callers
    }

    /// Whether `caller` takes callbacks.
    pub fn takes_callbacks(&self, caller: &str) -> bool {
        self.targets.contains_key(caller)
    }

    /// The outbox row reporting `resource` to `caller`, or None when the
    /// caller takes no callbacks.
    pub fn event(
        &self,
        caller: &str,
        event: &str,
        resource_id: &str,
        resource: &Value,
        now_ms: i64,
    ) -> Option<OutboxRecord> {
        self.targets.get(caller)?;
        let id = format!("dlv_{}", uuid::Uuid::now_v7().simple());
        let body = json!({
            "event": event,
            "delivery": id,
            "created_at": timestamp(now_ms),
            "resource": resource,
        });
        Some(OutboxRecord {
            id,
            caller: caller.to_owned(),
            event: event.to_owned(),
            resource_id: resource_id.to_owned(),
            body: serde_json::to_vec(&body).ok()?,
            attempts: 0,
            due_at_ms: now_ms,
            created_at_ms: now_ms,
        })
    }

    /// One delivery attempt of a claimed outbox row, audited, and its
    /// outcome stored.
    pub async fn deliver(&self, audit: &AuditLog, owner: &str, item: OutboxRecord) {
        let attempts = item.attempts + 1;
        let now = chrono::Utc::now().timestamp_millis();
        let attempted = |attempts, outcome| Change::Attempted {
            owner: owner.to_owned(),
            id: item.id.clone(),
            attempts,
            outcome,
        };
        let Some(target) = self.targets.get(&item.caller).cloned() else {
            let gave_up = OutboxOutcome::GaveUp {
                error: "the caller has no callback_url any more".into(),
            };
            if let Err(e) = audit.update(attempted(attempts, gave_up)).await {
                tracing::warn!(error = %e, "cannot give up a callback; it will be tried again");
            }
            return;
        };
        let record = AuditRecord {
            caller: Some(item.caller.clone()),
            action: format!("callback.{}", item.event),
            inquiry_id: Some(item.resource_id.clone()),
            request_number: Some(item.id.clone()),
            ..AuditRecord::default()
        };
        let sent = audit
            .record(AuditRecord {
                direction: Some(Direction::Outbound),
                status: Some(format!("attempt_{attempts}")),
                body: Some(item.body.clone().into()),
                ..record.clone()
            })
            .await;
        if sent.is_err() {
            // Nothing leaves unaudited: try again later, not counted.
            let retry = OutboxOutcome::Retry {
                due_at_ms: now + self.settings.retry_ms as i64,
                error: "audit log unavailable".into(),
            };
            // The journal is likely down too: the lease running out brings
            // the callback back just the same.
            let _ = audit.update(attempted(item.attempts, retry)).await;
            return;
        }
        let started = std::time::Instant::now();
        let result = self
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&target.secret, &item.body))
            .header(EVENT_HEADER, &item.event)
            .header(DELIVERY_HEADER, &item.id)
            .body(item.body.clone())
            .send()
            .await;
        let latency = started.elapsed().as_millis() as i64;
        let (status, error) = match &result {
            Ok(r) if r.status().is_success() => (format!("http_{}", r.status().as_u16()), None),
            Ok(r) => (
                format!("http_{}", r.status().as_u16()),
                Some(format!("the caller answered HTTP {}", r.status().as_u16())),
            ),
            Err(e) => (
                "transport".to_owned(),
                Some(format!("cannot reach the caller: {e}")),
            ),
        };
        let now = chrono::Utc::now().timestamp_millis();
        let outcome = match error {
            None => OutboxOutcome::Delivered,
            Some(error) if attempts >= self.settings.max_attempts => {
                tracing::warn!(caller = %item.caller, delivery = %item.id, attempts, "callback given up");
                OutboxOutcome::GaveUp { error }
            }
            Some(error) => OutboxOutcome::Retry {
                due_at_ms: now + self.backoff_ms(attempts),
                error,
            },
        };
        // The answer's row and the attempt's outcome in one transaction.
        let reply = AuditRecord {
            direction: Some(Direction::Reply),
            status: Some(status),
            latency_ms: Some(latency),
            ..record
        };
        if let Err(e) = audit.record_with(reply, attempted(attempts, outcome)).await {
            tracing::error!(error = %e, "cannot record a callback attempt; it will be retried");
        }
    }

    /// The wait after attempt `n` (1-based): doubling, capped, with up to a
    /// quarter of jitter so that retries to one caller spread out.
    fn backoff_ms(&self, attempts: i64) -> i64 {
        let base = self
            .settings
            .retry_ms
            .saturating_mul(1 << (attempts - 1).clamp(0, 20))
            .min(self.settings.max_retry_ms);
        let jitter = rand::rng().random_range(0..=base / 4);
        (base + jitter) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_a_changed_body_does_not() {
        let sig = signature(b"secret", b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"secret", b"{\"a\":1}", &sig));
        assert!(!verify(b"secret", b"{\"a\":2}", &sig));
        assert!(!verify(b"other", b"{\"a\":1}", &sig));
        assert!(!verify(b"secret", b"{\"a\":1}", "sha256=zz"));
    }

    #[test]
    fn the_rfc_4231_vector_matches() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
