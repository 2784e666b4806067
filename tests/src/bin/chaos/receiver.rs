//! The caller's callback endpoint, as a careful enforcement system runs it:
//! every signature is checked (HMAC-SHA256 of the exact body, in constant
//! time), repeats are dropped by delivery id, and one delivery in ten is
//! refused with a 503 the first time it arrives, so that retries are
//! exercised too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One event as received (the first accepted delivery of its id).
#[derive(Debug, Clone)]
pub struct Event {
    pub event: String,
    pub resource_id: String,
    pub status: String,
}

#[derive(Debug, Default)]
pub struct Received {
    /// Delivery id → the event.
    pub events: HashMap<String, Event>,
    /// Deliveries answered 2xx that had been accepted before.
    pub repeats: u64,
    /// Attempts refused on purpose (503).
    pub refused_on_purpose: u64,
    /// Attempts whose signature was missing or wrong.
    pub bad_signatures: u64,
    /// Attempts whose body was not the documented shape.
    pub bad_bodies: u64,
    /// Delivery ids seen at least once (refused or not).
    seen: HashMap<String, u32>,
}

pub type Shared = Arc<Mutex<Received>>;

/// Serves the endpoint on a port of its own; its URL and what it received.
pub async fn start(secret: &'static str) -> anyhow::Result<(String, Shared)> {
    let shared: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/callbacks", listener.local_addr()?);
    let app = Router::new()
        .route("/callbacks", post(receive))
        .with_state((shared.clone(), secret));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, shared))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn receive(
    State((shared, secret)): State<(Shared, &'static str)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut r = match shared.lock() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    if !signature_ok(secret, &body, header(&headers, "x-gateway-signature")) {
        r.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let parsed: Option<(String, String, Event)> =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            let delivery = v["delivery"].as_str()?.to_owned();
            let event = v["event"].as_str()?.to_owned();
            let resource = &v["resource"];
            let id = resource["id"].as_str()?.to_owned();
            let status = resource["status"].as_str().unwrap_or_default().to_owned();
            Some((
                delivery,
                event.clone(),
                Event {
                    event,
                    resource_id: id,
                    status,
                },
            ))
        });
    let Some((delivery, event_name, event)) = parsed else {
        r.bad_bodies += 1;
        return StatusCode::BAD_REQUEST;
    };
    if header(&headers, "x-gateway-delivery") != Some(delivery.as_str())
        || header(&headers, "x-gateway-event") != Some(event_name.as_str())
    {
        r.bad_bodies += 1;
        return StatusCode::BAD_REQUEST;
    }
    let attempts = {
        let n = r.seen.entry(delivery.clone()).or_default();
        *n += 1;
        *n
    };
    // One delivery in ten is refused the first time, chosen by its id.
    if attempts == 1 && Sha256::digest(delivery.as_bytes())[0] % 10 == 0 {
        r.refused_on_purpose += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match r.events.entry(delivery) {
        std::collections::hash_map::Entry::Occupied(_) => r.repeats += 1,
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(event);
        }
    }
    StatusCode::NO_CONTENT
}
