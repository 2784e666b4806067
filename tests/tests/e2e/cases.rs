//! The officer's case view and the admin's agency page, end to end on both
//! backends: `GET /v1/cases/{case_number}` gathers a case's inquiries
//! (every kind of asset, an answer pushed late), merged assets, measures
//! (a freeze and a seal, one soon to lapse) and plans, for its own caller
//! only; `GET /v1/admin/agencies` shows each agency's breaker, errors,
//! latency and the configuration's version across reloads.

use std::time::Duration;

use chrono::{DateTime, Days, Utc};
use e2e_tests::*;
use mock_agencies::fixtures;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::orders::{documents, officers, place};

const OTHER_TOKEN: &str = "other-court-enforcement-token";
const OTHER_CASE: &str = "(2024)甘0503执1235号";
/// 张三 at bank-b.
const ZHANG_SAN_B: &str = "6217000010001234567";
const DECIDED: [&str; 5] = ["applied", "partial", "waiting", "refused", "failed"];

/// The case's path, the case number percent-encoded.
fn case_path(case: &str) -> String {
    format!("/v1/cases/{}", q(case))
}

async fn case(sys: &System) -> anyhow::Result<Value> {
    let reply = sys.get(&case_path(CASE), ENFORCEMENT).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "case: {}", reply.body);
    Ok(reply.body)
}

/// The case's asset entries of one agency and kind.
fn assets_at<'a>(case: &'a Value, agency: &str, kind: &str) -> Vec<&'a Value> {
    case["assets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["agency"] == agency && a["kind"] == kind)
        .collect()
}

fn time(value: &Value) -> anyhow::Result<DateTime<Utc>> {
    Ok(value
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("not a timestamp: {value}"))?
        .parse()?)
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap_or_default().to_owned()
}

/// A second enforcement system, of another court.
fn with_other_court(config: &mut gateway::config::GatewayConfig) {
    let Some(mut other) = config
        .callers
        .iter()
        .find(|c| c.name == "demo-court")
        .cloned()
    else {
        return;
    };
    other.name = "other-court".into();
    other.token_sha256 = Some(hex::encode(Sha256::digest(OTHER_TOKEN.as_bytes())));
    config.callers.push(other);
}

async fn a_case_shows_its_inquiries_assets_measures_and_plans(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_with_every_kind(backend, |config, _| with_other_court(config)).await?;
    let started = Utc::now();

    // 张三 asked about at every agency; 示例有限公司 too, for its equity.
    let first = sys.inquire(zhang_san(), 20).await?;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let first_id = id(&first.body);
    let mut org = inquiry_body(organisation());
    org["agencies"] = json!([fixtures::MARKET_M, "bank-a"]);
    let org = sys
        .post_json("/v1/inquiries?wait=20", ENFORCEMENT, &org)
        .await?;
    assert_eq!(org.status, StatusCode::OK, "{}", org.body);

    let view = case(&sys).await?;
    assert_eq!(view["case_number"], CASE);
    let kinds: std::collections::BTreeSet<&str> = view["assets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "bank_account",
            "equity",
            "payment_account",
            "provident_fund",
            "real_estate",
            "securities",
            "vehicle"
        ],
        "{view}"
    );
    // One entry per asset: 张三's accounts at bank-a appear once, though
    // both inquiries asked bank-a (the organisation's are others).
    let at_a = assets_at(&view, "bank-a", "bank_account");
    let mut numbers: Vec<&str> = at_a
        .iter()
        .filter_map(|a| a["account_number"].as_str())
        .collect();
    numbers.sort_unstable();
    let before = numbers.len();
    numbers.dedup();
    assert_eq!(numbers.len(), before, "{view}");
    let fund = assets_at(&view, fixtures::FUND_F, "provident_fund");
    assert_eq!(fund.len(), 1, "{view}");
    assert_eq!(fund[0]["fund_account"], fixtures::ZHANG_SAN_FUND_ACCOUNT);
    assert_eq!(fund[0]["inquiry_id"], first_id.as_str());
    assert_eq!(fund[0]["subject"]["identifier"], "3604************71");
    let first_found = time(&fund[0]["found_at"])?;
    assert!(first_found >= started, "{}", fund[0]);
    assert_eq!(view["summary"]["inquiries"], 2, "{view}");
    let line = &view["inquiries"][1];
    assert_eq!(line["id"], first_id.as_str(), "newest first: {view}");
    assert_eq!(line["status"], "completed");
    assert_eq!(line["subject"]["name"], "张三");
    assert_eq!(line["subject"]["kind"], "person");
    assert_eq!(agency_status(line, fixtures::FUND_F), "answered", "{line}");
    assert!(line["batch_id"].is_null(), "{line}");

    // Asked again, the fund centre pushes its answer late: until then the
    // first answer stands; then the new one replaces it.
    sys.fault(fixtures::FUND_F, json!({"result_delay_ms": 2_000}))
        .await?;
    let mut again = inquiry_body(zhang_san());
    again["agencies"] = json!([fixtures::FUND_F]);
    let again = sys
        .post_json("/v1/inquiries?wait=0", ENFORCEMENT, &again)
        .await?;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    let again_id = id(&again.body);
    let view = case(&sys).await?;
    let line = &view["inquiries"][0];
    assert_eq!(line["id"], again_id.as_str(), "{view}");
    assert_eq!(line["status"], "running", "{view}");
    assert_eq!(view["summary"]["inquiries_running"], 1, "{view}");
    assert_eq!(
        assets_at(&view, fixtures::FUND_F, "provident_fund")[0]["inquiry_id"],
        first_id.as_str(),
        "{view}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let view = loop {
        let view = case(&sys).await?;
        let fund = assets_at(&view, fixtures::FUND_F, "provident_fund");
        if fund.first().is_some_and(|f| f["inquiry_id"] == again_id) {
            break view;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the pushed answer never reached the case: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let fund = assets_at(&view, fixtures::FUND_F, "provident_fund");
    assert_eq!(fund.len(), 1, "still one entry: {view}");
    assert!(time(&fund[0]["found_at"])? > first_found, "{}", fund[0]);
    assert_eq!(view["inquiries"][0]["status"], "completed", "{view}");

    // A freeze at bank-b ending in 180 days, a seal of his car in 90, and
    // a plan of 100.00 over his money-like accounts.
    let freeze_body = json!({
        "case_number": CASE, "subject": zhang_san(), "officers": officers(),
        "action": "freeze", "agency": "bank-b", "asset": {"account_number": ZHANG_SAN_B},
        "amount_fen": 100_000,
        "end_date": (sys.clock.today() + Days::new(180)).to_string(),
        "documents": documents(),
    });
    let freeze = place(&sys, "case-freeze", &freeze_body, &DECIDED).await?;
    assert_eq!(freeze["status"], "applied", "{freeze}");
    let seal_body = json!({
        "case_number": CASE, "subject": zhang_san(), "officers": officers(),
        "action": "seal", "agency": fixtures::VEHICLE_V,
        "asset": {"vin": fixtures::ZHANG_SAN_VIN},
        "end_date": (sys.clock.today() + Days::new(90)).to_string(),
        "documents": documents(),
    });
    let seal = place(&sys, "case-seal", &seal_body, &DECIDED).await?;
    assert_eq!(seal["status"], "applied", "{seal}");
    let plan_body = json!({
        "case_number": CASE, "subject": zhang_san(), "officers": officers(),
        "inquiry": first_id, "amount_fen": 10_000,
        "end_date": (sys.clock.today() + Days::new(180)).to_string(),
        "documents": documents(),
    });
    let reply = sys
        .keyed_post("/v1/freeze-plans", "case-plan", &plan_body)
        .await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let plan = sys
        .wait_for(
            &format!("/v1/freeze-plans/{}", id(&reply.body)),
            Duration::from_secs(20),
            |p| p["status"] != "running",
        )
        .await?;
    assert_eq!(plan["status"], "completed", "{plan}");

    // Eighty days on, the seal ends within the warning window (14 days).
    sys.clock.set_offset_days(80);
    let view = case(&sys).await?;
    let measures = view["measures"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        measures.len(),
        3,
        "the freeze, the seal, the plan's freeze: {view}"
    );
    let first = &measures[0];
    assert_eq!(first["order_id"], seal["id"], "soonest end first: {view}");
    assert_eq!(first["action"], "seal");
    assert_eq!(first["asset"]["vin"], fixtures::ZHANG_SAN_VIN);
    assert_eq!(first["asset_kind"], "vehicle");
    assert_eq!(first["renewal_due"], true, "{first}");
    assert_eq!(first["days_left"], 10, "{first}");
    assert_eq!(first["subject"]["identifier"], "3604************71");
    for later in &measures[1..] {
        assert_eq!(later["action"], "freeze", "{later}");
        assert_eq!(later["renewal_due"], false, "{later}");
        assert!(
            later["controlled_fen"].as_i64().is_some_and(|f| f > 0),
            "{later}"
        );
    }
    let ours = measures
        .iter()
        .find(|m| m["order_id"] == freeze["id"])
        .ok_or_else(|| anyhow::anyhow!("no freeze in {view}"))?;
    assert_eq!(ours["controlled_fen"], 100_000, "{ours}");
    assert_eq!(ours["asset"]["account_number"], ZHANG_SAN_B);
    assert!(ours["freeze_plan"].is_null(), "{ours}");
    assert_eq!(view["summary"]["renewal_due"], 1, "{view}");
    assert_eq!(view["summary"]["measures_in_force"], 3, "{view}");
    assert_eq!(view["expiry_warning_days"], 14);
    assert_eq!(view["today"], sys.clock.today().to_string());
    // The account shows the case's freeze on it.
    let account = assets_at(&view, "bank-b", "bank_account")
        .into_iter()
        .find(|a| a["account_number"] == ZHANG_SAN_B)
        .ok_or_else(|| anyhow::anyhow!("no account at bank-b in {view}"))?;
    assert_eq!(account["case_orders"], json!([freeze["id"]]), "{account}");

    let plans = view["plans"].as_array().cloned().unwrap_or_default();
    assert_eq!(plans.len(), 1, "{view}");
    assert_eq!(plans[0]["id"], plan["id"]);
    assert_eq!(plans[0]["status"], "completed");
    assert_eq!(plans[0]["amount_fen"], 10_000);
    assert_eq!(plans[0]["controlled_fen"], 10_000);
    assert_eq!(plans[0]["inquiry_id"], first_id.as_str());
    let plan_orders = plans[0]["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(plan_orders.len(), 1, "{view}");
    assert_eq!(plan_orders[0]["action"], "freeze");
    assert_eq!(plan_orders[0]["controlled_fen"], 10_000);
    assert!(plan_orders[0]["asset"]["account_number"].is_string());
    let plan_freeze = measures
        .iter()
        .find(|m| m["order_id"] == plan_orders[0]["order_id"])
        .ok_or_else(|| anyhow::anyhow!("the plan's freeze is not among the measures"))?;
    assert_eq!(plan_freeze["freeze_plan"], plan["id"]);

    // No identity number in the clear anywhere in the answer.
    let text = serde_json::to_string(&view)?;
    assert!(!text.contains(ZHANG_SAN_ID), "{text}");

    // The case number as an enforcement system may well send it:
    // parentheses as they are, the Chinese characters percent-encoded.
    let raw = "/v1/cases/(2024)%E7%94%980503%E6%89%A71234%E5%8F%B7";
    let reply = sys.get(raw, ENFORCEMENT).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["case_number"], CASE);

    // Another court's system, a case without anything, a case number
    // that is none.
    let foreign = sys.get(&case_path(CASE), OTHER_TOKEN).await?;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
    assert_eq!(foreign.body["error"]["code"], "not_found");
    let empty = sys.get(&case_path(OTHER_CASE), ENFORCEMENT).await?;
    assert_eq!(empty.status, StatusCode::NOT_FOUND, "{}", empty.body);
    for bad in [
        "/v1/cases/not-a-case",
        "/v1/cases/%E7%94%98",
        "/v1/cases/%FF",
    ] {
        let reply = sys.get(bad, ENFORCEMENT).await?;
        assert!(
            reply.status.is_client_error(),
            "{bad}: {} {}",
            reply.status,
            reply.body
        );
        assert!(reply.body["error"]["code"].is_string(), "{bad}");
    }
    let reply = sys.get("/v1/cases/not-a-case", ENFORCEMENT).await?;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["field"], "case_number");

    // Each read is in the audit log, the refused one too.
    let reads = sys.audit("action=cases.get").await?;
    assert!(
        reads.iter().any(|e| e["caller"] == "demo-court"
            && e["status"] == "ok"
            && e["case_number"] == CASE),
        "{reads:?}"
    );
    assert!(
        reads
            .iter()
            .any(|e| e["caller"] == "other-court" && e["status"] == "not_found"),
        "{reads:?}"
    );
    Ok(())
}

on_both_backends!(a_case_shows_its_inquiries_assets_measures_and_plans);

/// An agency on the admin's page, by id.
fn agency<'a>(page: &'a Value, id: &str) -> anyhow::Result<&'a Value> {
    page["agencies"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id))
        .ok_or_else(|| anyhow::anyhow!("no {id} on the page: {page}"))
}

async fn page(sys: &System) -> anyhow::Result<Value> {
    let reply = sys.get("/v1/admin/agencies", ADMIN).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "page: {}", reply.body);
    Ok(reply.body)
}

async fn the_admin_page_shows_breakers_errors_latency_and_the_configuration(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |config, agencies| {
        config.dispatcher.max_attempts = 1;
        for a in agencies.iter_mut().filter(|a| a.id == "bank-b") {
            a.limits.breaker_failures = 2;
            a.limits.breaker_cooldown_ms = 600_000;
            a.limits.rate_per_second = Some(50);
            a.limits.max_concurrency = Some(7);
        }
    })
    .await?;
    let started = Utc::now();
    let quiet = page(&sys).await?;
    let b = agency(&quiet, "bank-b")?;
    assert_eq!(b["breaker"]["state"], "closed", "{b}");
    assert_eq!(b["enabled"], true);
    assert_eq!(b["kind"], "bank");
    assert_eq!(b["asset_kind"], "bank_account");
    assert_eq!(b["limits"]["rate_per_second"], 50, "{b}");
    assert_eq!(b["limits"]["max_concurrency"], 7, "{b}");
    assert_eq!(b["traffic"]["sent_since_start"], 0, "{b}");
    assert!(b["traffic"]["latency"]["p50_ms"].is_null(), "{b}");
    assert!(quiet["config"]["last_reload"].is_null(), "{quiet}");
    let listed = sys.get("/v1/agencies", ADMIN).await?.body;
    assert_eq!(quiet["config"]["version"], listed["version"]);

    // Traffic: every agency answers.
    let mut banks = inquiry_body(zhang_san());
    banks["agencies"] = json!(["bank-a", "bank-b"]);
    for _ in 0..3 {
        let reply = sys
            .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &banks)
            .await?;
        assert_eq!(agency_status(&reply.body, "bank-b"), "answered");
    }
    // bank-b fails twice: its breaker opens; the next inquiry is refused
    // by it before anything is sent.
    sys.fault("bank-b", json!({"mode": "error"})).await?;
    for expected in ["error", "error", "circuit_open"] {
        let reply = sys
            .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &banks)
            .await?;
        assert_eq!(
            agency_status(&reply.body, "bank-b"),
            expected,
            "{}",
            reply.body
        );
    }

    let busy = page(&sys).await?;
    let b = agency(&busy, "bank-b")?;
    assert_eq!(b["breaker"]["state"], "open", "{b}");
    let since = time(&b["breaker"]["since"])?;
    assert!(since >= started && since <= Utc::now(), "{b}");
    assert!(
        b["breaker"]["probe_in_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 500_000),
        "{b}"
    );
    let traffic = &b["traffic"];
    assert_eq!(
        traffic["sent_since_start"], 5,
        "three answers, two failures: {b}"
    );
    assert_eq!(traffic["errors_recent"]["http_5xx"], 2, "{b}");
    assert_eq!(traffic["errors_recent"]["breaker_open"], 1, "{b}");
    assert_eq!(traffic["errors_since_start"]["http_5xx"], 2, "{b}");
    assert_eq!(traffic["errors_recent"]["timeout"], 0, "{b}");
    assert_eq!(traffic["in_flight"], 0, "{b}");
    // The failures were answers too (503s): they have latencies.
    assert_eq!(traffic["latency"]["samples"], 5, "{b}");
    // bank-a answered all six (one message each, or more if it is polled).
    let a = agency(&busy, "bank-a")?;
    let latency = &a["traffic"]["latency"];
    assert!(latency["samples"].as_u64().is_some_and(|n| n >= 6), "{a}");
    let p = |q: &str| latency[q].as_f64().unwrap_or(-1.0);
    assert!(p("p50_ms") > 0.0, "{a}");
    assert!(
        p("p50_ms") <= p("p95_ms") && p("p95_ms") <= p("p99_ms"),
        "{a}"
    );
    assert!(p("p99_ms") <= p("max_ms"), "{a}");
    assert!(
        a["traffic"]["sent_last_minute"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{a}"
    );
    assert!(
        a["traffic"]["rate_per_second"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    );
    assert_eq!(a["breaker"]["state"], "closed");
    assert_eq!(
        a["traffic"]["errors_since_start"],
        json!({"timeout": 0, "connect": 0, "http_5xx": 0, "throttled": 0, "http_4xx": 0,
               "oversize": 0, "malformed": 0, "refused": 0, "breaker_open": 0,
               "rate_limited": 0, "busy": 0}),
        "{a}"
    );

    // A reload makes a new version, and the page says how it went; the
    // breaker stays open across it (the limits did not change).
    let before = busy["config"]["version"].clone();
    let reloaded = sys.reload().await?;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.body);
    let after = page(&sys).await?;
    assert_ne!(after["config"]["version"], before, "{after}");
    assert_eq!(after["config"]["version"], reloaded.body["version"]);
    let last = &after["config"]["last_reload"];
    assert_eq!(last["result"], "ok", "{after}");
    assert_eq!(last["by"], "demo-admin");
    assert_eq!(last["version"], reloaded.body["version"]);
    assert_eq!(last["previous_version"], before);
    assert_eq!(agency(&after, "bank-b")?["breaker"]["state"], "open");
    assert_eq!(
        agency(&after, "bank-b")?["traffic"]["errors_since_start"]["http_5xx"],
        2
    );

    // A broken file: refused, the version stays, the page says why.
    sys.write_agency_text("broken.toml", "id = \"broken\"\nkind = ")?;
    let refused = sys.reload().await?;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let after_refusal = page(&sys).await?;
    assert_eq!(
        after_refusal["config"]["version"],
        after["config"]["version"]
    );
    let last = &after_refusal["config"]["last_reload"];
    assert_eq!(last["result"], "invalid_configuration", "{last}");
    assert!(
        last["error_count"].as_u64().is_some_and(|n| n >= 1),
        "{last}"
    );
    assert!(
        last["errors"][0]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("broken.toml")),
        "{last}"
    );

    let reads = sys.audit("action=admin.agencies").await?;
    assert_eq!(reads.len(), 4, "{reads:?}");
    assert!(reads.iter().all(|e| e["caller"] == "demo-admin"));
    Ok(())
}

on_both_backends!(the_admin_page_shows_breakers_errors_latency_and_the_configuration);
