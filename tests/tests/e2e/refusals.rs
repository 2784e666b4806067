//! Refused calls in the audit log: every 401 and 403 leaves a row saying
//! who was refused, at which route and why, without the token presented;
//! a flood from one source leaves a bounded number of rows and one summary
//! with the count; a refusal is answered even when the log cannot take it.

use std::time::Duration;

use e2e_tests::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A token nobody was given, and the first 16 hex digits of its SHA-256
/// (`printf %s TOKEN | sha256sum`): how the log names its bearer.
const UNKNOWN: &str = "stolen-or-made-up-token-4711";
const UNKNOWN_PRINT: &str = "token:08bc756e8b8aa15e";
/// Not registry-x's callback token.
const WRONG_CALLBACK: &str = "not-the-registrys-token";
const WRONG_CALLBACK_PRINT: &str = "token:e906eaa99b17ed1b";
const FLOOD: &str = "flood-token-0001";
const FLOOD_PRINT: &str = "token:ca5445d577cdd94d";
const QUIET: &str = "quiet-flood-token";
const QUIET_PRINT: &str = "token:a7eaeb20b6111436";

/// registry-x's callback token digest (config/mock-agencies.toml).
const REGISTRY_CALLBACK_SHA256: &str =
    "4907ecbd212438d41b3f2857079dd0186ef963d760100daef74cde8ed8123657";

/// The gateway with registry-x taking pushed results, and the refusal
/// bound `per_source` a source per `interval_secs`.
async fn start(per_source: u32, interval_secs: u64) -> anyhow::Result<System> {
    System::start_with(|config, agencies| {
        config.audit.refusals_per_source = per_source;
        config.audit.refusal_interval_secs = interval_secs;
        for a in agencies.iter_mut().filter(|a| a.id == "registry-x") {
            a.callback_token_sha256 = Some(REGISTRY_CALLBACK_SHA256.into());
        }
    })
    .await
}

/// A row with its body (the JSON the gateway wrote), as an auditor reads it.
async fn with_body(sys: &System, row: &Value) -> anyhow::Result<(Value, Value)> {
    let seq = row["seq"].as_i64().unwrap_or_default();
    let reply = sys.get(&format!("/v1/audit/events/{seq}"), AUDITOR).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.body);
    let body = reply.body["body_text"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    Ok((reply.body, body))
}

/// Fails if `secret` is anywhere in the log, bodies included.
async fn never_logged(sys: &System, secret: &str) -> anyhow::Result<()> {
    for row in sys.audit("").await? {
        let (event, _) = with_body(sys, &row).await?;
        anyhow::ensure!(
            !event.to_string().contains(secret),
            "{secret} is in the log: {event}"
        );
    }
    Ok(())
}

async fn verifies(sys: &System) -> anyhow::Result<()> {
    let verify = sys.get("/v1/audit/verify", AUDITOR).await?;
    anyhow::ensure!(verify.body["ok"] == true, "{}", verify.body);
    Ok(())
}

/// Waits until an audit query finds a row, or fails after `limit`.
async fn wait_for_rows(sys: &System, query: &str, limit: Duration) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let rows = sys.audit(query).await?;
        if !rows.is_empty() {
            return Ok(rows);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no row for {query} in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_refused_call_leaves_a_row_saying_who_what_and_why() -> anyhow::Result<()> {
    let sys = start(20, 60).await?;
    // What is answered, or refused for another reason, is no refusal.
    assert_eq!(
        sys.get("/v1/agencies", ENFORCEMENT).await?.status,
        StatusCode::OK
    );
    let missing = sys.get("/v1/inquiries/inq_0", ENFORCEMENT).await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let malformed = sys
        .call(
            Method::POST,
            "/v1/inquiries",
            Some(ENFORCEMENT),
            Some(b"{".to_vec()),
        )
        .await?;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);

    // Someone with a made-up token reads an inquiry.
    let r = sys.get("/v1/inquiries/inq_0", UNKNOWN).await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Someone without a token places an order.
    let r = sys
        .call(Method::POST, "/v1/orders", None, Some(b"{}".to_vec()))
        .await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The auditor tries to start an inquiry.
    let r = sys
        .post_json("/v1/inquiries", AUDITOR, &inquiry_body(zhang_san()))
        .await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The court's system reads the audit log about a person.
    let r = sys
        .get(
            &format!("/v1/audit/events?subject={ZHANG_SAN_ID}"),
            ENFORCEMENT,
        )
        .await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Someone pushes results for registry-x with the wrong token.
    let r = sys
        .call(
            Method::POST,
            "/v1/callbacks/registry-x",
            Some(WRONG_CALLBACK),
            Some(b"{}".to_vec()),
        )
        .await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let rows = sys.audit("action=auth.refused").await?;
    let mut seen = Vec::new();
    for row in &rows {
        let (_, body) = with_body(&sys, row).await?;
        assert_eq!(row["direction"], "inbound");
        assert_eq!(row["status"], body["code"], "{row} {body}");
        seen.push((
            row["caller"].as_str().unwrap_or_default().to_owned(),
            format!(
                "{} {}",
                body["method"].as_str().unwrap_or_default(),
                body["route"].as_str().unwrap_or_default()
            ),
            body["status"].as_u64().unwrap_or_default(),
            body["message"].as_str().unwrap_or_default().to_owned(),
            row["agency"].clone(),
        ));
    }
    let expected = [
        (
            UNKNOWN_PRINT,
            "GET /v1/inquiries/{id}",
            401,
            "the token is not known",
            Value::Null,
        ),
        (
            "anonymous",
            "POST /v1/orders",
            401,
            "an Authorization: Bearer token",
            Value::Null,
        ),
        (
            "demo-auditor",
            "POST /v1/inquiries",
            403,
            "the auditor role may not use this endpoint",
            Value::Null,
        ),
        (
            "demo-court",
            "GET /v1/audit/events",
            403,
            "the enforcement role may not use this endpoint",
            Value::Null,
        ),
        (
            WRONG_CALLBACK_PRINT,
            "POST /v1/callbacks/{agency}",
            401,
            "callback token is missing or wrong",
            json!("registry-x"),
        ),
    ];
    // Each refusal once, in order, and nothing else.
    assert_eq!(seen.len(), expected.len(), "{seen:#?}");
    for (got, want) in seen.iter().zip(&expected) {
        assert_eq!(got.0, want.0, "{got:?}");
        assert_eq!(got.1, want.1, "{got:?}");
        assert_eq!(got.2, want.2, "{got:?}");
        assert!(got.3.contains(want.3), "{got:?}");
        assert_eq!(got.4, want.4, "{got:?}");
    }
    // An auditor finds a source's refusals by its name.
    let by_auditor = sys.audit("caller=demo-auditor&action=auth.refused").await?;
    assert_eq!(by_auditor.len(), 1);
    // Neither the tokens nor the query string's identity number are kept.
    for row in &rows {
        let (event, body) = with_body(&sys, row).await?;
        assert!(!body.to_string().contains(ZHANG_SAN_ID), "{body}");
        assert_eq!(event["subject"], Value::Null);
    }
    never_logged(&sys, UNKNOWN).await?;
    never_logged(&sys, WRONG_CALLBACK).await?;
    verifies(&sys).await
}

#[tokio::test]
async fn a_flood_of_bad_tokens_leaves_a_few_rows_and_one_summary_with_the_count()
-> anyhow::Result<()> {
    const PER_SOURCE: usize = 5;
    const INTERVAL_SECS: u64 = 3;
    const FLOOD_SIZE: usize = 200;
    let sys = start(PER_SOURCE as u32, INTERVAL_SECS).await?;
    let started = tokio::time::Instant::now();
    let statuses: Vec<StatusCode> = futures::stream::iter(0..FLOOD_SIZE)
        .map(|_| sys.get("/v1/agencies", FLOOD))
        .buffer_unordered(8)
        .map(|r| r.map(|r| r.status))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let took = started.elapsed();
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    // The story needs the flood inside one interval.
    assert!(
        took < Duration::from_secs(INTERVAL_SECS),
        "the flood took {took:?}"
    );

    let source = format!("caller={}", q(FLOOD_PRINT));
    let singles = sys.audit(&format!("{source}&action=auth.refused")).await?;
    assert_eq!(singles.len(), PER_SOURCE);
    // When the interval ends, one row counts the rest.
    let summaries = wait_for_rows(
        &sys,
        &format!("{source}&action=auth.refused_summary"),
        Duration::from_secs(INTERVAL_SECS + 10),
    )
    .await?;
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let (_, body) = with_body(&sys, &summaries[0]).await?;
    let counted = (FLOOD_SIZE - PER_SOURCE) as u64;
    assert_eq!(body["source"], FLOOD_PRINT);
    assert_eq!(body["recorded"], PER_SOURCE as u64, "{body}");
    assert_eq!(body["counted"], counted, "{body}");
    assert_eq!(body["by_code"], json!({"unauthorized": counted}), "{body}");
    let bound = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(body[k].as_str().unwrap_or_default())
            .map(|t| t.timestamp_millis())
    };
    assert_eq!(
        bound("to")? - bound("from")?,
        INTERVAL_SECS as i64 * 1000,
        "{body}"
    );
    assert_eq!(sys.audit(&source).await?.len(), PER_SOURCE + 1);
    never_logged(&sys, FLOOD).await?;
    verifies(&sys).await
}

#[tokio::test]
async fn refusals_only_counted_are_summarised_when_the_gateway_stops() -> anyhow::Result<()> {
    let mut sys = start(2, 3600).await?;
    for _ in 0..10 {
        let r = sys.get("/v1/inquiries/inq_0", QUIET).await?;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    sys.stop_gateway().await;
    sys.start_gateway().await?;
    let source = format!("caller={}", q(QUIET_PRINT));
    let summaries = sys
        .audit(&format!("{source}&action=auth.refused_summary"))
        .await?;
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let (_, body) = with_body(&sys, &summaries[0]).await?;
    assert_eq!(body["recorded"], 2, "{body}");
    assert_eq!(body["counted"], 8, "{body}");
    verifies(&sys).await
}

#[tokio::test]
async fn a_refusal_is_answered_even_when_the_audit_log_cannot_take_it() -> anyhow::Result<()> {
    let sys = start(20, 60).await?;
    // The audit table refuses every insert, as on a full disk.
    sys.sql(
        "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
    )
    .await?;
    let r = sys.get("/v1/inquiries/inq_0", UNKNOWN).await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "unauthorized");
    let r = sys
        .post_json("/v1/inquiries", AUDITOR, &inquiry_body(zhang_san()))
        .await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "forbidden");

    sys.sql("DROP TRIGGER audit_broken").await?;
    let r = sys
        .call(Method::POST, "/v1/orders", None, Some(b"{}".to_vec()))
        .await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let rows = sys.audit("action=auth.refused").await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["caller"], "anonymous");
    verifies(&sys).await
}
